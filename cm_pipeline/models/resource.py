"""The `dbt` resource: dagster-dbt's `DbtCliResource`, connected to the warehouse per invocation."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

from dagster_dbt import DbtCliInvocation, DbtCliResource, DbtProject
from pydantic import Field

from cm_pipeline.models.profile import connected_profiles, read_profiles, write_private_profiles
from cm_pipeline.models.project import DBT_PROJECT, dbt_executable
from cm_pipeline.warehouse.connection import libpq_params, resolve_url


def remove_when_exits(process: subprocess.Popen, folder: Path) -> threading.Thread:
    """Delete `folder` once `process` exits, from a daemon thread; returns that thread."""

    def wait_then_remove() -> None:
        try:
            process.wait()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    thread = threading.Thread(target=wait_then_remove, name=f"remove {folder.name}", daemon=True)
    thread.start()
    return thread


def prune_run_artifacts(target_dir: Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest per-invocation folders dagster-dbt leaves under `target_dir`.

    Each dbt invocation writes its manifest, run results and log (a few MB) to a folder of its own;
    without pruning a scheduled refresh fills the disk. dbt's own `compiled`/`run` folders are kept.
    """
    if not target_dir.is_dir():
        return []
    folders = [p for p in target_dir.iterdir() if p.is_dir() and p.name not in ("compiled", "run")]
    folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    removed = []
    for folder in folders[max(keep, 0) :]:
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def keep_partial_parse(run_target: Path, project: DbtProject = DBT_PROJECT) -> bool:
    """Make a finished run's partial-parse state the project's, so the next run parses incrementally.

    dagster-dbt seeds each run with the project's partial_parse.msgpack, but the prepared one was parsed
    with profiles.yml's defaults, and dbt discards partial-parse state when the connection differs: every
    run would parse the whole project again. The run's state has the real connection. dbt validates the
    file before using it, so a stale or half-written copy costs only a full parse.
    """
    source = Path(run_target) / "partial_parse.msgpack"
    if not source.exists():
        return False
    destination = Path(project.project_dir) / project.target_path / "partial_parse.msgpack"
    temporary = destination.with_name(f".partial_parse.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    except OSError:  # a read-only image: keep the prepared state
        temporary.unlink(missing_ok=True)
        return False
    return True


class WarehouseDbtCliResource(DbtCliResource):
    """dbt CLI pointed at the warehouse: `warehouse_url`, else WAREHOUSE_URL, else the embedded Postgres,
    resolved at each invocation, which runs with a private profiles.yml for it (models/profile.py)."""

    warehouse_url: str | None = Field(
        default=None,
        description="postgresql+psycopg2:// URL; when unset, WAREHOUSE_URL, else the embedded Postgres.",
    )

    keep_run_artifacts: int = Field(
        default=20, description="How many past dbt invocations' artifact folders to keep under target/."
    )

    def connection(self) -> dict[str, str]:
        """Host, port, user, password and database of the resolved warehouse (never log them)."""
        return libpq_params(resolve_url(self.warehouse_url))

    def cli(self, args, **kwargs) -> DbtCliInvocation:  # same signature as DbtCliResource.cli
        """Run dbt with a private profiles.yml for the warehouse, deleted once the dbt process exits."""
        prune_run_artifacts(Path(self.project_dir) / DBT_PROJECT.target_path, self.keep_run_artifacts)
        profiles = connected_profiles(read_profiles(self.profiles_dir or self.project_dir), self.connection())
        profiles_dir = write_private_profiles(profiles)
        try:
            fields = {name: getattr(self, name) for name in DbtCliResource.model_fields}
            invocation = DbtCliResource(**{**fields, "profiles_dir": profiles_dir}).cli(args, **kwargs)
        except BaseException:
            shutil.rmtree(profiles_dir, ignore_errors=True)
            raise
        remove_when_exits(invocation.process, profiles_dir)
        return invocation


def build_dbt_resource(warehouse_url: str | None = None) -> WarehouseDbtCliResource:
    """The `dbt` resource for Definitions; reads nothing from the environment until a run."""
    return WarehouseDbtCliResource(
        project_dir=DBT_PROJECT, dbt_executable=dbt_executable(), warehouse_url=warehouse_url
    )
