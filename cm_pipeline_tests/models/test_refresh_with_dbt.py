"""warehouse_refresh_job end to end: extract from the sandbox over real sockets, then `dbt build`.

Refresh, push the outbound updates, change one customer and delete another in the sandbox, refresh
again: the outbound updates hold only the changed customer (everything pushed converged), the snapshot
records the change and the deletion, and staging drops the deleted customer.
"""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from cm_pipeline.extract.asset import chartmogul_customers
from cm_pipeline.extract.checks import EXTRACT_CHECKS
from cm_pipeline.extract.job import warehouse_refresh_job
from cm_pipeline.models.assets import cm_dbt_models
from cm_pipeline.models.resource import build_dbt_resource
from cm_pipeline.push.jobs import push_updates_job
from cm_pipeline.resources import ChartMogulAccess, ChartMogulResource, WarehouseResource
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline_tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.timeout(240)

HIGH_MRR = 777_700  # cents, over the default high_value_mrr_cents


def _defs(base_url: str, db_url: str) -> dg.Definitions:
    return dg.Definitions(
        assets=[chartmogul_customers, cm_dbt_models],
        asset_checks=EXTRACT_CHECKS,
        jobs=[warehouse_refresh_job, push_updates_job],
        resources={
            "chartmogul": ChartMogulResource(
                access=ChartMogulAccess(api_key=TEST_API_KEY, base_url=base_url), max_requests_per_second=500
            ),
            "warehouse": WarehouseResource(url=db_url),
            "dbt": build_dbt_resource(db_url),
        },
    )


def _refresh(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("warehouse_refresh_job")
    result = job.execute_in_process(
        run_config={"ops": {"chartmogul_customers": {"config": {"per_page": 50}}}}, instance=instance
    )
    assert result.success
    failed = [
        (e.asset_key.to_user_string(), e.check_name)
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
    assert failed == []
    return result


def _all(engine: sa.Engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


@pytest.mark.slow
def test_refresh_push_refresh_converges_and_snapshots_changes(fresh_db):
    engine = sa.create_engine(fresh_db, future=True)
    with (
        SandboxServer(customers=40, seed=11, api_key=TEST_API_KEY) as sandbox,
        dg.DagsterInstance.ephemeral() as inst,
    ):
        defs = _defs(sandbox.base_url, fresh_db)
        first = _refresh(defs, inst)
        built = {e.asset_key.to_user_string() for e in first.get_asset_materialization_events()}
        assert {"chartmogul_customers", "dim_customers", "reverse_etl/chartmogul_updates"} <= built

        live = sandbox.control.customers()
        assert _all(engine, "SELECT count(*) FROM staging.stg_chartmogul__customers") == [(len(live),)]
        assert _all(engine, "SELECT count(*) FROM snapshots.customers_snapshot") == [(len(live),)]
        assert _all(engine, "SELECT count(*) FROM reverse_etl.chartmogul_updates") != [(0,)]

        # Push what the rules ask for, then change one customer and delete another in ChartMogul.
        pushed = defs.resolve_job_def("push_updates_job").execute_in_process(instance=inst)
        assert pushed.success
        changed = next(
            c
            for c in live
            if c["status"] == "Active" and "high-value" not in c["attributes"]["tags"] and c["mrr"] < 100000
        )
        deleted = next(c for c in live if c["uuid"] != changed["uuid"])["uuid"]
        sandbox.control.modify_customer(changed["uuid"], mrr=HIGH_MRR)
        sandbox.control.delete_customer(deleted)

        _refresh(defs, inst)

    # Everything the push applied is now in the warehouse, so the only row left is the changed customer.
    assert _all(engine, "SELECT * FROM reverse_etl.chartmogul_updates") == [
        (changed["uuid"], ["high-value"], [], {"mrr_band": "1000_to_9999"}, {"mrr_band": "String"})
    ]
    history = _all(
        engine,
        "SELECT uuid, mrr, deleted_at IS NOT NULL, dbt_valid_to IS NULL FROM snapshots.customers_snapshot"
        " ORDER BY uuid, dbt_valid_from",
    )
    assert [v[1:] for v in history if v[0] == changed["uuid"]] == [
        (changed["mrr"], False, False),
        (HIGH_MRR, False, True),
    ]
    assert [v[2:] for v in history if v[0] == deleted] == [(False, False), (True, True)]
    assert _all(
        engine, "SELECT count(*) FROM staging.stg_chartmogul__customers WHERE customer_uuid = :u", u=deleted
    ) == [(0,)]
    engine.dispose()
