"""A push against a dead API stops quickly with one message, and leaves the rows it did not reach as they
were (issue 14 item 3: before, 100 rows against a closed port took 5 min 37 s, each tried 8 times,
all marked failed, and the run ended green)."""

from __future__ import annotations

import time

import pytest

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.push.failures import FatalPushError
from cm_pipeline.push.kinds import CREATES, UPDATES
from cm_pipeline.push.run import push
from cm_pipeline.sandbox.seed import DOCS_DATA_SOURCE
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.push.conftest import (
    CREATES_DDL,
    log_rows,
    make_relation,
    make_updates,
    seed_customers,
    sync_warehouse,
)


def test_a_push_against_a_closed_port_stops_within_a_minute_and_marks_nothing(ctl, client, wh, closed_port):
    customers = seed_customers(ctl, 30)
    sync_warehouse(wh, client)
    make_updates(wh, [{"customer_uuid": c["uuid"], "add_tags": ["vip"]} for c in customers])
    # The resource's defaults: 8 attempts per call, backoff up to 30 s, a 300 s retry budget.
    with ChartMogulClient(TEST_API_KEY, f"http://127.0.0.1:{closed_port}/v1") as dead:
        t0 = time.monotonic()
        with pytest.raises(FatalPushError) as info:
            push(wh, dead, "dead", UPDATES)
        elapsed = time.monotonic() - t0
    assert elapsed < 60, f"took {elapsed:.0f} s to give up"
    message = str(info.value)
    assert message.startswith("push updates stopped: ChartMogul is unreachable: ")
    assert "attempts in a row over" in message and "got no answer" in message
    assert "the 30 not reached are untouched and go out with the next run" in message
    assert log_rows(wh, "dead") == []  # no row marked failed (nor anything else): nothing was reached

    result = push(wh, client, "alive", UPDATES)  # the API is back: every row goes out
    assert result["applied"] == 30 and result["failed"] == 0
    assert all("vip" in ctl.customer(c["uuid"])["attributes"]["tags"] for c in customers)


def test_a_write_in_flight_when_the_api_dies_stays_pending_and_is_settled_next_run(sandbox, ctl, wh):
    make_relation(
        wh,
        "reverse_etl.chartmogul_creates",
        CREATES_DDL,
        [
            {"data_source_uuid": DOCS_DATA_SOURCE, "external_id": f"dying_{i}", "name": f"D{i}"}
            for i in range(3)
        ],
    )
    # Every create is applied and then its answer dropped, and nothing answers after that: the API died.
    ctl.configure(fault_rate=1.0, fault_phase="after", fault_methods=["POST"], fault_kinds=["drop"])
    with ChartMogulClient(TEST_API_KEY, sandbox.base_url, backoff_base=0.01, backoff_max=0.05) as client:
        client.fail_fast(failures=3, seconds=0)
        with pytest.raises(FatalPushError):
            push(wh, client, "died", CREATES, max_workers=1)
    pending = [r for r in log_rows(wh, "died") if r["outcome"] == "pending"]
    assert len(pending) == 1 and "the run stopped" in pending[0]["error"]  # may have landed: not failed
    assert not [r for r in log_rows(wh) if r["outcome"] == "failed"]

    ctl.configure(fault_rate=0.0)
    with ChartMogulClient(TEST_API_KEY, sandbox.base_url) as client:
        result = push(wh, client, "next", CREATES)
    (settled,) = [r for r in log_rows(wh, "died")]
    assert (
        settled["outcome"] == "applied"
        and "resolved by run next: ChartMogul holds what was sent" in settled["error"]
    )
    assert result["applied"] == 2 and result["unchanged"] == 1  # the settled one is in the warehouse now
    externals = sorted(c["external_id"] for c in ctl.customers())
    assert externals == ["dying_0", "dying_1", "dying_2"]  # each created once
