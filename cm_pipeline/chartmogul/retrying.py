"""When a ChartMogul call retries, on tenacity: which errors, how long to wait, when to give up, and the
per-call time budget that cuts a retry's timeouts.

The loop runs around the client's one-attempt send, not as urllib3's Retry inside the HTTPAdapter: every
attempt must take a RateLimiter slot of its own, or retries could burst past the API's limits (see
ratelimit.py). Retriable: 429, 5xx and the proxy's 52x, and transport errors (errors.is_retriable).

A write retried after an attempt whose answer was lost (errors.may_have_landed) may already have been
applied: with a `reread`, the loop reads the resource first and returns what it found instead of
sending the write again. With an armed Reachability, retries stop (and sleeps wake) the moment the API
is judged unreachable, and the call raises UnreachableError.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)
from tenacity.stop import stop_base
from urllib3.exceptions import InvalidHeader
from urllib3.util import Retry

from cm_pipeline.chartmogul.errors import (
    ChartMogulError,
    TransportError,
    UnreachableError,
    is_retriable,
    may_have_landed,
)
from cm_pipeline.chartmogul.reachability import Reachability

if TYPE_CHECKING:
    from collections.abc import Callable

    from cm_pipeline.chartmogul.ratelimit import RateLimiter
    from cm_pipeline.chartmogul.transport import ClientStats

log = logging.getLogger("cm_pipeline.chartmogul")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(Retry().parse_retry_after(value))
    except (InvalidHeader, ValueError, OverflowError):
        try:  # hand-kept: fractional seconds (the sandbox sends them) are refused by urllib3's parser
            seconds = float(value)
        except ValueError:
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def attempt_timeout(connect: float, read: float, left: float, minimum: float) -> tuple[float, float, float]:
    """(connect, read, total) seconds for a retry with `left` seconds of the retry budget remaining:
    each cut to what is left, but never below `minimum`. Hand-kept: tenacity bounds when a retry may
    start (stop_before_delay), not how long it may run."""
    left = max(left, minimum)
    return (min(connect, left), min(read, left), left)


class FullJitter(wait_exponential):
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2**(attempt-1))).

    tenacity's wait_exponential gives the ceiling; the draw below it comes from the client's own
    (seedable) rng, where tenacity's wait_random_exponential would use the global one.
    """

    def __init__(self, base: float, cap: float, rng: random.Random) -> None:
        super().__init__(multiplier=base, max=cap)
        self._rng = rng
        self._lock = threading.Lock()

    def __call__(self, retry_state: RetryCallState) -> float:
        with self._lock:
            rand = self._rng.random()
        return rand * super().__call__(retry_state)


