"""The per-call retry budget and the timeouts, against the sandbox and unanswered sockets.

Checked on what the client decided (its retry and attempt log records: the call's elapsed time at each
retry decision, the wait, the budget left and the timeouts each retry attempt was given) rather than on
a stopwatch with a tenth of a second of slack, which a loaded machine can overrun. Wall-clock bounds
are kept only where they cannot flake: lower bounds (a timeout never fires early), and upper bounds
generous enough to catch a call that ignores its budget altogether.
"""

from __future__ import annotations

import logging
import re
import socket
import time

import pytest

from cm_pipeline.chartmogul.errors import ChartMogulError, TransportError
from cm_pipeline_tests.chartmogul.conftest import attempt_records, drain, retry_records

# A call that ignored its budget would run on for many budgets (up to 1000 attempts here); a loaded
# machine delays one by well under this.
IGNORED_BUDGET = 5.0


@pytest.fixture
def decisions(caplog):
    """Capture the client's DEBUG records, which carry each retry attempt's budget and timeouts."""
    caplog.set_level(logging.DEBUG, logger="cm_pipeline.chartmogul")
    return caplog


def assert_kept_to_the_budget(caplog, client, err: ChartMogulError) -> tuple[list, list]:
    """Every retry was decided with at least min_attempt_seconds of the budget left after its wait, so
    none started past the budget; every retry attempt's timeouts were cut to the budget left when it
    took its limiter slot (never below min_attempt_seconds), so none ran past it. Returns the records."""
    policy = client.retry_policy
    budget, floor = policy.max_retry_seconds, policy.min_attempt_seconds
    retries, tries = retry_records(caplog), attempt_records(caplog)
    assert [r.cm_attempt for r in retries] == list(range(1, err.attempts))
    assert [t.cm_attempt for t in tries] == list(range(2, err.attempts + 1))
    for r in retries:
        assert r.cm_elapsed + r.cm_wait < budget - floor, (r.cm_elapsed, r.cm_wait)
    for t in tries:
        left = max(t.cm_left, floor)
        assert t.cm_left <= budget
        assert t.cm_timeout == (min(client.timeout[0], left), min(client.timeout[1], left))
    return retries, tries


def test_total_retry_time_is_bounded(make_client, ctl, decisions):
    ctl.configure(fault_rate=1.0, fault_kinds=["502", "drop"])
    client = make_client(max_retry_seconds=1.0, max_attempts=1000, backoff_base=0.05, backoff_max=0.3)
    t0 = time.monotonic()
    with pytest.raises(ChartMogulError) as info:
        client.list_customers_page()
    elapsed = time.monotonic() - t0
    assert_kept_to_the_budget(decisions, client, info.value)
    assert 3 <= info.value.attempts < 1000  # the budget, not the attempt cap, ended the call
    assert elapsed < 1.0 + IGNORED_BUDGET
    assert client.stats["retries"] >= 3


def test_read_timeout_is_retried_then_gives_up_within_budget(make_client, ctl, decisions):
    ctl.configure(latency_ms=800)
    client = make_client(read_timeout=0.25, max_retry_seconds=0.9, backoff_base=0.05, backoff_max=0.1)
    t0 = time.monotonic()
    with pytest.raises(TransportError) as info:
        client.list_customers_page()
    elapsed = time.monotonic() - t0
    assert info.value.kind == "timeout" and info.value.attempts >= 2
    _, tries = assert_kept_to_the_budget(decisions, client, info.value)
    assert all(t.cm_timeout[1] <= 0.25 for t in tries)  # never more than the configured read timeout
    assert 0.25 * info.value.attempts <= elapsed < 0.9 + IGNORED_BUDGET
    assert ctl.stats()["requests"] == info.value.attempts
    assert len(drain(ctl, info.value.attempts)) == info.value.attempts


def test_slow_but_within_read_timeout_succeeds(make_client, ctl):
    ctl.configure(latency_ms=150)
    client = make_client(read_timeout=1.0)
    assert client.list_customers_page(per_page=2).entries
    assert client.stats["retries"] == 0


def test_the_last_attempt_is_cut_to_the_retry_budget(make_client, ctl, decisions):
    # Responses take longer than the whole budget. The first attempt gets the full 0.8 s read timeout;
    # the retry after it has about 0.7 s of the 1.5 s budget left, and gets that, not another 0.8 s.
    ctl.configure(latency_ms=1600)
    client = make_client(read_timeout=0.8, max_retry_seconds=1.5)
    t0 = time.monotonic()
    with pytest.raises(TransportError) as info:
        client.list_customers_page(per_page=1)
    elapsed = time.monotonic() - t0
    err = info.value
    assert err.kind == "timeout" and err.attempts >= 2
    _, tries = assert_kept_to_the_budget(decisions, client, err)
    last = tries[-1].cm_timeout[1]
    assert last < 0.8  # cut: what was left of the budget
    cut = float(re.search(r"within the ([0-9.]+) s read timeout", err.message).group(1))
    assert cut == pytest.approx(last, rel=1e-4), err.message  # the error names the timeout it met
    assert elapsed >= 0.8  # the first attempt's full read timeout
    assert len(drain(ctl, err.attempts)) == err.attempts


def test_connect_timeout_is_retried_then_raised_typed(make_client, unanswered_port, decisions):
    client = make_client(
        base_url=f"http://127.0.0.1:{unanswered_port}/v1", connect_timeout=0.2, max_attempts=3
    )
    t0 = time.monotonic()
    with pytest.raises(TransportError) as info:
        client.retrieve_customer("cus_1")
    elapsed = time.monotonic() - t0
    err = info.value
    assert (err.kind, err.attempts, err.status) == ("connect_timeout", 3, None)
    assert "connect timed out after 0.2 s" in str(err) and "after 3 attempts" in str(err)
    stats = client.stats
    assert (stats["transport_errors"], stats["retries"]) == (3, 2)
    # three timeouts and two short backoffs (full jitter under 0.02 s, then 0.04 s)
    retries, tries = assert_kept_to_the_budget(decisions, client, err)
    assert [r.cm_wait < 0.02 * 2**i for i, r in enumerate(retries)] == [True, True]
    assert [t.cm_timeout[0] for t in tries] == [0.2, 0.2]  # the budget (10 s) cut neither retry
    assert elapsed >= 3 * 0.2


def test_connect_timeouts_stay_within_the_retry_budget(make_client, unanswered_port, decisions):
    client = make_client(
        base_url=f"http://127.0.0.1:{unanswered_port}/v1",
        connect_timeout=0.3,
        max_retry_seconds=1.5,
        max_attempts=100,
    )
    t0 = time.monotonic()
    with pytest.raises(TransportError) as info:
        client.retrieve_customer("cus_1")
    elapsed = time.monotonic() - t0
    assert info.value.kind == "connect_timeout" and info.value.attempts >= 3
    assert_kept_to_the_budget(decisions, client, info.value)
    # it used its budget: it gave up only once a retry would have had under 0.05 s left after a wait
    # of at most backoff_max (0.2 s)
    assert 1.5 - 0.05 - 0.2 <= elapsed < 1.5 + IGNORED_BUDGET


def test_connection_refused_is_a_transport_error(make_client):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        client = make_client(base_url=f"http://127.0.0.1:{port}/v1", max_attempts=2)
        with pytest.raises(TransportError) as info:
            client.list_customers_page()
    assert info.value.attempts == 2 and client.stats["transport_errors"] == 2
