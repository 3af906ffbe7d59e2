"""`make psql` and `make stop` on the demo's embedded Postgres: psql opens it (starting it if needed), and
stop stops it and keeps its data, even after a process that used it was killed."""

from __future__ import annotations

import os
import subprocess
import sys

from cm_pipeline.project import REPO_ROOT


def _warehouse(command: str, state, stdin: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WAREHOUSE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "cm_pipeline.demo.warehouse", command],
        cwd=REPO_ROOT,
        env={**env, "CM_PIPELINE_STATE_DIR": str(state)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_psql_opens_the_embedded_warehouse_and_stop_keeps_its_data(tmp_path):
    pgdata = tmp_path / "pgdata"
    opened = _warehouse("psql", tmp_path, "SELECT current_database() || '!';\n")
    assert opened.returncode == 0, opened.stderr
    assert "cm_pipeline!" in opened.stdout
    assert (pgdata / "postmaster.pid").exists(), "the server stays up after psql, as after the demo"

    handles = pgdata / ".handle_pids.json"
    handles.write_text("[999999999]")  # a user of the server that was killed before it let go

    stopped = _warehouse("stop", tmp_path)
    assert stopped.returncode == 0 and "stopped; its data stays" in stopped.stdout, stopped
    assert not (pgdata / "postmaster.pid").exists()
    assert (pgdata / "PG_VERSION").exists()
    assert "Warning" not in stopped.stderr, stopped.stderr

    again = _warehouse("stop", tmp_path)
    assert "is not running" in again.stdout, again
    assert not (pgdata / "postmaster.pid").exists(), "stopping a stopped server must not start it"
