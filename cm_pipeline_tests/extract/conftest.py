"""Fixtures and helpers for the extraction tests: a sandbox over real sockets, databases, a refresh runner."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from cm_pipeline.assets.checks import EXTRACT_CHECKS
from cm_pipeline.assets.extract import chartmogul_customers
from cm_pipeline.resources import ChartMogulResource, WarehouseResource
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline.warehouse.schema import CUSTOMER_DATA_COLUMNS
from cm_pipeline_tests.conftest import TEST_API_KEY


@pytest.fixture
def sandbox():
    """A small seeded sandbox that requires TEST_API_KEY."""
    with SandboxServer(customers=300, seed=7, api_key=TEST_API_KEY) as srv:
        yield srv


@pytest.fixture
def other_db(postgres):
    """A second database, for comparing two runs side by side."""
    url = postgres.create_database("cm_t2")
    yield url
    postgres.drop_database(url)


def chartmogul_resource(base_url: str, api_key: str = TEST_API_KEY, **kw) -> ChartMogulResource:
    settings = {
        "max_requests_per_second": 500.0,
        "max_connections": 10,
        "read_timeout": 10.0,
        "max_retry_seconds": 60.0,
    }
    return ChartMogulResource(api_key=api_key, base_url=base_url, **{**settings, **kw})


def refresh(
    base_url: str,
    db_url: str,
    *,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    api_key: str = TEST_API_KEY,
    client: dict | None = None,
    **config,
) -> dg.ExecuteInProcessResult:
    """Materialise chartmogul_customers (and its checks) against `base_url` into `db_url`."""
    run_config = {"per_page": 20, "progress_interval_seconds": 0.5, **config}
    return dg.materialize(
        [chartmogul_customers, *EXTRACT_CHECKS],
        resources={
            "chartmogul": chartmogul_resource(base_url, api_key, **(client or {})),
            "warehouse": WarehouseResource(url=db_url),
        },
        run_config={"ops": {"chartmogul_customers": {"config": run_config}}},
        instance=instance,
        raise_on_error=raise_on_error,
    )


def materialization_metadata(result: dg.ExecuteInProcessResult) -> dict:
    [mat] = result.asset_materializations_for_node("chartmogul_customers")
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def snapshot(db_url: str) -> list[tuple]:
    """The table's data columns and deletion flag, by uuid (what two equivalent runs must agree on)."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            cols = ", ".join(CUSTOMER_DATA_COLUMNS)
            return [
                tuple(r)
                for r in conn.execute(
                    sa.text(f"SELECT {cols}, deleted_at IS NOT NULL FROM chartmogul.customers ORDER BY uuid")
                )
            ]
    finally:
        engine.dispose()


def exact_table(db_url: str) -> list[tuple]:
    """Every column plus each row's physical version: equal only if nothing was written."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    sa.text("SELECT *, xmin::text, ctid::text FROM chartmogul.customers ORDER BY uuid")
                )
            ]
    finally:
        engine.dispose()


def query(db_url: str, sql: str, **params):
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).all()
    finally:
        engine.dispose()
