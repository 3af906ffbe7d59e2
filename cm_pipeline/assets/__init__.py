"""Assets and asset checks, gathered for `Definitions`."""

from cm_pipeline.assets.checks import EXTRACT_CHECKS
from cm_pipeline.assets.dbt import cm_dbt_models
from cm_pipeline.assets.extract import chartmogul_customers

ASSETS: list = [chartmogul_customers, cm_dbt_models]
ASSET_CHECKS: list = [*EXTRACT_CHECKS]
