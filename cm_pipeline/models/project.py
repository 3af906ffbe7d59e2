"""The dbt project: its one `DbtProject`, prepared the way dagster-dbt prepares it.

Under `dagster dev` (and `dg dev`) `prepare_if_dev()` runs `dbt parse` on every load, so an edited model
shows at once. Elsewhere the manifest is prepared ahead of time (Makefile, Dockerfile, CI) with

    dagster-dbt project prepare-and-package --file cm_pipeline/models/project.py

`prepared_manifest()` also prepares a clean checkout that has no manifest yet, so it loads with no step.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

from dagster._utils import run_with_concurrent_update_guard
from dagster_dbt import DbtCliResource, DbtProject
from dagster_dbt.dbt_project import DagsterDbtProjectPreparer
from dagster_shared.record import replace

from cm_pipeline.project import DBT_PROJECT_DIR


def dbt_executable() -> str:
    """The dbt next to this interpreter (works with an empty PATH), else `dbt` from PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


class VenvDbtProjectPreparer(DagsterDbtProjectPreparer):
    """dagster-dbt's preparer, running the dbt beside this interpreter: its own looks `dbt` up on PATH,
    which lacks the virtualenv's bin/ when `.venv/bin/dagster dev` runs without activating it."""

    def prepare(self, project: DbtProject) -> None:
        # Processes loading the code location at once (webserver, daemon) parse once: the others wait
        # on the lock file and reuse the manifest it wrote (as dagster-dbt's own `prepare` does).
        run_with_concurrent_update_guard(project.manifest_path, self._parse, project=project)

    def _parse(self, project: DbtProject) -> None:
        """`dbt parse` into a scratch target folder, then the manifest (and the partial-parse state) moved
        into place whole: dbt writes its files in place, and a process loading the definitions meanwhile
        (one that found the manifest there, so it does not wait on the lock) would read a cut file."""
        target = Path(project.project_dir) / project.target_path
        scratch = target / f".parse-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            scratch.mkdir(parents=True)
            if (target / "partial_parse.msgpack").exists():  # parse incrementally, as in place
                shutil.copyfile(target / "partial_parse.msgpack", scratch / "partial_parse.msgpack")
            resource = DbtCliResource(project_dir=project, dbt_executable=dbt_executable())
            resource.cli(["parse", "--quiet"], target_path=scratch).wait()
            for name in ("partial_parse.msgpack", "manifest.json"):  # the manifest last: it marks "done"
                if (scratch / name).exists():
                    os.replace(scratch / name, target / name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def dbt_project(project_dir: Path) -> DbtProject:
    """A `DbtProject` for `project_dir` whose preparation runs the dbt beside this interpreter."""
    # DbtProject takes no preparer argument: set the field on the record it built.
    return replace(DbtProject(project_dir=project_dir), preparer=VenvDbtProjectPreparer())


DBT_PROJECT = dbt_project(DBT_PROJECT_DIR)
DBT_PROJECT.prepare_if_dev()


def prepared_manifest(project: DbtProject = DBT_PROJECT) -> Path:
    """The manifest to build the assets from, prepared first if a clean checkout has none yet."""
    if not project.manifest_path.exists():
        project.preparer.prepare(project)
    return project.manifest_path
