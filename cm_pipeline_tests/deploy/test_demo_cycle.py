"""The demo as a person runs it, twice on the same state: Ctrl-C in the middle of a push stops runs, then
Dagster, then the sandbox, in under 15 s, with no row `failed` because of the stop; the second start finds
the sandbox and the warehouse as the first one left them.

Slow (two Dagster start-ups, a refresh, a push): one test for all of it, in `make test`.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from cm_pipeline.demo.driver import DemoProcess
from cm_pipeline.sandbox.control import SandboxControl
from cm_pipeline_tests.deploy.stack import free_port

CUSTOMERS = 60
STOP_BUDGET = 15.0
# Sandbox latency from the end of the first refresh on, so the test can stop the push half way.
PUSH_LATENCY_MS = 1500


def _outcomes(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT outcome, count(*) FROM cm_pipeline.push_log GROUP BY 1"))
        return {outcome: count for outcome, count in rows}


def _stop_lines_in_order(lines: list[str]) -> None:
    steps = ["stopping Dagster", "stopping the sandbox", "stopped in"]
    at = [next(i for i, line in enumerate(lines) if step in line) for step in steps]
    assert at == sorted(at), lines


def _warehouse_matches_the_sandbox(engine: sa.Engine, control: SandboxControl) -> None:
    """Every live customer's attributes (tags, custom, ...) as the API serves them now."""
    api = {c["uuid"]: c["attributes"] for c in control.customers()}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT uuid, raw -> 'attributes' AS attributes FROM chartmogul.customers WHERE deleted_at IS NULL"
            )
        ).mappings()
        table = {r["uuid"]: r["attributes"] for r in rows}
    assert set(table) == set(api)
    differ = [u for u in api if api[u] != table[u]]
    assert differ == [], (
        f"{len(differ)} customers differ between the warehouse and the API, e.g. {differ[:3]}"
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ctrl_c_mid_push_stops_in_order_and_the_second_start_converges(fresh_db, tmp_path: Path):
    ui_port, sandbox_port = free_port(), free_port()
    env = {
        **os.environ,
        "CM_PIPELINE_STATE_DIR": str(tmp_path / "state"),
        "WAREHOUSE_URL": fresh_db,
        "UI_PORT": str(ui_port),
        "SANDBOX_PORT": str(sandbox_port),
    }
    args = ["--customers", str(CUSTOMERS)]
    control = SandboxControl(f"http://127.0.0.1:{sandbox_port}/v1")
    engine = sa.create_engine(fresh_db)
    demos: list[DemoProcess] = []
    try:
        # 1. First start: stopped with Ctrl-C while push_updates_job is applying rows.
        first = DemoProcess(env, args)
        demos.append(first)
        first.wait_for(rf"Dagster UI: http://127\.0\.0\.1:{ui_port}", 240)
        first.wait_for(r"run succeeded: warehouse_refresh_job .*: 60 customers: 60 inserted", 300)
        # Slow the API before the sensor launches the push: its ops run in the run's own process and call
        # within a second or two of the run's start, before the console could even say it started.
        control.configure(latency_ms=PUSH_LATENCY_MS)
        first.wait_for(r"run started: push_updates_job", 240)
        deadline = time.monotonic() + 180
        while _outcomes(engine).get("applied", 0) < 1:
            assert time.monotonic() < deadline, "push_updates_job applied nothing\n" + "\n".join(first.lines)
            time.sleep(0.5)
        took = first.ctrl_c(STOP_BUDGET + 30)
        assert first.proc.returncode == 0, first.lines
        assert took < STOP_BUDGET, f"stop took {took:.1f} s\n" + "\n".join(first.lines)
        first.wait_for(r"stopping \d+ run\(s\)", 1)
        first.wait_for(r"run stopped: push_updates_job .*applied", 1)
        _stop_lines_in_order(first.lines)
        stopped_with = _outcomes(engine)
        assert stopped_with.get("failed", 0) == 0, stopped_with

        # 2. Second start on the same state: the sandbox kept its data, so the refresh inserts and deletes
        # nothing (it only catches up with the writes the stopped push had in flight), and the warehouse
        # equals the API. The sensor is still on from the first start, so its pushes may run before the
        # demo's refresh: then the creates push has added customers, written back as they were created.
        second = DemoProcess(env, args)
        demos.append(second)
        second.wait_for(r"sandbox ChartMogul API: .*kept from the last start", 120)
        _, match = second.wait_for(r"run succeeded: warehouse_refresh_job .*: ([\d,]+) customers: (.*)", 480)
        assert re.fullmatch(r"0 inserted, \d+ updated, 0 deleted", match.group(2)), match.group(0)
        assert int(match.group(1).replace(",", "")) == len(control.customers()) >= CUSTOMERS, match.group(0)
        _warehouse_matches_the_sandbox(engine, control)
        took = second.ctrl_c(STOP_BUDGET + 30)
        assert took < STOP_BUDGET, f"stop took {took:.1f} s\n" + "\n".join(second.lines)
        _stop_lines_in_order(second.lines)
        assert _outcomes(engine).get("failed", 0) == 0
        assert not any("Traceback" in line for d in demos for line in d.lines)
        # A quiet console (docs/screenshots.py counts a full 5,000-customer cycle's lines for the README).
        assert all(len(d.lines) < 30 for d in demos), [d.lines for d in demos]
    finally:
        for demo in demos:
            demo.kill()
        engine.dispose()
