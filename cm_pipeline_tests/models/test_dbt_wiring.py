"""How the dbt project is wired into Dagster: connection profile, manifest preparation, asset graph."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dbt.config.renderer import ProfileRenderer
from sqlalchemy.engine import make_url

from cm_pipeline.definitions import build_defs
from cm_pipeline.models.assets import with_row_counts
from cm_pipeline.models.profile import (
    connected_profiles,
    read_profiles,
    warehouse_profile_env,
    write_private_profiles,
)
from cm_pipeline.models.project import DBT_PROJECT, dbt_project, prepared_manifest
from cm_pipeline.models.resource import (
    WarehouseDbtCliResource,
    build_dbt_resource,
    keep_partial_parse,
    prune_run_artifacts,
    remove_when_exits,
)

defs = build_defs()

OUTBOUND = (
    "chartmogul_updates",
    "chartmogul_by_email",
    "chartmogul_creates",
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
    assert build_dbt_resource().connection()["dbname"] == "from_env"
    explicit = build_dbt_resource("postgresql+psycopg2://u@h2:5432/explicit")
    assert explicit.connection()["host"] == "h2"


# dbt renders every string of a profile as Jinja: these must still reach Postgres as written.
AWKWARD_VALUES = ("p@ss", "1234", "a{{b}}c", "{# x", "x %}", "q'\"\\", "é😀{%x", "")


@pytest.mark.parametrize("value", AWKWARD_VALUES)
def test_connected_profile_renders_back_to_the_warehouse(value):
    profiles = read_profiles(DBT_PROJECT.profiles_dir)
    params = {"host": "/tmp/pg-sock", "port": "6543", "user": value, "password": value, "dbname": value}
    connected = connected_profiles(profiles, params)
    output = connected["cm_pipeline"]["outputs"]["warehouse"]
    renderer = ProfileRenderer({})
    rendered = {key: renderer.render_value(output[key], (key,)) for key in params}
    assert rendered == {**params, "port": 6543}
    # The rest of profiles.yml is kept as written (CM_DBT_SCHEMA, CM_DBT_THREADS), and not modified.
    written = profiles["cm_pipeline"]["outputs"]["warehouse"]
    assert {k: v for k, v in output.items() if k not in params} == {
        k: v for k, v in written.items() if k not in params
    }
    assert "CM_DBT_SCHEMA" in output["schema"] and "CM_DBT_PASSWORD" in written["password"]


def test_private_profiles_are_readable_by_their_owner_only():
    profiles = {"p": {"target": "t", "outputs": {"t": {"password": '{{ "s" }}', "port": 1}}}}
    folder = write_private_profiles(profiles)
    try:
        assert folder.parent == Path(tempfile.gettempdir())
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "profiles.yml").stat().st_mode) == 0o600
        assert read_profiles(folder) == profiles
    finally:
        shutil.rmtree(folder)


def test_the_profile_folder_goes_when_the_process_exits(tmp_path):
    folder = tmp_path / "profiles"
    folder.mkdir()
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    thread = remove_when_exits(process, folder)
    thread.join(0.2)
    assert thread.is_alive() and folder.exists()  # the process waits on its stdin
    process.stdin.close()
    thread.join(60)
    assert not thread.is_alive() and not folder.exists()


def _wait_until_gone(path: Path, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not path.exists()


def test_two_invocations_connect_to_their_own_warehouse_and_leave_no_profile(warehouse_url, fresh_db):
    """Two dbt processes at once, each on its own database; os.environ is never touched."""
    environ = dict(os.environ)
    urls = (warehouse_url, fresh_db)
    invocations = [
        build_dbt_resource(url).cli(["debug", "--connection"], raise_on_error=False) for url in urls
    ]
    logs = [[event.raw_event["info"]["msg"] for event in inv.stream_raw_events()] for inv in invocations]
    assert dict(os.environ) == environ
    folders = set()
    for url, invocation, lines in zip(urls, invocations, logs, strict=True):
        assert invocation.is_successful(), lines
        assert f"  database: {make_url(url).database}" in lines
        (used,) = [line.rsplit(" ", 1)[1] for line in lines if line.startswith("Using profiles dir at ")]
        folders.add(Path(used))
    assert len(folders) == 2 and DBT_PROJECT.profiles_dir not in folders
    assert all(_wait_until_gone(folder) for folder in folders)


@pytest.mark.slow
def test_clean_checkout_and_edited_models_give_a_current_manifest(tmp_path, monkeypatch):
    """A clean checkout loads; under `dagster dev` an edited model shows; deployed, the prepared one serves."""
    copy = tmp_path / "dbt_project"
    shutil.copytree(
        DBT_PROJECT.project_dir, copy, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    project = dbt_project(copy)
    monkeypatch.delenv("DAGSTER_IS_DEV_CLI", raising=False)
    project.prepare_if_dev()
    assert not project.manifest_path.exists()
    assert prepared_manifest(project) == project.manifest_path and project.manifest_path.exists()

    (copy / "models" / "marts" / "edited_model.sql").write_text("select 1 as n\n")
    prepared_manifest(project)  # not under dagster dev: the prepared manifest is used as it is
    assert "model.cm_pipeline.edited_model" not in json.loads(project.manifest_path.read_text())["nodes"]
    monkeypatch.setenv("DAGSTER_IS_DEV_CLI", "1")  # what `dagster dev` sets for the processes it starts
    project.prepare_if_dev()
    assert "model.cm_pipeline.edited_model" in json.loads(project.manifest_path.read_text())["nodes"]


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
    project = dbt_project(copy)
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
