"""The warehouse refresh: its job (the extract, then `dbt build`) and the schedule that launches it.

The cron is hourly unless WAREHOUSE_REFRESH_CRON says otherwise. The environment is read by
`build_schedules()`, which definitions.py calls when the code location loads, never at import time.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from cm_pipeline.extract.asset import chartmogul_customers
from cm_pipeline.extract.freshness import DEFAULT_REFRESH_CRON, REFRESH_CRON_ENV, refresh_cron_now
from cm_pipeline.resources import CHARTMOGUL_API_RUN_TAGS

# What a warehouse refresh materialises: the extract, then `dbt build` of every dbt node (seeds included,
# which are not downstream of the extract); checks on selected assets come along.
WAREHOUSE_REFRESH_SELECTION = dg.AssetSelection.assets(chartmogul_customers) | dg.AssetSelection.kind("dbt")

# Run-level guard: docker/dagster.yaml's QueuedRunCoordinator lets one run with this tag key run at a time.
WAREHOUSE_REFRESH_RUN_TAGS = {"cm_pipeline/refresh": "warehouse", **CHARTMOGUL_API_RUN_TAGS}

# The refresh runs its steps in the run's own process unless a run asks for `multiprocess: {}`: each step
# process of the multiprocess executor loads the code location again first (~9 s per step on two cores),
# and the extract and `dbt build` follow one another anyway (dbt runs in its own subprocess either way).
# Run config, not `executor_def`: a run can still choose step processes, which the extract handles
# (asset.run_is_over).
IN_PROCESS_RUN_CONFIG = {"execution": {"config": {"in_process": {}}}}

warehouse_refresh_job = dg.define_asset_job(
    name="warehouse_refresh_job",
    selection=WAREHOUSE_REFRESH_SELECTION,
    config=IN_PROCESS_RUN_CONFIG,
    description="Refresh the warehouse from ChartMogul: extract chartmogul_customers (then the dbt models).",
    tags=WAREHOUSE_REFRESH_RUN_TAGS,
)


def warehouse_refresh_schedule(
    cron: str = DEFAULT_REFRESH_CRON, *, source: str = "cron"
) -> dg.ScheduleDefinition:
    """The schedule that launches warehouse_refresh_job on `cron` (UTC), running by default."""
    try:
        return dg.ScheduleDefinition(
            name="warehouse_refresh_schedule",
            job=warehouse_refresh_job,
            cron_schedule=cron,
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"Refresh the warehouse from ChartMogul on '{cron}' (UTC); set {REFRESH_CRON_ENV} to change.",
        )
    except dg.DagsterInvalidDefinitionError:
        raise ValueError(
            f"{source}: {cron!r} is not a valid cron expression (five fields, e.g. '0 * * * *' for hourly)"
        ) from None


def build_schedules(environ: Mapping[str, str] | None = None) -> list[dg.ScheduleDefinition]:
    """Every schedule of the code location; reads WAREHOUSE_REFRESH_CRON (call when the location loads)."""
    return [warehouse_refresh_schedule(refresh_cron_now(environ), source=REFRESH_CRON_ENV)]
