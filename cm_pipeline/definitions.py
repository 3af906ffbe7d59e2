"""The code location: assembles assets, checks, jobs, schedules, sensors and resources."""

import dagster as dg

from cm_pipeline.assets import ASSET_CHECKS, ASSETS
from cm_pipeline.jobs import JOBS
from cm_pipeline.resources import build_resources
from cm_pipeline.schedules import build_schedules
from cm_pipeline.sensors import SENSORS

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    jobs=JOBS,
    schedules=build_schedules(),  # reads WAREHOUSE_REFRESH_CRON now, as the code location loads
    sensors=SENSORS,
    resources=build_resources(),
)
