"""One client-side limiter shared by every thread: requests per second and requests in flight.

Rate: request starts are evenly spaced, never burst. Each start waits until `interval` after the
previous *actual* start, with interval = (1 + margin) / rate. Any r + 1 consecutive starts then span
more than one second by `margin`, so a server counting starts in ANY one-second window (ChartMogul
allows 40) sees at most r even with that much network/scheduling jitter between client and server.
Concurrency: a semaphore held for the whole request (sending through reading the body).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

DEFAULT_MARGIN_SECONDS = 0.05


class RateLimiter:
    """Caps request starts per second (smoothly) and concurrent in-flight requests; thread-safe."""

    def __init__(
        self,
        max_requests_per_second: float = 35,
        max_connections: int = 10,
        *,
        margin_seconds: float = DEFAULT_MARGIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not max_requests_per_second or max_requests_per_second <= 0:
            raise ValueError(f"max_requests_per_second: must be > 0, got {max_requests_per_second!r}")
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections: must be an integer >= 1, got {max_connections!r}")
        if margin_seconds < 0:
            raise ValueError(f"margin_seconds: must be >= 0, got {margin_seconds!r}")
        self.max_requests_per_second = float(max_requests_per_second)
        self.max_connections = max_connections
        self.interval = (1.0 + margin_seconds) / self.max_requests_per_second
        self._clock = clock
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(max_connections)
        self._gate = threading.Lock()  # serialises starts; held while waiting for the next start time
        self._stats_lock = threading.Lock()
        self._last_start: float | None = None
        self._paused_until = 0.0
        self._in_flight = 0
        self._peak_in_flight = 0
        self._acquired = 0
        self._waited = 0.0

    def __repr__(self) -> str:
        return f"RateLimiter(max_requests_per_second={self.max_requests_per_second:g}, max_connections={self.max_connections})"

    def pause(self, seconds: float) -> None:
        """Hold every thread's next start for `seconds` (e.g. the server sent Retry-After)."""
        until = self._clock() + max(0.0, seconds)
        with self._stats_lock:
            self._paused_until = max(self._paused_until, until)

    def _wait_for_start(self) -> float:
        waited = 0.0
        with self._gate:
            while True:
                now = self._clock()
                earliest = self._paused_until
                if self._last_start is not None:
                    earliest = max(earliest, self._last_start + self.interval)
                if now >= earliest:
                    self._last_start = now
                    return waited
                self._sleep(earliest - now)
                waited += earliest - now

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one in-flight slot and one start time for the duration of a request."""
        t0 = self._clock()
        self._slots.acquire()
        try:
            self._wait_for_start()
            with self._stats_lock:
                self._in_flight += 1
                self._acquired += 1
                self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
                self._waited += self._clock() - t0
            try:
                yield
            finally:
                with self._stats_lock:
                    self._in_flight -= 1
        finally:
            self._slots.release()

    @property
    def stats(self) -> dict:
        """Snapshot: requests admitted, current and peak in-flight, total seconds callers waited."""
        with self._stats_lock:
            return {
                "acquired": self._acquired,
                "in_flight": self._in_flight,
                "peak_in_flight": self._peak_in_flight,
                "wait_seconds": round(self._waited, 3),
            }
