"""Jobs for `Definitions`."""

import dagster as dg

from cm_pipeline.assets.dbt import cm_dbt_models
from cm_pipeline.assets.extract import chartmogul_customers
from cm_pipeline.ops.push import PUSH_JOBS
from cm_pipeline.resources import CHARTMOGUL_API_RUN_TAGS

# What a warehouse refresh materialises: the extract, then `dbt build` of every dbt node (seeds included,
# which are not downstream of the extract); checks on selected assets come along.
WAREHOUSE_REFRESH_SELECTION = dg.AssetSelection.assets(chartmogul_customers) | dg.AssetSelection.assets(
    cm_dbt_models
)

# Run-level guard: docker/dagster.yaml's QueuedRunCoordinator lets one run with this tag key run at a time.
WAREHOUSE_REFRESH_RUN_TAGS = {"cm_pipeline/refresh": "warehouse", **CHARTMOGUL_API_RUN_TAGS}

warehouse_refresh_job = dg.define_asset_job(
    name="warehouse_refresh_job",
    selection=WAREHOUSE_REFRESH_SELECTION,
    description="Refresh the warehouse from ChartMogul: extract chartmogul_customers (then the dbt models).",
    tags=WAREHOUSE_REFRESH_RUN_TAGS,
)

JOBS: list = [warehouse_refresh_job, *PUSH_JOBS]