@dataclass
class RetryPolicy:
    """How one call retries: at most `max_attempts` attempts, and none started with less than
    `min_attempt_seconds` of the `max_retry_seconds` budget left after its wait."""

    max_attempts: int = 8
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_seconds: float = 300.0
    min_attempt_seconds: float = 0.5
    rng: random.Random | None = None
    reachability: Reachability | None = None
    _backoff: FullJitter = field(init=False, repr=False)
    _stop: stop_base = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ValueError(f"max_attempts: must be an integer >= 1, got {self.max_attempts!r}")
        for name in ("backoff_base", "backoff_max", "min_attempt_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name}: must be a positive number of seconds, got {value!r}")
        if not isinstance(self.max_retry_seconds, int | float) or not self.max_retry_seconds >= 0:
            raise ValueError(f"max_retry_seconds: must be >= 0, got {self.max_retry_seconds!r}")
        self._backoff = FullJitter(self.backoff_base, self.backoff_max, self.rng or random.Random())
        budget = self.max_retry_seconds - self.min_attempt_seconds
        self._stop = stop_after_attempt(self.max_attempts) | stop_before_delay(budget)

    def wait(self, retry_state: RetryCallState) -> float:
        """The server's Retry-After when it sent one, else full-jitter backoff."""
        retry_after = getattr(_failure(retry_state), "retry_after", None)
        return retry_after if retry_after is not None else self._backoff(retry_state)

    def gives_up(self, retry_state: RetryCallState) -> bool:
        """True when no retry may follow the failed attempt: the attempt cap is reached, or less than
        min_attempt_seconds of the budget would be left after the upcoming wait, or the API is judged
        unreachable."""
        return self._stop(retry_state) or self._unreachable()

    def _unreachable(self) -> bool:
        return self.reachability is not None and self.reachability.tripped

    def deadline(self, retry_state: RetryCallState) -> float | None:
        """Monotonic end of the call's budget for a retry; None for a first attempt (configured timeouts)."""
        if retry_state.attempt_number == 1:
            return None
        return retry_state.start_time + self.max_retry_seconds

    def run(
        self,
        send: Callable[[int, float | None], Any],
        report: RetryReport,
        reread: Callable[[], Any] | None = None,
    ) -> Any:
        """`send(attempt, deadline)` until it returns, while this policy allows; the last error is raised
        as it came (no RetryError around it), its `attempts` and `after_lost_answer` set.

        `reread()` (for a write): called before a retry that follows an attempt whose answer was lost;
        when it returns something other than None, the write landed and that is returned, unsent."""
        if self._unreachable():
            raise self._unreachable_error(report, reached=False)
        lost = False
        retrying = Retrying(
            retry=retry_if_exception(is_retriable),
            wait=self.wait,
            stop=self.gives_up,
            sleep=self.reachability.sleep if self.reachability is not None else time.sleep,
            before_sleep=report.before_sleep,
            retry_error_callback=report.give_up,
        )
        try:
            for attempt in retrying:
                with attempt:
                    state = attempt.retry_state
                    try:
                        if lost and reread is not None and (found := reread()) is not None:
                            return found
                        return send(state.attempt_number, self.deadline(state))
                    except ChartMogulError as err:
                        err.attempts, err.after_lost_answer = state.attempt_number, lost
                        lost = lost or may_have_landed(err)
                        raise
        except TransportError as err:
            self._gave_up_without_answer(err)
            if self._unreachable() and not isinstance(err, UnreachableError):
                raise self._unreachable_error(
                    report, reached=err.reached, lost=err.after_lost_answer
                ) from None
            raise
        raise AssertionError("unreachable: give_up re-raises the last error")

    def _gave_up_without_answer(self, err: TransportError) -> None:
        if self.reachability is not None and err.retriable and err.kind != "protocol":
            self.reachability.call_gave_up()

    def _unreachable_error(
        self, report: RetryReport, *, reached: bool, lost: bool = False
    ) -> UnreachableError:
        err = UnreachableError(
            f"ChartMogul is unreachable: {self.reachability.reason}",
            reached=reached,
            method=report.method,
            path=report.path,
        )
        err.after_lost_answer = lost
        return err


def _failure(retry_state: RetryCallState) -> BaseException | None:
    return retry_state.outcome.exception() if retry_state.outcome is not None else None


@dataclass(frozen=True)
class RetryReport:
    """One call's retry side effects: the retry and give-up log lines, the retry counters, and a 429's
    Retry-After pausing every thread's limiter slot, not just this one's."""

    method: str
    path: str  # already scrubbed of the key
    budget: float
    limiter: RateLimiter
    stats: ClientStats

    def _extra(self, err: Any, state: RetryCallState, **more: Any) -> dict:
        return {
            "cm_method": self.method,
            "cm_path": self.path,
            "cm_status": err.status,
            "cm_attempt": state.attempt_number,
            "cm_elapsed": state.seconds_since_start,
            **more,
        }

    def before_sleep(self, state: RetryCallState) -> None:
        err: Any = _failure(state)
        wait = state.upcoming_sleep
        if err.status == 429 and err.retry_after is not None:
            self.limiter.pause(err.retry_after)
        self.stats.record_retry(wait)
        log.log(
            logging.INFO if err.status == 429 else logging.WARNING,
            "ChartMogul %s %s: %s (%s), retry %d in %.2f s%s",
            self.method,
            self.path,
            _what(err),
            err.message[:120],
            state.attempt_number,
            wait,
            " (Retry-After)" if err.retry_after is not None else "",
            extra=self._extra(err, state, cm_wait=wait),
        )

    def give_up(self, state: RetryCallState) -> Any:
        err: Any = _failure(state)
        log.warning(
            "ChartMogul %s %s: %s, giving up after %d attempt(s) in %.1f s (retry budget %.0f s)",
            self.method,
            self.path,
            _what(err),
            state.attempt_number,
            state.seconds_since_start,
            self.budget,
            extra=self._extra(err, state),
        )
        return state.outcome.result()  # raises the last error itself


def _what(err: Any) -> str:
    if err.status is not None:
        return f"HTTP {err.status}"
    return f"{getattr(err, 'kind', 'transport')} error"
