"""How the dbt project is wired into Dagster: connection env, manifest preparation, asset graph."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster_dbt import DbtProject

from cm_pipeline.definitions import build_defs
from cm_pipeline.models.assets import with_row_counts
from cm_pipeline.models.project import (
    DBT_PROJECT,
    WarehouseDbtCliResource,
    build_dbt_resource,
    ensure_manifest,
    environment,
    keep_partial_parse,
    manifest_is_stale,
    prune_run_artifacts,
    warehouse_profile_env,
)

defs = build_defs()

OUTBOUND = (
    "chartmogul_customer_updates",
    "chartmogul_custom_attributes_by_email",
    "chartmogul_new_customers",
)


def test_profile_env_from_a_tcp_url():
    env = warehouse_profile_env("postgresql+psycopg2://etl:p%40ss@db.internal:6543/warehouse")
    assert env == {
        "CM_DBT_HOST": "db.internal",
        "CM_DBT_PORT": "6543",
        "CM_DBT_USER": "etl",
        "CM_DBT_PASSWORD": "p@ss",
        "CM_DBT_DBNAME": "warehouse",
    }


def test_profile_env_from_the_embedded_socket_url_has_an_empty_password():
    env = warehouse_profile_env("postgresql+psycopg2://postgres@/cm_pipeline?host=/tmp/pg-sock")
    assert env["CM_DBT_HOST"] == "/tmp/pg-sock"
    assert env["CM_DBT_PASSWORD"] == ""
    assert env["CM_DBT_DBNAME"] == "cm_pipeline"


def test_resource_resolves_the_url_at_run_time(monkeypatch):
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://u@h1:5432/from_env")
    assert build_dbt_resource().profile_env()["CM_DBT_DBNAME"] == "from_env"
    explicit = build_dbt_resource("postgresql+psycopg2://u@h2:5432/explicit")
    assert explicit.profile_env()["CM_DBT_HOST"] == "h2"


def test_environment_restores_previous_values(monkeypatch):
    monkeypatch.setenv("CM_DBT_HOST", "before")
    monkeypatch.delenv("CM_DBT_DBNAME", raising=False)
    with environment({"CM_DBT_HOST": "during", "CM_DBT_DBNAME": "x"}):
        assert (os.environ["CM_DBT_HOST"], os.environ["CM_DBT_DBNAME"]) == ("during", "x")
    assert os.environ["CM_DBT_HOST"] == "before"
    assert "CM_DBT_DBNAME" not in os.environ


def test_clean_checkout_gets_a_manifest_and_edits_make_it_stale(tmp_path):
    copy = tmp_path / "dbt_project"
    shutil.copytree(
        DBT_PROJECT.project_dir, copy, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    project = DbtProject(project_dir=copy)
    assert manifest_is_stale(project)
    manifest = ensure_manifest(project)
    assert manifest == Path(project.manifest_path) and manifest.exists()
    assert not manifest_is_stale(project)
    model = copy / "models" / "marts" / "dim_customers.sql"
    later = time.time() + 5
    os.utime(model, (later, later))
    assert manifest_is_stale(project)


def test_dbt_resource_is_the_warehouse_aware_one():
    resource = defs.resources["dbt"]
    assert isinstance(resource, WarehouseDbtCliResource)
    assert Path(resource.project_dir) == Path(DBT_PROJECT.project_dir).resolve()


@pytest.fixture(scope="module")
def graph():
    return defs.get_repository_def().asset_graph


def test_the_source_is_the_extraction_asset(graph):
    stg = graph.get(dg.AssetKey(["staging", "stg_chartmogul__customers"]))
    snapshot = graph.get(dg.AssetKey(["snapshots", "customers_snapshot"]))
    assert stg.parent_keys == {dg.AssetKey("chartmogul_customers")}
    assert snapshot.parent_keys == {dg.AssetKey("chartmogul_customers")}
    assert not any(key.path[0] == "chartmogul" for key in graph.get_all_asset_keys())


def test_outbound_models_keys_groups_and_checks(graph):
    check_keys = set(graph.asset_check_keys)
    for name in OUTBOUND:
        node = graph.get(dg.AssetKey(["reverse_etl", name]))
        assert node.group_name == "reverse_etl"
        assert node.description
        assert any(check.asset_key == node.key for check in check_keys), f"{name} has no dbt test as a check"
    assert graph.get(dg.AssetKey("dim_customers")).group_name == "marts"
    assert graph.get(dg.AssetKey(["staging", "stg_chartmogul__customers"])).group_name == "staging"
    assert graph.get(dg.AssetKey(["snapshots", "customers_snapshot"])).group_name == "snapshots"


def test_status_accepted_values_is_a_check(graph):
    names = {
        check.name for check in graph.asset_check_keys if check.asset_key == dg.AssetKey("dim_customers")
    }
    assert any(name.startswith("accepted_values_dim_customers_status") for name in names), names
    assert any(name.startswith("relationships_dim_customers_customer_uuid") for name in names), names


def test_prune_run_artifacts_keeps_the_newest_folders_and_dbt_files(tmp_path):
    for i in range(5):
        folder = tmp_path / f"cm_dbt_models-run{i}-abc"
        folder.mkdir()
        (folder / "run_results.json").write_text("{}")
        os.utime(folder, (1000 + i, 1000 + i))
    (tmp_path / "compiled").mkdir()
    (tmp_path / "manifest.json").write_text("{}")
    removed = prune_run_artifacts(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == [f"cm_dbt_models-run{i}-abc" for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cm_dbt_models-run3-abc",
        "cm_dbt_models-run4-abc",
        "compiled",
        "manifest.json",
    ]


def test_keep_partial_parse_replaces_the_project_state(tmp_path):
    copy = tmp_path / "dbt_project"
    shutil.copytree(
        DBT_PROJECT.project_dir, copy, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    project = DbtProject(project_dir=copy)
    (copy / "target").mkdir()
    (copy / "target" / "partial_parse.msgpack").write_bytes(b"prepared")
    run = copy / "target" / "cm_dbt_models-abc-123"
    run.mkdir()
    assert not keep_partial_parse(run, project)  # the run left no state: keep the prepared one
    (run / "partial_parse.msgpack").write_bytes(b"from the run")
    assert keep_partial_parse(run, project)
    assert (copy / "target" / "partial_parse.msgpack").read_bytes() == b"from the run"
    assert sorted(p.name for p in (copy / "target").iterdir()) == [
        "cm_dbt_models-abc-123",
        "partial_parse.msgpack",
    ]


def test_row_counts_use_the_run_manifest_and_never_fail_the_build(tmp_path, engine):
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS rowcount_test"))
        conn.execute(sa.text("CREATE TABLE rowcount_test.present AS SELECT generate_series(1, 7) AS n"))
    nodes = {
        "model.p.present": {
            "schema": "rowcount_test",
            "alias": "present",
            "config": {"materialized": "table"},
        },
        "model.p.missing": {
            "schema": "rowcount_test",
            "alias": "missing",
            "config": {"materialized": "table"},
        },
        "model.p.view": {"schema": "rowcount_test", "alias": "present", "config": {"materialized": "view"}},
    }
    (tmp_path / "manifest.json").write_text(json.dumps({"nodes": nodes}))
    events = [
        dg.Output(None, output_name=name, metadata={"unique_id": f"model.p.{name}"})
        for name in nodes_names(nodes)
    ]
    out = list(with_row_counts(events, tmp_path, engine))
    counts = {e.output_name: e.metadata.get("dagster/row_count") for e in out}
    assert counts == {"present": dg.MetadataValue.int(7), "missing": None, "view": None}


def nodes_names(nodes: dict) -> list[str]:
    return [unique_id.rsplit(".", 1)[1] for unique_id in nodes]
