"""The code location: assembles assets, checks, jobs, schedules, sensors and resources when it loads.

`defs` is a lazy `@dg.definitions` function: importing this module reads nothing from the environment.
Dagster calls it when the code location loads; only then is WAREHOUSE_REFRESH_CRON read (it sets the
schedule's cron and the extract asset's freshness windows). Secrets are resolved later still, per run.
"""

import warnings
from collections.abc import Mapping

import dagster as dg

from cm_pipeline.extract.asset import chartmogul_customers
from cm_pipeline.extract.checks import EXTRACT_CHECKS
from cm_pipeline.extract.freshness import freshness_policy_for, refresh_cron_now
from cm_pipeline.extract.job import build_schedules, warehouse_refresh_job
from cm_pipeline.models.assets import cm_dbt_models
from cm_pipeline.push.assets import PUSH_ASSETS, PUSH_CHECKS
from cm_pipeline.push.jobs import PUSH_JOBS
from cm_pipeline.push.sensor import reverse_etl_sensor
from cm_pipeline.resources import build_resources


def build_defs(environ: Mapping[str, str] | None = None) -> dg.Definitions:
    """Every definition of the code location, for the refresh cron in `environ` (default: os.environ)."""
    schedules = build_schedules(environ)  # validates the cron, naming WAREHOUSE_REFRESH_CRON if invalid
    policy = freshness_policy_for(refresh_cron_now(environ))
    extract = chartmogul_customers.map_asset_specs(
        lambda spec: spec.replace_attributes(freshness_policy=policy)
    )
    definitions = dg.Definitions(
        assets=[extract, cm_dbt_models, *PUSH_ASSETS],
        asset_checks=[*EXTRACT_CHECKS, *PUSH_CHECKS],
        jobs=[warehouse_refresh_job, *PUSH_JOBS],
        schedules=schedules,
        sensors=[reverse_etl_sensor],
        resources=build_resources(),
    )
    return resolved(definitions)


def resolved(definitions: dg.Definitions) -> dg.Definitions:
    """`definitions` with its repository resolved now (Dagster caches it), without one Dagster warning.

    Dagster 1.13's own bug: binding resources to a sensor's jobs (SensorDefinition.with_attributes) passes
    the sensor's owners, an empty list, back to SensorDefinition.__init__, whose beta_param check then
    warns "Parameter `owners` ... is currently in beta" in every process that loads the location,
    although nothing here sets owners.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter `owners` of initializer `SensorDefinition")
        definitions.get_repository_def()
    return definitions


@dg.definitions
def defs() -> dg.Definitions:
    """The definitions Dagster loads (workspace.yaml, `dagster api grpc -m cm_pipeline.definitions`)."""
    return build_defs()
