"""Fixtures of the dbt build tests: a warehouse of crafted customers and one `dbt build` over it."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cm_pipeline.models.assets import cm_dbt_models
from cm_pipeline.models.resource import build_dbt_resource
from cm_pipeline.warehouse.schema import CUSTOMERS_TABLE, ddl

AT = "@"


def email(user: str, domain: str) -> str:
    return f"{user}{AT}{domain}"


ADA = email("ada", "byrne-analytics.example")
OPS = email("ops", "okafor-logistics.example")
FINANCE = email("finance", "quietco.example")

# uuid, status, mrr (cents), tags, custom attributes, email, data source, external id, country, deleted
CUSTOMERS = [
    # paying over the threshold, no tag yet: gains `high-value` and an mrr_band
    ("cus_a", "Active", 150000, ["vip"], {}, None, "ds_main", "a1", "US", False),
    # under the threshold but tagged: loses `high-value`; its mrr_band is already right; `keep` survives
    (
        "cus_b",
        "Active",
        50000,
        ["high-value", "keep"],
        {"mrr_band": "100_to_999", "plan": "pro"},
        None,
        "ds_main",
        "b1",
        "US",
        False,
    ),
    # already in the desired state: no row
    (
        "cus_c",
        "Active",
        200000,
        ["high-value"],
        {"mrr_band": "1000_to_9999"},
        None,
        "ds_main",
        "c1",
        "DE",
        False,
    ),
    # a lead: no rule applies, no row
    ("cus_d", "New Lead", 0, [], {}, None, "ds_main", "d1", "US", False),
    # churned, null tags/attributes: gets mrr_band none
    ("cus_e", "Cancelled", 0, None, None, None, "ds_main", "e1", None, False),
    # deleted from ChartMogul: excluded everywhere even though a rule would match
    ("cus_f", "Active", 500000, [], {}, None, "ds_main", "f1", "US", True),
    # two customers sharing Ada's email (different case), both already holding her latest NPS (10):
    # one as the text "10", one as 10.0; the Integer rule compares numbers, so neither is re-sent
    (
        "cus_g",
        "Past Due",
        5000,
        [],
        {"mrr_band": "under_100", "nps_score": "10"},
        ADA,
        "ds_main",
        "g1",
        "IE",
        False,
    ),
    (
        "cus_i",
        "Active",
        20000,
        [],
        {"mrr_band": "100_to_999", "nps_score": 10.0},
        ADA.upper(),
        "ds_other",
        "i1",
        "IE",
        False,
    ),
    # holds new_leads.csv's lead_0002 in the default data source, and lacks its NPS
    ("cus_h", "Active", 20000, [], {"mrr_band": "100_to_999"}, OPS, "ds_main", "lead_0002", "US", False),
]


def _insert_customers(engine: sa.Engine, rows) -> None:
    stmt = sa.text(
        f"INSERT INTO {CUSTOMERS_TABLE} (uuid, status, mrr, arr, tags, custom_attributes, email,"
        " data_source_uuid, external_id, country, currency, billing_system_type, raw, deleted_at)"
        " VALUES (:uuid, :status, :mrr, :arr, CAST(:tags AS jsonb), CAST(:custom AS jsonb), :email, :ds, :ext,"
        " :country, 'USD', CASE WHEN :ds = 'ds_main' THEN 'Custom' ELSE 'Stripe' END, CAST(:raw AS jsonb), :deleted_at)"
    )
    with engine.begin() as conn:
        for uuid, status, mrr, tags, custom, mail, ds, ext, country, deleted in rows:
            raw = {"uuid": uuid, "status": status, "mrr": mrr, "attributes": {"tags": tags, "custom": custom}}
            conn.execute(
                stmt,
                {
                    "uuid": uuid,
                    "status": status,
                    "mrr": mrr,
                    "arr": mrr * 12,
                    "tags": None if tags is None else json.dumps(tags),
                    "custom": None if custom is None else json.dumps(custom),
                    "email": mail,
                    "ds": ds,
                    "ext": ext,
                    "country": country,
                    "raw": json.dumps(raw),
                    "deleted_at": datetime(2024, 1, 1, tzinfo=timezone.utc) if deleted else None,
                },
            )


@pytest.fixture(scope="module")
def warehouse(postgres):
    """A database of this module's own with the extraction's tables and the crafted customers."""
    url = postgres.create_database("cm_dbt")
    engine = sa.create_engine(url, future=True)
    with engine.begin() as conn:
        for stmt in ddl():
            conn.execute(sa.text(stmt))
    _insert_customers(engine, CUSTOMERS)
    yield url, engine
    engine.dispose()
    postgres.drop_database(url)


# The test server trusts local connections, so a password in the URL is ignored by Postgres: it lets the
# test check that the password reaches dbt without reaching Dagster's event log.
PASSWORD = "pw-never-logged-5d1e"


def _with_password(url: str) -> tuple[str, str]:
    parsed = make_url(url)
    if parsed.password:
        return url, str(parsed.password)
    return parsed.set(password=PASSWORD).render_as_string(hide_password=False), PASSWORD


@pytest.fixture(scope="module")
def built(warehouse):
    """One `dbt build` through the Dagster multi-asset, with the dbt resource pointed at the warehouse."""
    url, _ = warehouse
    url, password = _with_password(url)
    result = dg.materialize([cm_dbt_models], resources={"dbt": build_dbt_resource(url)}, raise_on_error=False)
    return result, password
