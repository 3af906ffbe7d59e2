"""The code location loads, with nothing in the environment, and names everything users rely on."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import pytest

from cm_pipeline.definitions import build_defs
from cm_pipeline.definitions import defs as lazy_defs

EXPECTED_JOBS = {
    "warehouse_refresh_job",
    "push_updates_job",
    "push_by_email_job",
    "push_creates_job",
}
EXPECTED_SCHEDULES = {"warehouse_refresh_schedule"}
EXPECTED_SENSORS = {"reverse_etl_sensor"}


defs = lazy_defs()  # what Dagster loads: the @dg.definitions function, called


def test_defs_validate():
    dg.Definitions.validate_loadable(defs)


def test_jobs_schedules_sensors_are_named():
    repo = defs.get_repository_def()
    assert EXPECTED_JOBS <= {job.name for job in repo.get_all_jobs()}
    assert EXPECTED_SCHEDULES <= {s.name for s in repo.schedule_defs}
    assert EXPECTED_SENSORS <= {s.name for s in repo.sensor_defs}


def test_extract_asset_and_its_dbt_dependants():
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert "chartmogul_customers" in keys
    assert graph.get(dg.AssetKey("chartmogul_customers")).group_name == "chartmogul"
    children = graph.get(dg.AssetKey("chartmogul_customers")).child_keys
    assert children, "dbt models must depend on chartmogul_customers"
    for key in graph.get_all_asset_keys():
        assert graph.get(key).description, f"asset {key.to_user_string()} has no description"


def test_every_op_has_a_docstring():
    for job in defs.get_repository_def().get_all_jobs():
        for node in job.graph.iterate_op_defs():
            assert node.description, f"op {node.name} of {job.name} has no description"


def test_loading_needs_no_environment():
    """Loading the code location with an empty environment works (secrets are resolved at run time)."""
    code = "from cm_pipeline.definitions import defs; print(len(list(defs().get_repository_def().get_all_jobs())))"
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) >= len(EXPECTED_JOBS)


def test_importing_reads_no_environment():
    """An invalid cron breaks loading (naming the variable), but not the import: nothing is read then."""
    code = (
        "import cm_pipeline.definitions as d\n"
        "print('imported')\n"
        "try:\n"
        "    d.defs()\n"
        "except ValueError as exc:\n"
        "    print('load failed:', exc)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "WAREHOUSE_REFRESH_CRON": "every hour"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    imported, failed = out.stdout.strip().splitlines()[-2:]
    assert imported == "imported"
    assert failed.startswith("load failed: WAREHOUSE_REFRESH_CRON: 'every hour' is not a valid cron")


def test_the_cron_sets_the_schedule_and_the_extract_assets_freshness():
    daily = build_defs({"WAREHOUSE_REFRESH_CRON": "0 3 * * *"}).get_repository_def()
    assert daily.get_schedule_def("warehouse_refresh_schedule").cron_schedule == "0 3 * * *"
    policy = daily.asset_graph.get(dg.AssetKey("chartmogul_customers")).freshness_policy
    assert policy.fail_window.to_timedelta().total_seconds() == pytest.approx(3 * 86400)
    hourly = build_defs({}).get_repository_def().asset_graph.get(dg.AssetKey("chartmogul_customers"))
    assert hourly.freshness_policy.fail_window.to_timedelta().total_seconds() == pytest.approx(3 * 3600)
