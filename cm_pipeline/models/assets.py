"""The dbt project as Dagster assets: one multi-asset streaming `dbt build`, with dbt tests as asset checks."""

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets

from cm_pipeline.models.project import DBT_PROJECT, prepared_manifest
from cm_pipeline.models.resource import WarehouseDbtCliResource, keep_partial_parse
from cm_pipeline.warehouse.connection import make_engine, resolve_url

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


# Relations cheap to count (views would re-run their query).
COUNTED_MATERIALIZATIONS = {"table", "incremental", "seed", "snapshot"}


def _run_manifest(target_path: Path) -> dict | None:
    path = target_path / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def with_row_counts(events: Iterable, target_path: Path, engine: sa.Engine) -> Iterator:
    """Add `dagster/row_count` to each table, seed and snapshot materialisation of a dbt run.

    Relation names come from the run's own manifest (written by this `dbt build`), not the one prepared
    at image build time, whose database and schema are profiles.yml's defaults.
    """
    manifest = None
    quote = engine.dialect.identifier_preparer.quote
    for event in events:
        if isinstance(event, (dg.Output, dg.AssetMaterialization)) and "unique_id" in event.metadata:
            manifest = manifest or _run_manifest(target_path)
            node = (manifest or {}).get("nodes", {}).get(event.metadata["unique_id"].value)
            if node and node["config"].get("materialized") in COUNTED_MATERIALIZATIONS:
                relation = f"{quote(node['schema'])}.{quote(node['alias'])}"
                try:
                    with engine.connect() as conn:
                        count = conn.execute(sa.text(f"SELECT count(*) FROM {relation}")).scalar_one()
                except sa.exc.SQLAlchemyError as exc:  # a count is a nicety: never fail the build over it
                    dg.get_dagster_logger().warning(
                        f"could not count rows of {relation}: {type(exc).__name__}"
                    )
                else:
                    event = event.with_metadata({**event.metadata, "dagster/row_count": count})
        yield event


@dbt_assets(
    manifest=prepared_manifest(DBT_PROJECT),
    project=DBT_PROJECT,
    dagster_dbt_translator=TRANSLATOR,
    name="cm_dbt_models",
)
def cm_dbt_models(context: dg.AssetExecutionContext, dbt: WarehouseDbtCliResource):
    """Run `dbt build`: seeds, staging views, marts, the customers snapshot, outbound models and their tests."""
    invocation = dbt.cli(["build"], context=context)
    engine = make_engine(resolve_url(dbt.warehouse_url))
    try:
        yield from with_row_counts(invocation.stream(), invocation.target_path, engine)
    finally:
        engine.dispose()
    keep_partial_parse(invocation.target_path)
