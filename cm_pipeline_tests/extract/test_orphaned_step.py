"""A refresh whose run worker dies (kill -9 of `dagster job execute`) stops instead of publishing
headless, and frees the lock; a refresh that finds the lock taken names the Dagster run holding it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from cm_pipeline.extract.asset import chartmogul_customers
from cm_pipeline.project import REPO_ROOT
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline.warehouse.locks import AdvisoryLock, RefreshAlreadyRunning
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.extract.conftest import exact_table, query, refresh
from cm_pipeline_tests.extract.test_kill_resume import checkpointed_pages


def dagster_bin() -> str:
    return os.path.join(os.path.dirname(sys.executable), "dagster")


def lock_is_free(db_url: str) -> bool:
    engine = sa.create_engine(db_url)
    try:
        with AdvisoryLock(engine):
            return True
    except RefreshAlreadyRunning:
        return False
    finally:
        engine.dispose()


def start_cli_refresh(base_url: str, db_url: str, home) -> subprocess.Popen:
    """`dagster job execute` of the refresh, asking for the multiprocess executor (the job's default is in
    process): its extract step runs in a child process that outlives a killed run worker."""
    env = {
        **os.environ,
        "CHARTMOGUL_API_KEY": TEST_API_KEY,
        "CHARTMOGUL_BASE_URL": base_url,
        "WAREHOUSE_URL": db_url,
        "DAGSTER_HOME": str(home),
    }
    config = home / "run_config.yaml"
    config.write_text(
        "ops: {chartmogul_customers: {config: {per_page: 10, max_workers: 2, progress_interval_seconds: 0.5}}}\n"
        "execution: {config: {multiprocess: {}}}\n"
    )
    cmd = [dagster_bin(), "job", "execute", "-m", "cm_pipeline.definitions", "-j", "warehouse_refresh_job"]
    return subprocess.Popen(
        [*cmd, "-c", str(config)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_cli_leaves_no_headless_step_and_the_lock_names_the_run(fresh_db, tmp_path):
    assert chartmogul_customers.op.description  # the asset under test
    with SandboxServer(customers=600, seed=23, api_key=TEST_API_KEY) as srv:
        assert refresh(srv.base_url, fresh_db, per_page=10, max_workers=2).success
        published = exact_table(fresh_db)
        srv.control.configure(latency_ms=150)
        cli = start_cli_refresh(srv.base_url, fresh_db, tmp_path)
        try:
            wait_for(lambda: not lock_is_free(fresh_db), 120, "the CLI refresh never took the lock")
            engine = sa.create_engine(fresh_db)
            with pytest.raises(RefreshAlreadyRunning) as info:
                AdvisoryLock(engine).acquire()
            engine.dispose()
            message = str(info.value)
            assert "cm_pipeline refresh, dagster run " in message and "Terminate" in message
            wait_for(lambda: checkpointed_pages(fresh_db) >= 3, 120, "no checkpoint progress")
            os.kill(cli.pid, signal.SIGKILL)  # the run worker only: its step process is left behind
            cli.wait(10)
            wait_for(lambda: lock_is_free(fresh_db), 30, "the orphaned step kept the lock")
        finally:
            if cli.poll() is None:
                os.killpg(cli.pid, signal.SIGKILL)
        time.sleep(1.0)  # nothing may be published after the lock went
        assert exact_table(fresh_db) == published
        [(state,)] = query(
            fresh_db, "SELECT state FROM cm_pipeline.extract_passes ORDER BY pass_id DESC LIMIT 1"
        )
        assert state == "running"  # left for the next run to resume
        srv.control.configure(latency_ms=0)
        assert refresh(srv.base_url, fresh_db, per_page=10, max_workers=2).success
