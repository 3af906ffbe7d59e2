"""The code location loads, with nothing in the environment, and names everything users rely on."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

from cm_pipeline.definitions import defs

EXPECTED_JOBS = {"warehouse_refresh_job", "push_customer_updates_job"}
EXPECTED_SCHEDULES = {"warehouse_refresh_schedule"}
EXPECTED_SENSORS = {"reverse_etl_sensor"}


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


def test_loading_reads_no_environment():
    """Importing the definitions with an empty environment must work (secrets are resolved at run time)."""
    code = (
        "from cm_pipeline.definitions import defs; print(len(list(defs.get_repository_def().get_all_jobs())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) >= len(EXPECTED_JOBS)
