"""A refresh SIGKILLed mid-pass leaves the published table as it was; the rerun resumes from the checkpoints
and ends with the same table as a clean run."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import sqlalchemy as sa

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.extract.options import ExtractOptions
from cm_pipeline.extract.run import run_extraction
from cm_pipeline.project import REPO_ROOT
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.extract.conftest import (
    ListLog,
    exact_table,
    materialization_metadata,
    query,
    refresh,
    snapshot,
)

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


WALKER = textwrap.dedent(
    """
    import logging, sys
    import sqlalchemy as sa
    from cm_pipeline.chartmogul.client import ChartMogulClient
    from cm_pipeline.extract.options import ExtractOptions
    from cm_pipeline.extract.run import run_extraction

    base_url, db_url = sys.argv[1:3]
    client = ChartMogulClient("k", base_url=base_url, max_requests_per_second=500)
    run_extraction(client, sa.create_engine(db_url), ExtractOptions(per_page=10, max_workers=3), logging.getLogger("x"))
    """
)
# The publish transaction has written rows: it holds its row-exclusive lock on chartmogul.customers and has
# a transaction id (the staging writer's short transactions never touch that table).
OPEN_PUBLISH_WROTE = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.relation ="
    " 'chartmogul.customers'::regclass AND l.mode = 'RowExclusiveLock' AND a.backend_xid IS NOT NULL"
)


def test_a_kill_while_the_walk_is_writing_the_next_table_version_leaves_the_published_one(fresh_db):
    """Pages are written into the publish transaction while the walk goes on; readers still see the last
    publish, a SIGKILL rolls the writes back, and the rerun applies the staged pages again."""
    with SandboxServer(customers=500, seed=23, account="realistic", legacy_page_fields=False) as srv:
        ctl = srv.control
        run_child = [sys.executable, "-c", WALKER, srv.base_url, fresh_db]
        assert subprocess.run(run_child, cwd=REPO_ROOT, timeout=120).returncode == 0  # the first load
        changed = [c["uuid"] for c in ctl.customers()[::12]]
        for uuid in changed:
            ctl.modify_customer(uuid, mrr=4242)
        published = exact_table(fresh_db)
        ctl.configure(latency_ms=40)
        child = subprocess.Popen(
            run_child, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 60
            while query(fresh_db, OPEN_PUBLISH_WROTE)[0][0] == 0:
                assert child.poll() is None, "the refresh finished before its publish transaction wrote"
                assert time.monotonic() < deadline, "no write into the next table version"
                time.sleep(0.01)
            assert exact_table(fresh_db) == published  # written, not visible
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        staged = checkpointed_pages(fresh_db)
        assert exact_table(fresh_db) == published  # rolled back: nothing readers see changed

        ctl.configure(latency_ms=0)
        ctl.reset_stats()
        engine = sa.create_engine(fresh_db)
        client = ChartMogulClient("k", base_url=srv.base_url, max_requests_per_second=500)
        try:
            rerun = run_extraction(client, engine, ExtractOptions(per_page=10, max_workers=3), ListLog())
        finally:
            client.close()
            engine.dispose()
        lists = ctl.stats()["by_route"]["GET /v1/customers"]
        api = {c["uuid"]: c for c in ctl.customers()}
    # Killed mid-walk: pages were staged, and the rerun fetched only the rest, never a staged page again.
    assert rerun.resumed and 0 < staged and 0 < lists == rerun.pages
    assert rerun.publish.updated == len(changed)  # the killed run's pages, applied again, and the rest
    assert dict(query(fresh_db, "SELECT uuid, raw FROM chartmogul.customers")) == api
