"""Schedules for `Definitions`.

The refresh cron is hourly unless WAREHOUSE_REFRESH_CRON says otherwise. The environment is read by
`build_schedules()`, which definitions.py calls when the code location loads, never at import time.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from cm_pipeline.assets.freshness import DEFAULT_REFRESH_CRON, REFRESH_CRON_ENV, refresh_cron_now
from cm_pipeline.jobs import warehouse_refresh_job

# Schedules other than the warehouse refresh (whose cron is only known when the code location loads).
SCHEDULES: list = []


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
    refresh = warehouse_refresh_schedule(refresh_cron_now(environ), source=REFRESH_CRON_ENV)
    return [refresh, *SCHEDULES]
