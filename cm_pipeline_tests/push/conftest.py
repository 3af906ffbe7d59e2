"""Fixtures for the reverse-ETL tests: a sandbox over real sockets, a fresh warehouse, and helpers."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline.warehouse.customers import write_entries
from cm_pipeline.warehouse.schema import ensure_schema
from cm_pipeline_tests.chartmogul.conftest import closed_port  # noqa: F401  (a fixture, shared)
from cm_pipeline_tests.conftest import TEST_API_KEY

UPDATES_DDL = (
    "customer_uuid text, add_tags jsonb, remove_tags jsonb, custom_attributes jsonb, attribute_types jsonb"
)
BY_EMAIL_DDL = "email text, key text, type text, value jsonb, source text"
CREATES_DDL = (
    "data_source_uuid text, external_id text, name text, email text, company text, country text, state text, "
    "city text, zip text, lead_created_at timestamptz, free_trial_started_at timestamptz, owner text, "
    "website_url text, primary_contact jsonb, tags jsonb, custom jsonb"
)


@pytest.fixture
def sandbox():
    """An empty in-process sandbox that requires TEST_API_KEY."""
    with SandboxServer(customers=0, seed=1, api_key=TEST_API_KEY) as srv:
        yield srv


@pytest.fixture
def ctl(sandbox):
    return sandbox.control


@pytest.fixture
def client(sandbox):
    """A client with the production code path, fast backoff for tests."""
    with ChartMogulClient(
        TEST_API_KEY,
        sandbox.base_url,
        max_requests_per_second=200,
        max_connections=10,
        read_timeout=5,
        max_retry_seconds=60,
        backoff_base=0.02,
        backoff_max=0.2,
    ) as c:
        yield c


@pytest.fixture
def wh(fresh_db):
    """Engine on a database of its own with the customers, push_log and push_plan tables."""
    eng = sa.create_engine(fresh_db, future=True)
    ensure_schema(eng)
    yield eng
    eng.dispose()


def sync_warehouse(engine, client) -> int:
    """Load every sandbox customer into chartmogul.customers through the API (a tiny extraction)."""
    n = 0
    for page in client.list_customers():
        for entry in page.entries:
            write_entries(engine, [entry])
            n += 1
    return n


def make_relation(engine, name: str, ddl: str, rows: list[dict]) -> None:
    """(Re)create `name` as a table with `ddl` columns holding `rows` (dict/list values stored as JSON)."""
    schema = name.split(".")[0]
    cols = [c.strip().split()[0] for c in ddl.split(",")]
    jsonb = {c.strip().split()[0] for c in ddl.split(",") if c.strip().split()[1] == "jsonb"}
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
        conn.execute(sa.text(f"CREATE TABLE {name} ({ddl})"))
        if rows:
            values = ", ".join(f"CAST(:{c} AS jsonb)" if c in jsonb else f":{c}" for c in cols)
            params = [
                {c: (json.dumps(r.get(c)) if c in jsonb and r.get(c) is not None else r.get(c)) for c in cols}
                for r in rows
            ]
            conn.execute(sa.text(f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({values})"), params)


def log_rows(engine, run_id: str | None = None) -> list[dict]:
    """push_log rows (optionally of one run) as dicts, in insertion order."""
    sql = "SELECT * FROM cm_pipeline.push_log" + (" WHERE run_id = :r" if run_id else "") + " ORDER BY id"
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(sql), {"r": run_id})]


def wh_customer(engine, uuid: str) -> dict:
    with engine.connect() as conn:
        return dict(
            conn.execute(sa.text("SELECT * FROM chartmogul.customers WHERE uuid = :u"), {"u": uuid})
            .one()
            ._mapping
        )


def writes_at_sandbox(ctl) -> int:
    """PATCH and POST requests the sandbox received since its stats were reset."""
    return sum(n for route, n in ctl.stats()["by_route"].items() if route.startswith(("PATCH", "POST")))


UPDATES_REL = "reverse_etl.chartmogul_updates"


def seed_customers(ctl, n: int = 3) -> list[dict]:
    """`n` sandbox customers c{i}@example.com with tags a, b and three custom attributes."""
    return [
        ctl.insert_customer(
            name=f"C{i}",
            email=f"c{i}@example.com",
            tags=["a", "b"],
            custom={"channel": "Facebook", "CAC": 25, "vip_since": "2023-01-01T00:00:00.000Z"},
        )
        for i in range(n)
    ]


def type_conflict_row(uuid: str) -> dict:
    """An update row only the API can refuse: CAC is an Integer in the account; the row declares String."""
    return {"customer_uuid": uuid, "custom_attributes": {"CAC": "lots"}, "attribute_types": {"CAC": "String"}}


def make_updates(engine, rows: list[dict]) -> None:
    """(Re)create reverse_etl.chartmogul_updates holding `rows`."""
    make_relation(engine, UPDATES_REL, UPDATES_DDL, rows)
