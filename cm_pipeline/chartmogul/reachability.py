"""Whether the API still answers at all: the streak of attempts, from any thread, that got no HTTP answer.

Off until `arm(failures, seconds)`: the client then counts the streak and, once `failures` attempts in
a row over at least `seconds` got no answer (refused, dropped, timed out), marks the API unreachable.
From then on every retry sleep wakes at once and no retry or new call is sent: the caller gets one
UnreachableError instead of each call retrying for minutes against nothing. Any HTTP answer (even an
error status) ends the streak; a tripped client stays tripped.
"""

from __future__ import annotations

import threading
import time


class Reachability:
    """The no-answer streak of one client, shared by its threads (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limits: tuple[int, float] | None = None
        self._streak = 0
        self._since: float | None = None
        self._last: str = ""
        self._tripped = threading.Event()
        self._reason = ""

    def arm(self, failures: int, seconds: float) -> None:
        """Trip after `failures` attempts in a row over at least `seconds` got no answer."""
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ValueError(f"failures: must be an integer >= 1, got {failures!r}")
        if not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"seconds: must be a number >= 0, got {seconds!r}")
        with self._lock:
            self._limits = (failures, float(seconds))

    @property
    def armed(self) -> bool:
        return self._limits is not None

    @property
    def tripped(self) -> bool:
        return self._tripped.is_set()

    @property
    def reason(self) -> str:
        """Why the API was judged unreachable ('' while it is not)."""
        return self._reason

    @property
    def streak(self) -> int:
        """Attempts in a row that got no answer so far."""
        return self._streak

    def answered(self) -> None:
        """An HTTP answer arrived: the API is reachable."""
        with self._lock:
            self._streak, self._since = 0, None

    def no_answer(self, what: str) -> None:
        """An attempt got no answer (`what`: its error, scrubbed); may trip."""
        now = time.monotonic()
        with self._lock:
            self._streak += 1
            self._since = self._since if self._since is not None else now
            self._last = what
            if self._limits is not None and now - self._since >= self._limits[1]:
                self._trip_if_streak(now)

    def call_gave_up(self) -> None:
        """A call used up its retries on attempts that got no answer: with the streak long enough, that
        is unreachable whatever the time it took."""
        with self._lock:
            if self._limits is not None and self._since is not None:
                self._trip_if_streak(time.monotonic())

    def _trip_if_streak(self, now: float) -> None:
        if self._tripped.is_set() or self._streak < self._limits[0]:
            return
        self._reason = f"{self._streak} attempts in a row over {now - self._since:.1f} s got no answer (last: {self._last})"
        self._tripped.set()

    def sleep(self, seconds: float) -> None:
        """Sleep between retries; cut short the moment the API is judged unreachable."""
        self._tripped.wait(seconds)
