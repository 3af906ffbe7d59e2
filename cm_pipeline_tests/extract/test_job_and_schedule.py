"""The refresh job, its concurrency guards and the schedule's cron (default hourly, or from the environment)."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from cm_pipeline.extract.asset import WAREHOUSE_REFRESH_POOL, chartmogul_customers
from cm_pipeline.extract.job import (
    DEFAULT_REFRESH_CRON,
    WAREHOUSE_REFRESH_RUN_TAGS,
    WAREHOUSE_REFRESH_SELECTION,
    build_schedules,
    warehouse_refresh_schedule,
)
from cm_pipeline_tests.conftest import TEST_API_KEY


def test_job_selects_the_asset_with_its_checks_and_carries_the_run_guard_tag():
    from cm_pipeline.definitions import build_defs

    defs = build_defs()
    job = defs.resolve_job_def("warehouse_refresh_job")
    assert WAREHOUSE_REFRESH_RUN_TAGS.items() <= job.run_tags.items()
    graph = defs.get_repository_def().asset_graph
    assert dg.AssetKey("chartmogul_customers") in WAREHOUSE_REFRESH_SELECTION.resolve(graph)
    checks = {k.name for k in WAREHOUSE_REFRESH_SELECTION.resolve_checks(graph)}
    expected = {
        "customers_uuid_unique_and_not_null",
        "customers_no_unverified_disappearance",
    }
    assert expected <= checks
    asset = graph.get(dg.AssetKey("chartmogul_customers"))
    assert asset.freshness_policy is not None  # freshness is the policy's, evaluated by the daemon


def _refresh_job() -> dg.JobDefinition:
    """The refresh as the code location defines it (for `dg.reconstructable`)."""
    from cm_pipeline.definitions import build_defs

    return build_defs().resolve_job_def("warehouse_refresh_job")


def test_the_refresh_runs_its_steps_in_the_runs_own_process(sandbox, fresh_db, monkeypatch):
    monkeypatch.setenv("CHARTMOGUL_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("CHARTMOGUL_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("WAREHOUSE_URL", fresh_db)
    config = {"ops": {"chartmogul_customers": {"config": {"per_page": 100}}}}
    with dg.instance_for_test() as instance:
        result = dg.execute_job(
            dg.reconstructable(_refresh_job),
            instance,
            run_config=config,
            asset_selection=[chartmogul_customers.key],
        )
        assert result.success
        starts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
        # No step process of its own: a killed run worker takes the extract with it.
        assert starts and {e.pid for e in starts} == {os.getpid()}


def test_asset_is_in_the_refresh_pool_and_has_a_freshness_policy():
    spec = next(iter(chartmogul_customers.specs))
    assert spec.group_name == "chartmogul"
    assert chartmogul_customers.op.pool == WAREHOUSE_REFRESH_POOL
    assert spec.freshness_policy is not None
    assert chartmogul_customers.op.description


def test_schedule_is_hourly_by_default_and_takes_the_cron_from_the_environment():
    [default] = build_schedules({})
    assert (
        default.name == "warehouse_refresh_schedule"
        and default.cron_schedule == DEFAULT_REFRESH_CRON == "0 * * * *"
    )
    assert default.job_name == "warehouse_refresh_job"
    [custom] = build_schedules({"WAREHOUSE_REFRESH_CRON": "*/15 * * * *"})
    assert custom.cron_schedule == "*/15 * * * *"
    assert warehouse_refresh_schedule("30 2 * * *").cron_schedule == "30 2 * * *"
    with pytest.raises(ValueError, match="WAREHOUSE_REFRESH_CRON: 'hourly' is not a valid cron"):
        build_schedules({"WAREHOUSE_REFRESH_CRON": "hourly"})


def test_the_code_location_reads_the_cron_when_it_loads():
    code = (
        "from cm_pipeline.definitions import defs;"
        "print(defs().get_repository_def().get_schedule_def('warehouse_refresh_schedule').cron_schedule)"
    )
    env = {"PATH": "/usr/bin:/bin", "WAREHOUSE_REFRESH_CRON": "5 */2 * * *"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "5 */2 * * *"
