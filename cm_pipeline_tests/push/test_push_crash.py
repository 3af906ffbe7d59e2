"""A push killed with SIGKILL mid-run, then rerun: nothing lost, nothing sent twice, every write logged.

Each write is logged 'pending' before it is sent, so the PATCHes in flight at the kill are in push_log;
the rerun reads whether they landed and records them 'applied' (issue 14 item 7: before, 479 PATCHes
sent, 477 logged).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import sqlalchemy as sa

from cm_pipeline.push.kinds import UPDATES
from cm_pipeline.push.run import push
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.push.conftest import log_rows, make_updates, sync_warehouse

N = 40

PUSH_SCRIPT = """
import sys
import sqlalchemy as sa
from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.push.kinds import UPDATES
from cm_pipeline.push.run import push
engine = sa.create_engine(sys.argv[1])
with ChartMogulClient(sys.argv[3], sys.argv[2], max_requests_per_second=100) as client:
    push(engine, client, "killed-run", UPDATES, max_workers=2)
"""


def _applied(engine, run_id: str, outcomes: tuple[str, ...] = ("applied",)) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT count(*) FROM cm_pipeline.push_log WHERE run_id = :r AND outcome = ANY(:o)"),
            {"r": run_id, "o": list(outcomes)},
        ).scalar()


def test_push_killed_then_rerun_sends_only_what_is_still_different(sandbox, ctl, client, wh, fresh_db):
    customers = [
        ctl.insert_customer(email=f"k{i}@example.com", tags=["keep"], custom={"CAC": 0}) for i in range(N)
    ]
    sync_warehouse(wh, client)
    make_updates(
        wh,
        [
            {"customer_uuid": c["uuid"], "add_tags": ["pushed"], "custom_attributes": {"CAC": i + 1}}
            for i, c in enumerate(customers)
        ],
    )
    ctl.configure(latency_ms=40)
    ctl.reset_stats()
    proc = subprocess.Popen(
        [sys.executable, "-c", PUSH_SCRIPT, fresh_db, sandbox.base_url, TEST_API_KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while _applied(wh, "killed-run") < 8:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the push made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.3)  # let the sandbox finish a request that was in flight at the kill
    written_before_kill = ctl.stats()["writes_applied"]
    logged_before_kill = _applied(wh, "killed-run")
    assert 8 <= logged_before_kill <= written_before_kill < N
    # every PATCH that reached ChartMogul is in push_log: applied, or pending (its intent) at the kill
    assert _applied(wh, "killed-run", ("applied", "pending")) >= written_before_kill

    ctl.configure(latency_ms=0)
    ctl.reset_stats()
    result = push(wh, client, "rerun", UPDATES)
    patches = ctl.stats()["by_route"].get("PATCH /v1/customers/{uuid}", 0)
    assert patches == N - written_before_kill  # only what was still different was sent
    assert result["applied"] == N - written_before_kill and result["failed"] == 0
    assert result["unchanged"] == written_before_kill
    for i, c in enumerate(customers):
        attrs = ctl.customer(c["uuid"])["attributes"]
        assert sorted(attrs["tags"]) == ["keep", "pushed"] and attrs["custom"]["CAC"] == i + 1
    targets = [r["target"] for r in log_rows(wh) if r["outcome"] == "applied"]
    assert len(targets) == len(set(targets)) == N  # every write that landed is logged applied, once
    assert not [r for r in log_rows(wh) if r["outcome"] == "pending"]  # the rerun settled every intent
