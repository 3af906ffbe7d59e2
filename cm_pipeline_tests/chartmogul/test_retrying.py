"""The retry policy with no network: backoff, Retry-After, when to give up, the budget's cut of a retry's
timeouts, and the loop's errors (the last one raised as it came, its attempts counted)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from tenacity import RetryCallState, Retrying

from cm_pipeline.chartmogul.errors import NotFoundError, RateLimitError, ServerError, TransportError
from cm_pipeline.chartmogul.ratelimit import RateLimiter
from cm_pipeline.chartmogul.retrying import RetryPolicy, RetryReport, attempt_timeout, parse_retry_after
from cm_pipeline.chartmogul.transport import ClientStats


class Draw(random.Random):
    """An rng whose every draw is `value`."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def failed(attempt: int, error: BaseException, *, elapsed: float = 0.0, wait: float = 0.0) -> RetryCallState:
    """tenacity's state after attempt number `attempt` failed `elapsed` seconds into the call."""
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    state.start_time = state.outcome_timestamp - elapsed
    state.upcoming_sleep = wait
    return state


def a_503() -> ServerError:
    return ServerError("unavailable", status=503)


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap():
    def backoff(attempt: int, rand: float) -> float:
        return RetryPolicy(backoff_base=0.5, backoff_max=30, rng=Draw(rand)).wait(failed(attempt, a_503()))

    assert backoff(1, 0.999999) == pytest.approx(0.5, rel=1e-5)
    assert backoff(4, 0.999999) == pytest.approx(4.0, rel=1e-5)
    assert backoff(20, 0.999999) == pytest.approx(30, rel=1e-5)
    assert backoff(3, 0.0) == 0.0
    assert backoff(3, 0.5) == pytest.approx(1.0)


def test_retry_after_replaces_the_backoff():
    err = RateLimitError("slow down", status=429)
    err.retry_after = 7.0
    assert RetryPolicy(rng=Draw(0.5)).wait(failed(1, err)) == 7.0
    err.retry_after = 0.0
    assert RetryPolicy(rng=Draw(0.5)).wait(failed(3, err)) == 0.0


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    now = datetime.now(timezone.utc)
    # An HTTP-date has whole seconds, so 7 s ahead reads as 6 to 7 s (5 leaves room for a slow machine).
    assert 5.0 < parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True)) <= 7.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True)) == 0.0


def test_gives_up_at_the_attempt_cap_or_when_too_little_budget_would_be_left():
    policy = RetryPolicy(max_attempts=3, max_retry_seconds=10.0, min_attempt_seconds=0.5)
    assert not policy.gives_up(failed(1, a_503(), elapsed=1.0, wait=2.0))
    assert not policy.gives_up(failed(2, a_503(), elapsed=9.0, wait=0.4))  # 0.6 s would be left
    assert policy.gives_up(failed(2, a_503(), elapsed=9.0, wait=0.6))  # 0.4 s: not worth an attempt
    assert policy.gives_up(failed(1, a_503(), elapsed=0.1, wait=30.0))  # a Retry-After past the budget
    assert policy.gives_up(failed(3, a_503(), elapsed=0.1, wait=0.0))  # the attempt cap
    assert RetryPolicy(max_retry_seconds=0).gives_up(failed(1, a_503()))  # no budget: no retry


def test_only_retries_have_a_deadline_and_it_is_the_calls_budget():
    policy = RetryPolicy(max_retry_seconds=10.0)
    assert policy.deadline(failed(1, a_503(), elapsed=3.0)) is None  # the configured timeouts
    second = failed(2, a_503(), elapsed=3.0)
    assert policy.deadline(second) == second.start_time + 10.0


def test_attempt_timeout_is_cut_to_the_budget_left_with_a_floor():
    assert attempt_timeout(5.0, 60.0, 300.0, 0.5) == (5.0, 60.0, 300.0)
    assert attempt_timeout(5.0, 60.0, 2.0, 0.5) == (2.0, 2.0, 2.0)
    assert attempt_timeout(0.2, 60.0, 2.0, 0.5) == (0.2, 2.0, 2.0)
    assert attempt_timeout(5.0, 60.0, -1.0, 0.5) == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"backoff_base": 0}, "backoff_base"),
        ({"backoff_max": -1}, "backoff_max"),
        ({"min_attempt_seconds": 0}, "min_attempt_seconds"),
        ({"max_retry_seconds": -1}, "max_retry_seconds"),
    ],
)
def test_policy_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**kwargs)


def run(policy: RetryPolicy, outcomes: list) -> tuple[object, list, ClientStats]:
    """policy.run over a send that raises or returns `outcomes` in turn; returns (result, calls, stats)."""
    calls: list[tuple[int, float | None]] = []
    stats = ClientStats()
    report = RetryReport("GET", "/customers", policy.max_retry_seconds, RateLimiter(1000, 1), stats)

    def send(attempt: int, deadline: float | None) -> object:
        calls.append((attempt, deadline))
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return policy.run(send, report), calls, stats


def fast(**kw) -> RetryPolicy:
    return RetryPolicy(**{"backoff_base": 0.001, "backoff_max": 0.002, "rng": Draw(0.5), **kw})


def test_run_retries_retriable_errors_until_an_answer():
    result, calls, stats = run(fast(), [a_503(), TransportError("dropped"), {"ok": True}])
    assert result == {"ok": True}
    assert [n for n, _ in calls] == [1, 2, 3]
    assert calls[0][1] is None and calls[1][1] is not None and calls[1][1] == calls[2][1]
    assert stats.snapshot()["retries"] == 2


def test_run_raises_a_fatal_error_at_once_and_the_last_error_as_it_came():
    with pytest.raises(NotFoundError) as info:
        run(fast(), [NotFoundError("no such customer", status=404), {"never": "sent"}])
    assert info.value.attempts == 1

    errors = [a_503(), a_503(), a_503()]
    with pytest.raises(ServerError) as info:
        run(fast(max_attempts=3), errors)
    assert info.value is errors[-1] and info.value.attempts == 3
    assert info.value.__cause__ is None and info.value.__context__ is None  # no RetryError around it

    with pytest.raises(ValueError, match="body"):  # not a ChartMogulError: never retried
        run(fast(), [ValueError("body: must be JSON-serialisable"), {}])
