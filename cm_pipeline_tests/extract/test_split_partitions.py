"""Large statuses split by data source: the same table as an unsplit pass, a customer in a data source the
warehouse never saw still arrives (via the count check's fallback), and an interrupted split pass
resumes with its persisted plan."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.chartmogul.errors import ChartMogulError
from cm_pipeline.extract.options import ExtractOptions
from cm_pipeline.extract.run import run_extraction
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline_tests.extract.conftest import query, snapshot

LOG = logging.getLogger("test.extract.split")
SPLIT = {"per_page": 20, "progress_interval": 0.5, "split_threshold": 0.1}
UNSPLIT = {"per_page": 20, "progress_interval": 0.5, "split_large_partitions": False}


@pytest.fixture
def srv():
    with SandboxServer(customers=600, seed=31) as server:
        yield server


def run(base_url: str, db_url: str, max_retry_seconds: float = 30.0, **options):
    engine = sa.create_engine(db_url)
    client = ChartMogulClient(
        "k", base_url=base_url, max_requests_per_second=1000, max_retry_seconds=max_retry_seconds
    )
    try:
        return run_extraction(client, engine, ExtractOptions(**options), LOG)
    finally:
        client.close()
        engine.dispose()


def checkpoint_partitions(db_url: str) -> set[str]:
    rows = query(
        db_url,
        "SELECT c.partition FROM cm_pipeline.extract_checkpoints c"
        " JOIN cm_pipeline.extract_passes p USING (pass_id) WHERE p.state = 'running'",
    )
    return {r[0] for r in rows}


def test_a_split_pass_stores_exactly_what_an_unsplit_pass_stores(srv, fresh_db, other_db):
    first = run(srv.base_url, fresh_db, **SPLIT)
    # First load: no warehouse data, so the plan comes from the API's counts (discovery.py).
    assert len([name for name in first.partitions if name.startswith("Active@ds_")]) >= 2
    assert first.coverage and all(line.endswith(": complete") for line in first.coverage)
    assert run(srv.base_url, other_db, **UNSPLIT).publish.inserted == 600
    assert snapshot(fresh_db) == snapshot(other_db)
    ctl = srv.control
    for c in ctl.customers()[:25]:
        ctl.modify_customer(c["uuid"], mrr=(c["mrr"] or 0) + 700)
    ctl.delete_customer(ctl.customers()[100]["uuid"])

    split = run(srv.base_url, fresh_db, **SPLIT)
    unsplit = run(srv.base_url, other_db, **UNSPLIT)

    subs = [name for name in split.partitions if name.startswith("Active@ds_")]
    assert len(subs) >= 2 and "Active" not in split.partitions
    assert all(split.partitions[n].pages >= 1 for n in subs)
    assert not any(name.endswith("@fallback") for name in split.partitions), split.coverage
    assert split.coverage and all(line.endswith(": complete") for line in split.coverage)
    assert (split.publish.updated, split.publish.deleted) == (
        unsplit.publish.updated,
        unsplit.publish.deleted,
    )
    assert (split.publish.updated, split.publish.deleted) == (25, 1)
    assert snapshot(fresh_db) == snapshot(other_db)


def test_a_customer_in_a_data_source_the_warehouse_does_not_know_arrives_through_the_fallback(
    srv, fresh_db, other_db
):
    run(srv.base_url, fresh_db, **SPLIT)
    ctl = srv.control
    newcomer = ctl.insert_customer(
        status="Active", data_source_uuid="ds_brand-new-source", name="Newcomer", email="new@example.com"
    )["uuid"]
    ctl.reset_stats()

    result = run(srv.base_url, fresh_db, **SPLIT)

    assert "Active@fallback" in result.partitions
    assert any(line.startswith("Active:") and "Active@fallback" in line for line in result.coverage)
    assert result.publish.inserted == 1
    rows = query(
        fresh_db, "SELECT status, data_source_uuid FROM chartmogul.customers WHERE uuid = :u", u=newcomer
    )
    assert rows == [("Active", "ds_brand-new-source")]
    run(srv.base_url, other_db, **UNSPLIT)
    assert snapshot(fresh_db) == snapshot(other_db)
    # The next pass knows the source: its split covers the status, no fallback needed.
    again = run(srv.base_url, fresh_db, **SPLIT)
    assert "Active@ds_brand-new-source" in again.partitions and "Active@fallback" not in again.partitions


def test_an_interrupted_split_pass_resumes_with_its_persisted_plan(srv, fresh_db, other_db):
    run(srv.base_url, fresh_db, **SPLIT)
    ctl = srv.control
    for c in ctl.customers()[:10]:
        ctl.modify_customer(c["uuid"], mrr=(c["mrr"] or 0) + 300)
    ctl.configure(fault_rate=0.08, fault_kinds=["500"], fault_methods=["GET"], fault_seed=5)
    with pytest.raises(ChartMogulError):
        run(srv.base_url, fresh_db, max_retry_seconds=0.0, **SPLIT)  # the first 500 sinks the run
    plan = checkpoint_partitions(fresh_db)
    assert {"Active@fallback"}.isdisjoint(plan) and sum(
        "@ds_" in p for p in plan
    ) >= 2  # the plan is persisted
    ctl.configure(fault_rate=0.0)

    # Resumed with splitting now off: the pass keeps its own plan all the same.
    resumed = run(srv.base_url, fresh_db, **{**SPLIT, "split_large_partitions": False})

    assert resumed.resumed is True
    assert set(resumed.partitions) == plan
    assert resumed.publish.updated == 10
    run(srv.base_url, other_db, **UNSPLIT)
    assert snapshot(fresh_db) == snapshot(other_db)
