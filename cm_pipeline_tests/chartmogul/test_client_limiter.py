"""The shared rate limiter measured at the sandbox, over real sockets: concurrency and rate caps hold."""

from __future__ import annotations

import threading
import time

from cm_pipeline_tests.chartmogul.conftest import drain

# ---------------------------------------------------------------------------------------- limiter


def test_limiter_bounds_rate_and_concurrency_measured_at_the_server(make_client, ctl):
    # Concurrency binds here: 3 connections of 350 ms allow under 9 requests/s, below the 10/s cap.
    ctl.configure(latency_ms=350, rate_limit_rps=10, max_connections=3)
    client = make_client(max_requests_per_second=10, max_connections=3)
    errors = []

    def hammer():
        try:
            for _ in range(3):
                client.list_customers_page(per_page=1)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = ctl.stats()
    assert stats["requests"] >= 24
    assert stats["peak_concurrency"] <= 3
    assert stats["peak_requests_per_second"] <= 10
    assert stats["rate_limited"] == 0 and stats["over_capacity"] == 0
    assert client.stats["peak_in_flight"] == 3  # the cap is used, not just respected
    assert client.stats["retries"] == 0


def peak_in_any_second(stamps: list[float]) -> int:
    """Most timestamps in any one-second window [t, t + 1)."""
    stamps = sorted(stamps)
    best = lo = 0
    for hi, t in enumerate(stamps):
        while stamps[lo] <= t - 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_limiter_bounds_the_rate_when_the_rate_binds(make_client, ctl):
    # No latency and 10 connections: only the 20 requests/s cap can hold 5 threads back.
    rate, threads_n, per_thread = 20, 5, 10
    total = threads_n * per_thread
    ctl.configure(latency_ms=0, rate_limit_rps=rate, max_connections=10)
    client = make_client(max_requests_per_second=rate, max_connections=10)
    errors = []

    def hammer():
        try:
            for _ in range(per_thread):
                client.list_customers_page(per_page=1)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(threads_n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert not errors
    stats = ctl.stats()
    assert stats["requests"] == total and stats["rate_limited"] == 0 and stats["over_capacity"] == 0
    assert rate - 1 <= stats["peak_requests_per_second"] <= rate  # the cap is reached, never passed
    log = drain(ctl, total)
    assert len(log) == total
    assert peak_in_any_second([r["ts"] for r in log]) <= rate
    assert elapsed >= (total - rate) / rate  # what the rate implies, less one second's burst
    assert client.stats["retries"] == 0 and client.stats["limiter_wait_seconds"] > 0
