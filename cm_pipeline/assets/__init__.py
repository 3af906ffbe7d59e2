"""Assets and asset checks, gathered for `Definitions`."""

from cm_pipeline.assets.dbt import cm_dbt_models

ASSETS: list = [cm_dbt_models]
ASSET_CHECKS: list = []
