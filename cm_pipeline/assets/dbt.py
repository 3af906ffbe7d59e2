"""The dbt project as Dagster assets: one multi-asset streaming `dbt build`, with dbt tests as asset checks."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from cm_pipeline.dbt_project import DBT_PROJECT, ensure_manifest

# The dbt source that the extraction asset loads, and the key of that asset.
EXTRACT_SOURCE = ("chartmogul", "customers")
EXTRACT_ASSET_KEY = dg.AssetKey("chartmogul_customers")

# Asset group of each top folder of the dbt project (by the file that defines the node).
GROUPS_BY_PATH = (
    ("models/staging/", "staging"),
    ("models/marts/", "marts"),
    ("models/reverse_etl/", "reverse_etl"),
    ("seeds/", "reverse_etl"),
    ("snapshots/", "snapshots"),
)


class CmDbtTranslator(DagsterDbtTranslator):
    """Maps the chartmogul.customers source onto the extraction asset and groups nodes by folder."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if (
            dbt_resource_props["resource_type"] == "source"
            and (dbt_resource_props["source_name"], dbt_resource_props["name"]) == EXTRACT_SOURCE
        ):
            return EXTRACT_ASSET_KEY
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        path = dbt_resource_props.get("original_file_path", "")
        for prefix, group in GROUPS_BY_PATH:
            if path.startswith(prefix):
                return group
        return super().get_group_name(dbt_resource_props)


TRANSLATOR = CmDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(
    manifest=ensure_manifest(DBT_PROJECT),
    project=DBT_PROJECT,
    dagster_dbt_translator=TRANSLATOR,
    name="cm_dbt_models",
)
def cm_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Run `dbt build`: seeds, staging views, marts, the customers snapshot, outbound models and their tests."""
    # No .fetch_row_counts(): it queries the relation names of the manifest prepared at build time, whose
    # database is profiles.yml's default, not necessarily the run's (WAREHOUSE_URL may name another one).
    yield from dbt.cli(["build"], context=context).stream()
