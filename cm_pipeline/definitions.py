"""The code location: assembles assets, checks, jobs, schedules, sensors and resources when it loads.

`defs` is a lazy `@dg.definitions` function: importing this module reads nothing from the environment.
Dagster calls it when the code location loads; only then is WAREHOUSE_REFRESH_CRON read (it sets the
schedule's cron and the extract asset's freshness windows). Secrets are resolved later still, per run.
"""

from collections.abc import Mapping

import dagster as dg

from cm_pipeline.assets import ASSET_CHECKS, ASSETS
from cm_pipeline.assets.extract import chartmogul_customers
from cm_pipeline.assets.freshness import freshness_policy_for, refresh_cron_now
from cm_pipeline.jobs import JOBS
from cm_pipeline.resources import build_resources
from cm_pipeline.schedules import build_schedules
from cm_pipeline.sensors import SENSORS


def build_defs(environ: Mapping[str, str] | None = None) -> dg.Definitions:
    """Every definition of the code location, for the refresh cron in `environ` (default: os.environ)."""
    schedules = build_schedules(environ)  # validates the cron, naming WAREHOUSE_REFRESH_CRON if invalid
    policy = freshness_policy_for(refresh_cron_now(environ))
    assets = [
        asset.map_asset_specs(lambda spec: spec.replace_attributes(freshness_policy=policy))
        if asset is chartmogul_customers
        else asset
        for asset in ASSETS
    ]
    return dg.Definitions(
        assets=assets,
        asset_checks=ASSET_CHECKS,
        jobs=JOBS,
        schedules=schedules,
        sensors=SENSORS,
        resources=build_resources(),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The definitions Dagster loads (workspace.yaml, `dagster api grpc -m cm_pipeline.definitions`)."""
    return build_defs()
