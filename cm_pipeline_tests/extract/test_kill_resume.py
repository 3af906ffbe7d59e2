"""A refresh SIGKILLed mid-pass leaves the published table as it was; the rerun resumes from the checkpoints
and ends with the same table as a clean run."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import sqlalchemy as sa

from cm_pipeline.project import REPO_ROOT
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.extract.conftest import exact_table, materialization_metadata, query, refresh, snapshot

CHILD = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from cm_pipeline.extract.asset import chartmogul_customers
    from cm_pipeline.resources import ChartMogulAccess, ChartMogulResource, WarehouseResource

    base_url, db_url, key = sys.argv[1:4]
    dg.materialize(
        [chartmogul_customers],
        resources={
            "chartmogul": ChartMogulResource(
                access=ChartMogulAccess(api_key=key, base_url=base_url), max_requests_per_second=500.0
            ),
            "warehouse": WarehouseResource(url=db_url),
        },
        run_config={"ops": {"chartmogul_customers": {"config": {"per_page": 10, "max_workers": 2}}}},
    )
    """
)
CONFIG = {"per_page": 10, "max_workers": 2}


def checkpointed_pages(db_url: str) -> int:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            if conn.execute(
                sa.text("SELECT to_regclass('cm_pipeline.extract_checkpoints') IS NULL")
            ).scalar():
                return 0
            return conn.execute(
                sa.text(
                    "SELECT coalesce(sum(c.pages), 0) FROM cm_pipeline.extract_checkpoints c"
                    " JOIN cm_pipeline.extract_passes p USING (pass_id) WHERE p.state = 'running'"
                )
            ).scalar()
    finally:
        engine.dispose()


def test_sigkill_mid_pass_then_rerun_resumes_and_matches_a_clean_run(fresh_db, other_db):
    with SandboxServer(customers=600, seed=21, api_key=TEST_API_KEY) as srv:
        ctl = srv.control
        assert refresh(srv.base_url, fresh_db, **CONFIG).success  # a published table to protect
        assert refresh(srv.base_url, other_db, **CONFIG).success  # the same start, for the clean run
        for c in ctl.customers()[:40]:
            ctl.modify_customer(c["uuid"], mrr=(c["mrr"] or 0) + 100)
        ctl.delete_customer(ctl.customers()[50]["uuid"])
        published = exact_table(fresh_db)
        ctl.configure(latency_ms=60)

        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, srv.base_url, fresh_db, TEST_API_KEY],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while checkpointed_pages(fresh_db) < 12:
                assert child.poll() is None, "the refresh finished before it could be killed"
                assert time.monotonic() < deadline, "no checkpoint progress"
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        killed_at = checkpointed_pages(fresh_db)
        assert killed_at >= 12

        assert exact_table(fresh_db) == published  # the killed run changed nothing readers see
        assert query(fresh_db, "SELECT count(*) FROM cm_pipeline.deletion_checks")[0][0] == 0

        ctl.configure(latency_ms=0)
        ctl.reset_stats()
        rerun = refresh(srv.base_url, fresh_db, **CONFIG)
        list_requests = ctl.stats()["by_route"].get("GET /v1/customers", 0)
        meta = materialization_metadata(rerun)
        assert meta["resumed"] is True
        full_pass_pages = sum(p["pages"] for p in meta["partitions"].values())
        assert list_requests == full_pass_pages - killed_at < full_pass_pages

        assert refresh(srv.base_url, other_db, **CONFIG).success  # an uninterrupted run, for comparison
        assert snapshot(fresh_db) == snapshot(other_db)
        assert meta["deleted"] == 1 and meta["updated"] == 40
