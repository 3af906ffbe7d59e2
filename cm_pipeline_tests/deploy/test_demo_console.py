"""The demo's console lines (pure formatting) and its log file."""

from __future__ import annotations

import io

from cm_pipeline.demo.console import KEEP_LOGS, Console, new_log_path
from cm_pipeline.demo.runs import ended_line, never_started, push_summary, refresh_summary, started_line
from cm_pipeline.demo.ui import Run


def test_run_lines_name_the_job_the_outcome_and_the_counts():
    run = Run("1a2b3c4d-0000", "push_updates_job", "SUCCESS", 100.0, 135.2)
    assert started_line(run) == "run started: push_updates_job (1a2b3c4d)"
    summary = push_summary({"applied": 3141, "unchanged": 0, "rejected": 116, "failed": 0, "pending": 0})
    assert summary == "3,141 applied, 116 rejected, 0 failed"
    assert (
        ended_line(run, summary)
        == "run succeeded: push_updates_job in 35 s: 3,141 applied, 116 rejected, 0 failed"
    )
    stopped = Run("x", "push_updates_job", "CANCELED", 100.0, 176.0)
    assert ended_line(stopped, "15 applied, 0 failed").startswith("run stopped: push_updates_job in 76 s")
    assert ended_line(Run("x", "j", "FAILURE", 1.0, 2.0), "") == "run FAILED: j in 1 s"


def test_refresh_summary_from_the_extract_assets_metadata():
    numbers = {"dagster/row_count": 5000, "inserted": 5000, "updated": 0, "deleted": 0, "total_mrr": 1.5}
    assert refresh_summary(numbers) == "5,000 customers: 5,000 inserted, 0 updated, 0 deleted"
    assert refresh_summary({}) == "nothing published"


def test_a_queued_run_canceled_before_it_started_is_told_apart():
    assert never_started(Run("x", "j", "CANCELED", 10.0, 10.0))
    assert not never_started(Run("x", "j", "CANCELED", 10.0, 40.0))
    assert not never_started(Run("x", "j", "SUCCESS", 10.0, 10.0))


def test_the_console_gets_the_demos_lines_and_the_log_gets_everything(tmp_path):
    stream = io.StringIO()
    console = Console(new_log_path(tmp_path), stream=stream)
    console.say("Dagster UI: http://127.0.0.1:3000")
    console.record("2026-12-03 - dagster - DEBUG - a run event\n")
    console.close()
    assert stream.getvalue().count("\n") == 1 and "Dagster UI" in stream.getvalue()
    log = console.log_path.read_text()
    assert "[demo]" in log and "Dagster UI" in log and "a run event" in log

    verbose = io.StringIO()
    console = Console(new_log_path(tmp_path), verbose=True, stream=verbose)
    console.record("a run event\n")
    console.close()
    assert verbose.getvalue() == "a run event\n"


def test_only_the_last_logs_are_kept(tmp_path):
    for i in range(KEEP_LOGS + 5):
        (tmp_path / f"demo-20260101-0000{i:02d}.log").write_text("")
    new_log_path(tmp_path)
    assert len(list(tmp_path.glob("demo-*.log"))) == KEEP_LOGS - 1  # plus the new one, once written
