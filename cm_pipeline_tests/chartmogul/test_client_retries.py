"""The client's retries against the sandbox over real sockets: Retry-After, jittered backoff, transient
faults, the attempt cap, and creates whose answer was lost after they were applied."""

from __future__ import annotations

import logging
import time
from random import Random

import pytest

from cm_pipeline.chartmogul.errors import RateLimitError, ServerError
from cm_pipeline_tests.chartmogul.conftest import api_requests, custom_ds, retry_records

# ---------------------------------------------------------------------------------------- retries


def test_429_with_retry_after_is_honoured(make_client, ctl, caplog):
    ctl.configure(rate_limit_rps=2, retry_after=0.4)
    client = make_client()
    caplog.set_level(logging.INFO, logger="cm_pipeline.chartmogul")
    t0 = time.monotonic()
    for _ in range(5):
        client.list_customers_page(per_page=1)
    elapsed = time.monotonic() - t0
    stats = client.stats
    assert stats["rate_limited"] >= 1 and stats["retries"] == stats["rate_limited"]
    waits = [r.cm_wait for r in retry_records(caplog)]
    assert waits and all(w == pytest.approx(0.4) for w in waits)
    assert elapsed >= 0.4 * len(waits) * 0.9
    log = api_requests(ctl)
    for prev, nxt in zip(log, log[1:], strict=False):
        if prev["status"] == 429:
            assert nxt["ts"] - prev["ts"] >= 0.35, "retried before Retry-After elapsed"


def test_429_without_retry_after_backs_off_exponentially_with_jitter(make_client, ctl, caplog):
    ctl.configure(rate_limit_rps=2, retry_after=None)
    client = make_client(backoff_base=0.1, backoff_max=2.0, rng=Random(5))
    caplog.set_level(logging.INFO, logger="cm_pipeline.chartmogul")
    for _ in range(4):
        client.list_customers_page(per_page=1)
    retries = retry_records(caplog)
    assert retries and all(r.cm_status == 429 for r in retries)
    # the waits are the full-jitter draws of Random(5) over a growing ceiling, per call
    rng = Random(5)
    expected = []
    for r in retries:
        expected.append(rng.random() * min(2.0, 0.1 * 2 ** (r.cm_attempt - 1)))
    assert [r.cm_wait for r in retries] == pytest.approx(expected)
    assert max(r.cm_attempt for r in retries) >= 2
    # the sandbox saw each retry no sooner than the wait the client logged
    log = api_requests(ctl)
    gaps = [b["ts"] - a["ts"] for a, b in zip(log, log[1:], strict=False) if a["status"] == 429]
    assert len(gaps) == len(retries)
    for gap, wait in zip(gaps, [r.cm_wait for r in retries], strict=True):
        assert gap >= wait - 0.05  # server timestamps are taken as it logs, after the response


@pytest.mark.parametrize("kind", ["500", "502", "503", "504", "520", "524", "html500", "drop"])
def test_transient_faults_are_retried(make_client, ctl, kind):
    ctl.configure(fault_rate=0.5, fault_kinds=[kind], fault_seed=11)
    client = make_client()
    someone = ctl.customers()[0]["uuid"]
    for _ in range(6):
        assert client.retrieve_customer(someone)["uuid"] == someone
    faults = ctl.stats()["faults"]
    assert faults >= 1
    stats = client.stats
    assert stats["retries"] == faults
    assert stats["requests"] == 6 + faults
    if kind == "drop":
        assert stats["transport_errors"] == faults
    else:
        status = "500" if kind == "html500" else kind
        assert stats["by_status"][status] == faults


def test_html_500_keeps_a_text_excerpt(make_client, ctl):
    ctl.configure(fault_rate=1.0, fault_kinds=["html500"])
    client = make_client(max_attempts=2)
    with pytest.raises(ServerError) as info:
        client.list_customers_page()
    err = info.value
    assert err.status == 500 and err.attempts == 2
    assert "<" not in err.message and 0 < len(err.message) <= 200
    assert len(api_requests(ctl)) == 2


def test_attempts_are_capped(make_client, ctl):
    ctl.configure(fault_rate=1.0, fault_kinds=["503"])
    client = make_client(max_attempts=3)
    with pytest.raises(ServerError) as info:
        client.list_customers_page()
    assert info.value.attempts == 3 and "after 3 attempts" in str(info.value)
    assert len(api_requests(ctl)) == 3


# ---------------------------------------------------------------------------------- create idempotency


def test_create_whose_response_is_lost_after_applying_makes_no_duplicate(make_client, ctl):
    ctl.configure(
        fault_rate=0.5,
        fault_phase="after",
        fault_methods=["POST"],
        fault_kinds=["500", "drop", "504"],
        fault_seed=4,
    )
    client = make_client()
    ds = custom_ds(ctl)
    before = len(ctl.customers())
    results = [
        client.create_customer({"data_source_uuid": ds, "external_id": f"idem-{i}", "name": f"Idem {i}"})
        for i in range(8)
    ]
    assert len(ctl.customers()) == before + 8
    for i, r in enumerate(results):
        matches = [c for c in ctl.customers() if c["external_id"] == f"idem-{i}"]
        assert len(matches) == 1, f"idem-{i} stored {len(matches)} times"
        assert r.customer["uuid"] == matches[0]["uuid"]
    assert ctl.stats()["faults"] >= 1
    lost_first = sum(1 for r in results if not r.created)
    assert lost_first >= 1
    assert client.stats["retries"] >= lost_first


def test_retry_after_beyond_the_budget_gives_up_at_once(make_client, ctl, caplog):
    ctl.configure(rate_limit_rps=1, retry_after=30)
    client = make_client(max_retry_seconds=2.0)
    caplog.set_level(logging.INFO, logger="cm_pipeline.chartmogul")
    t0 = time.monotonic()
    with pytest.raises(RateLimitError) as info:
        for _ in range(3):  # the second call at the latest is over 1 request/s
            client.list_customers_page(per_page=1)
    assert not retry_records(caplog), "decided to wait although Retry-After exceeds the retry budget"
    assert time.monotonic() - t0 < 2.0, "waited although Retry-After exceeds the retry budget"
    assert info.value.status == 429 and info.value.retry_after == 30 and info.value.attempts == 1
    assert client.stats["retries"] == 0 and client.stats["rate_limited"] == 1
