"""The dbt project: its one `DbtProject`, its manifest, and the connection env its profiles.yml reads.

Prepare the manifest ahead of time (Makefile, Dockerfile, CI) with:

    python -m cm_pipeline.models.project prepare

Loading the code location also prepares it when it is missing or older than the project's files, so a
clean checkout works with no manual step; under `dagster dev` it is re-parsed on every load.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from dagster._utils import run_with_concurrent_update_guard
from dagster_dbt import DbtCliResource, DbtProject
from pydantic import Field

from cm_pipeline.project import DBT_PROJECT_DIR
from cm_pipeline.warehouse.connection import libpq_params, resolve_url

logger = logging.getLogger(__name__)

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR)

# The variables dbt_project/profiles.yml reads, by libpq_params() key.
PROFILE_ENV_VARS: Mapping[str, str] = {
    "host": "CM_DBT_HOST",
    "port": "CM_DBT_PORT",
    "user": "CM_DBT_USER",
    "password": "CM_DBT_PASSWORD",
    "dbname": "CM_DBT_DBNAME",
}

# Files whose change makes a manifest stale (everything dbt parses).
_PARSED_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".md"}
_PARSED_DIRS = ("models", "seeds", "snapshots", "macros", "tests", "analyses")


def dbt_executable() -> str:
    """The dbt next to this interpreter (works with an empty PATH), else `dbt` from PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def warehouse_profile_env(url: str) -> dict[str, str]:
    """The CM_DBT_* variables that point profiles.yml at the warehouse `url` (a socket dir is a valid host)."""
    params = libpq_params(url)
    return {var: params[key] for key, var in PROFILE_ENV_VARS.items()}


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore the previous values."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def newest_source_mtime(project: DbtProject) -> float:
    """Modification time of the newest file dbt parses in `project`."""
    root = Path(project.project_dir)
    times = [
        (root / name).stat().st_mtime
        for name in ("dbt_project.yml", "profiles.yml")
        if (root / name).exists()
    ]
    for folder in _PARSED_DIRS:
        base = root / folder
        if base.is_dir():
            times.extend(p.stat().st_mtime for p in base.rglob("*") if p.suffix in _PARSED_SUFFIXES)
    return max(times, default=0.0)


def manifest_is_stale(project: DbtProject) -> bool:
    """True when the manifest is missing or older than a file of the project."""
    manifest = Path(project.manifest_path)
    if not manifest.exists():
        return True
    return manifest.stat().st_mtime < newest_source_mtime(project)


def _parse(project: DbtProject) -> None:
    # DbtProject's own preparer finds `dbt` on PATH; parse with the one beside this interpreter.
    with environment({"DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}):
        DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
            ["parse", "--quiet"], target_path=project.target_path
        ).wait()


def prepare_manifest(project: DbtProject = DBT_PROJECT) -> Path:
    """Run `dbt parse` for `project` (no database needed) and return the manifest path.

    Processes loading the code location at once (webserver, daemon) parse once: the others wait on a
    lock file and reuse the manifest it wrote.
    """
    manifest = Path(project.manifest_path)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    run_with_concurrent_update_guard(manifest, _parse, project=project)
    return manifest


def ensure_manifest(project: DbtProject = DBT_PROJECT) -> Path:
    """Make the manifest loadable: re-parse under `dagster dev`, else only when missing or stale."""
    if project.preparer.using_dagster_dev() or manifest_is_stale(project):
        try:
            prepare_manifest(project)
        except Exception:
            if not Path(project.manifest_path).exists():
                raise
            logger.warning("dbt parse failed; using the existing manifest at %s", project.manifest_path)
    return Path(project.manifest_path)


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
    temporary = destination.with_name(f".partial_parse.{os.getpid()}.tmp")
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    except OSError:  # a read-only image: keep the prepared state
        temporary.unlink(missing_ok=True)
        return False
    return True


class WarehouseDbtCliResource(DbtCliResource):
    """dbt CLI pointed at the warehouse: each invocation gets the CM_DBT_* variables profiles.yml reads,
    computed at run time from `warehouse_url`, else WAREHOUSE_URL, else the embedded Postgres."""

    warehouse_url: str | None = Field(
        default=None,
        description="postgresql+psycopg2:// URL; when unset, WAREHOUSE_URL, else the embedded Postgres.",
    )

    keep_run_artifacts: int = Field(
        default=20, description="How many past dbt invocations' artifact folders to keep under target/."
    )

    def profile_env(self) -> dict[str, str]:
        """The CM_DBT_* variables for the resolved warehouse (password included: never log them)."""
        return warehouse_profile_env(resolve_url(self.warehouse_url))

    def cli(self, args, **kwargs):  # same signature as DbtCliResource.cli
        """Run dbt with the warehouse connection in its environment (the subprocess and dbt's adapter)."""
        prune_run_artifacts(Path(self.project_dir) / DBT_PROJECT.target_path, self.keep_run_artifacts)
        with environment(self.profile_env()):
            return super().cli(args, **kwargs)


def build_dbt_resource(warehouse_url: str | None = None) -> WarehouseDbtCliResource:
    """The `dbt` resource for Definitions; reads nothing from the environment until a run."""
    return WarehouseDbtCliResource(
        project_dir=DBT_PROJECT, dbt_executable=dbt_executable(), warehouse_url=warehouse_url
    )


def _main(argv: list[str]) -> int:
    command = argv[0] if argv else "prepare"
    if command == "prepare":
        print(prepare_manifest())
        return 0
    if command == "env":
        # For running dbt by hand: `eval "$(python -m cm_pipeline.models.project env)"` (password included).
        for name, value in warehouse_profile_env(resolve_url()).items():
            print(f"export {name}={_shell_quote(value)}")
        return 0
    print("usage: python -m cm_pipeline.models.project [prepare|env]", file=sys.stderr)
    return 2


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
