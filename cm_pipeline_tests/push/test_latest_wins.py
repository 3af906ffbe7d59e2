"""A push and an extraction in either order: the warehouse ends equal to ChartMogul, never reverted to the
older state a page was fetched in (the extraction walked before the push wrote back)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.extract.options import ExtractOptions
from cm_pipeline.extract.run import Extraction, run_extraction
from cm_pipeline.push.kinds import UPDATES
from cm_pipeline.push.run import push
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.extract.conftest import ListLog
from cm_pipeline_tests.push.conftest import make_updates

OPTIONS = ExtractOptions(per_page=25, progress_interval=0.5)


@pytest.fixture
def account():
    """A seeded sandbox and a client on it."""
    with (
        SandboxServer(customers=300, seed=31, api_key=TEST_API_KEY) as srv,
        ChartMogulClient(TEST_API_KEY, srv.base_url, max_requests_per_second=500) as client,
    ):
        yield srv, client


def push_tags(engine, client, customers: list[dict], run_id: str) -> dict:
    make_updates(engine, [{"customer_uuid": c["uuid"], "add_tags": ["pushed"]} for c in customers])
    return push(engine, client, run_id, UPDATES)


def warehouse_equals_chartmogul(engine, ctl) -> None:
    with engine.connect() as conn:
        rows = dict(
            conn.execute(sa.text("SELECT uuid, raw FROM chartmogul.customers WHERE deleted_at IS NULL")).all()
        )
    live = {c["uuid"]: c for c in ctl.customers()}
    assert rows.keys() == live.keys()
    differing = [u for u in live if rows[u] != live[u]]
    assert differing == [], f"{len(differing)} rows differ from ChartMogul, e.g. {differing[:3]}"


def test_a_push_during_an_extraction_is_not_reverted_by_its_publish(account, fresh_db):
    srv, client = account
    engine = sa.create_engine(fresh_db)
    try:
        run_extraction(client, engine, OPTIONS, ListLog())
        extraction = Extraction(client, engine, OPTIONS, ListLog())
        extraction.open()
        extraction.walk()  # every page staged: the old tags
        pushed = push_tags(engine, client, srv.control.customers()[:120], "push-during")
        assert pushed["applied"] == 120
        extraction.verify()
        result = extraction.publish()
        assert result.publish.kept_newer == 120
        warehouse_equals_chartmogul(engine, srv.control)
    finally:
        engine.dispose()


def test_a_push_between_a_killed_extraction_and_its_resume_is_kept(account, fresh_db):
    srv, client = account
    engine = sa.create_engine(fresh_db)
    try:
        run_extraction(client, engine, OPTIONS, ListLog())
        killed = Extraction(client, engine, OPTIONS, ListLog())
        killed.open()
        killed.walk()  # staged and checkpointed, then the run dies before publishing
        pushed = push_tags(engine, client, srv.control.customers()[:150], "push-between")
        assert pushed["applied"] == 150
        resumed = run_extraction(client, engine, OPTIONS, ListLog())
        assert resumed.resumed and resumed.pages == 0  # nothing fetched again: the staged pages are used
        assert resumed.publish.kept_newer == 150
        warehouse_equals_chartmogul(engine, srv.control)
    finally:
        engine.dispose()
