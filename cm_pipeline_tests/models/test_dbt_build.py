"""`dbt build` through the Dagster assets against a real Postgres holding crafted customers.

One build (a module-scoped fixture) is shared by the assertions on staging, marts and the outbound
models; one `dbt source freshness` afterwards checks the freshness query. The snapshot's history across
two extracts is tested in test_refresh_with_dbt.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from cm_pipeline.models.project import DBT_PROJECT
from cm_pipeline.models.resource import build_dbt_resource
from cm_pipeline.warehouse.schema import CUSTOMERS_TABLE
from cm_pipeline_tests.models.conftest import ADA, CUSTOMERS, FINANCE, OPS, email

# One dbt build (the module fixture) serves every test here: the file runs whole on one test worker
# (WHOLE_FILES in cm_pipeline_tests/conftest.py).
pytestmark = pytest.mark.timeout(240)


def _rows(engine: sa.Engine, sql: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(sql))]


def test_build_succeeds_and_every_dbt_test_passes_as_an_asset_check(built):
    built, password = built
    assert built.success
    materialized = {e.asset_key.to_user_string() for e in built.get_asset_materialization_events()}
    assert {
        "staging/stg_chartmogul__customers",
        "dim_customers",
        "customer_mrr_summary",
        "snapshots/customers_snapshot",
        "reverse_etl/chartmogul_updates",
        "reverse_etl/chartmogul_by_email",
        "reverse_etl/chartmogul_creates",
        "seeds/new_leads",
    } <= materialized
    row_counts = {
        e.asset_key.to_user_string(): e.materialization.metadata["dagster/row_count"].value
        for e in built.get_asset_materialization_events()
        if "dagster/row_count" in e.materialization.metadata
    }
    assert row_counts == {
        "dim_customers": 8,
        "customer_mrr_summary": 6,
        "snapshots/customers_snapshot": 9,
        "reverse_etl/chartmogul_updates": 3,
        "reverse_etl/chartmogul_by_email": 2,
        "reverse_etl/chartmogul_creates": 2,
        "seeds/new_leads": 3,
        "seeds/nps_responses": 4,
    }
    evaluations = built.get_asset_check_evaluations()
    assert len(evaluations) >= 30
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed]
    assert failed == []
    assert not [event for event in built.all_events if password in str(event)]


def test_staging_excludes_deleted_customers_and_normalises_nulls(built, warehouse):
    _, engine = warehouse
    rows = _rows(
        engine, "SELECT customer_uuid, tags, custom_attributes FROM staging.stg_chartmogul__customers"
    )
    assert {r["customer_uuid"] for r in rows} == {c[0] for c in CUSTOMERS if not c[-1]}
    cus_e = next(r for r in rows if r["customer_uuid"] == "cus_e")
    assert (cus_e["tags"], cus_e["custom_attributes"]) == ([], {})


def test_mrr_summary_groups_live_customers(built, warehouse):
    _, engine = warehouse
    rows = _rows(
        engine,
        "SELECT status, country, customer_count, paying_customer_count, total_mrr_cents"
        " FROM analytics.customer_mrr_summary ORDER BY status, country",
    )
    expected: dict[tuple, list[int]] = {}
    for _, status, mrr, *_rest, country, deleted in CUSTOMERS:
        if deleted:
            continue
        group = expected.setdefault((status, country or "unknown"), [0, 0, 0])
        group[0] += 1
        group[1] += mrr > 0
        group[2] += mrr
    assert {
        (r["status"], r["country"]): [r["customer_count"], r["paying_customer_count"], r["total_mrr_cents"]]
        for r in rows
    } == expected


def test_customer_updates_emit_only_changes(built, warehouse):
    _, engine = warehouse
    rows = _rows(engine, "SELECT * FROM reverse_etl.chartmogul_updates ORDER BY customer_uuid")
    assert rows == [
        {
            "customer_uuid": "cus_a",
            "add_tags": ["high-value"],
            "remove_tags": [],
            "custom_attributes": {"mrr_band": "1000_to_9999"},
            "attribute_types": {"mrr_band": "String"},
        },
        {
            "customer_uuid": "cus_b",
            "add_tags": [],
            "remove_tags": ["high-value"],
            "custom_attributes": {},
            "attribute_types": {},
        },
        {
            "customer_uuid": "cus_e",
            "add_tags": [],
            "remove_tags": [],
            "custom_attributes": {"mrr_band": "none"},
            "attribute_types": {"mrr_band": "String"},
        },
    ]


def test_outbound_column_contract(built, warehouse):
    _, engine = warehouse
    rows = _rows(
        engine,
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'reverse_etl' ORDER BY table_name, ordinal_position",
    )
    columns: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        columns.setdefault(r["table_name"], []).append((r["column_name"], r["data_type"]))
    assert columns["chartmogul_updates"] == [
        ("customer_uuid", "text"),
        ("add_tags", "jsonb"),
        ("remove_tags", "jsonb"),
        ("custom_attributes", "jsonb"),
        ("attribute_types", "jsonb"),
    ]
    assert [c for c, _ in columns["chartmogul_by_email"]] == [
        "email",
        "key",
        "type",
        "value",
        "source",
    ]
    assert [c for c, _ in columns["chartmogul_creates"]] == [
        "data_source_uuid",
        "external_id",
        "name",
        "email",
        "company",
        "country",
        "state",
        "city",
        "zip",
        "lead_created_at",
        "free_trial_started_at",
        "owner",
        "website_url",
        "primary_contact",
        "tags",
        "custom",
    ]
    types = dict(columns["chartmogul_creates"])
    assert (types["primary_contact"], types["tags"], types["custom"]) == ("jsonb", "jsonb", "jsonb")


def test_attributes_by_email_skip_emails_whose_customers_all_hold_the_value(built, warehouse):
    _, engine = warehouse
    rows = _rows(engine, "SELECT * FROM reverse_etl.chartmogul_by_email ORDER BY email")
    assert rows == [
        {"email": FINANCE, "key": "nps_score", "type": "Integer", "value": "3", "source": "nps_survey"},
        {"email": OPS, "key": "nps_score", "type": "Integer", "value": "6", "source": "nps_survey"},
    ]


def test_new_customers_from_the_seed_skip_existing_external_ids(built, warehouse):
    _, engine = warehouse
    rows = _rows(engine, "SELECT * FROM reverse_etl.chartmogul_creates ORDER BY external_id")
    assert rows == [
        {
            "data_source_uuid": "ds_main",
            "external_id": "lead_0001",
            "name": "Ada Byrne",
            "email": ADA,
            "company": "Byrne Analytics",
            "country": "IE",
            "state": None,
            "city": "Dublin",
            "zip": "D02",
            "lead_created_at": datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc),
            "free_trial_started_at": datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc),
            "owner": None,
            "website_url": "https://byrne-analytics.example",
            "primary_contact": {
                "first_name": "Ada",
                "last_name": "Byrne",
                "email": ADA,
                "title": "CEO",
                "phone": "+353100000",
            },
            "tags": ["inbound", "trial"],
            "custom": [{"type": "String", "key": "lead_source", "value": "website", "source": "dbt"}],
        },
        {
            "data_source_uuid": "ds_main",
            "external_id": "lead_0003",
            "name": "Mina Sato",
            "email": email("mina", "sato.example"),
            "company": None,
            "country": "JP",
            "state": None,
            "city": "Tokyo",
            "zip": None,
            "lead_created_at": datetime(2024, 3, 3, 0, 0, tzinfo=timezone.utc),
            "free_trial_started_at": None,
            "owner": None,
            "website_url": None,
            "primary_contact": None,
            "tags": [],
            "custom": [],
        },
    ]


def test_freshness_counts_a_publish_that_changed_nothing(built, warehouse):
    """synced_at only moves on change: a quiet account stays fresh while passes keep publishing."""
    url, engine = warehouse
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {CUSTOMERS_TABLE} SET synced_at = now() - interval '3 days'"))
        published_at = conn.execute(
            sa.text(
                "INSERT INTO cm_pipeline.publish_log (pass_id, published_at, row_count, live_count, seen, inserted,"
                " updated, unchanged, deleted, undeleted, filters)"
                " VALUES (1, date_trunc('second', now() - interval '1 hour'), 9, 8, 8, 0, 0, 8, 0, 0, '{}')"
                " RETURNING published_at"
            )
        ).scalar_one()
    invocation = build_dbt_resource(url).cli(["source", "freshness"], raise_on_error=False)
    invocation.wait()
    (result,) = invocation.get_artifact("sources.json")["results"]
    assert result["unique_id"] == "source.cm_pipeline.chartmogul.customers"
    # Without the publish, max(synced_at) is 3 days old: past error_after (50 hours).
    assert result["status"] == "pass"
    assert datetime.fromisoformat(result["max_loaded_at"]) == published_at


def test_every_built_column_is_documented(built, warehouse):
    """The yml of each model, seed and snapshot lists exactly the columns of the relation dbt built."""
    _, engine = warehouse
    manifest = json.loads(Path(DBT_PROJECT.manifest_path).read_text())
    for node in manifest["nodes"].values():
        if node["resource_type"] not in ("model", "seed", "snapshot"):
            continue
        actual = _rows(
            engine,
            "SELECT column_name FROM information_schema.columns"
            f" WHERE table_schema = '{node['schema']}' AND table_name = '{node['alias']}'",
        )
        assert {r["column_name"] for r in actual} == set(node["columns"]), node["unique_id"]
        assert all(col["description"] for col in node["columns"].values()), node["unique_id"]


def test_outbound_unit_tests_pass(built, warehouse):
    """The crafted rows of the outbound models' unit tests: type-aware by-email matching, removals."""
    url, _ = warehouse
    invocation = build_dbt_resource(url).cli(
        ["test", "--select", "test_type:unit,models/reverse_etl"], raise_on_error=False
    )
    invocation.wait()
    results = {
        r["unique_id"].rsplit(".", 1)[-1]: r["status"]
        for r in invocation.get_artifact("run_results.json")["results"]
    }
    assert results["attributes_by_email_compare_values_by_type"] == "pass"
    assert results["customer_updates_emit_only_differences"] == "pass"


def test_every_model_seed_and_snapshot_has_a_description():
    manifest = json.loads(Path(DBT_PROJECT.manifest_path).read_text())
    nodes = [n for n in manifest["nodes"].values() if n["resource_type"] in ("model", "seed", "snapshot")]
    assert {n["resource_type"] for n in nodes} == {"model", "seed", "snapshot"}
    undocumented = [n["unique_id"] for n in nodes if not (n.get("description") or "").strip()]
    assert undocumented == []
