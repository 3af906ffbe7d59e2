"""The demo's Dagster instance: local (sqlite) storage under .cm_pipeline/dagster_home, with the deployed
instance's queue, pool and run-monitoring settings copied from docker/dagster.yaml (one source of truth).

Runs a previous demo left in flight (its processes were killed, not stopped) are marked canceled before
Dagster starts, so they hold no queue or pool slot.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from cm_pipeline.project import REPO_ROOT

# The production instance config; the demo takes its run, pool and monitoring settings from it.
DEPLOYED_DAGSTER_YAML = REPO_ROOT / "docker" / "dagster.yaml"
COPIED_BLOCKS = ("concurrency", "run_monitoring")


def demo_instance_config(deployed: Path = DEPLOYED_DAGSTER_YAML) -> dict:
    """The demo instance's dagster.yaml: local storage defaults plus the deployed `concurrency` limits and
    `run_monitoring` (which frees the pool slot of a run whose worker died)."""
    try:
        loaded = yaml.safe_load(deployed.read_text()) or {}
        copied = {block: loaded[block] for block in COPIED_BLOCKS}
    except (OSError, KeyError, TypeError) as exc:
        raise RuntimeError(
            f"{deployed}: the demo copies its `concurrency` and `run_monitoring` blocks (one refresh at a "
            f"time), which could not be read ({type(exc).__name__}: {exc})"
        ) from None
    return {**copied, "telemetry": {"enabled": False}}


def write_instance_config(dagster_home: Path, deployed: Path = DEPLOYED_DAGSTER_YAML) -> Path:
    """Write DAGSTER_HOME/dagster.yaml for the demo (replacing an earlier demo's) and return its path."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    header = (
        f"# Written by cm_pipeline/demo/instance.py on each start: {', '.join(COPIED_BLOCKS)} "
        f"copied from {deployed}.\n"
    )
    path.write_text(header + yaml.safe_dump(demo_instance_config(deployed), sort_keys=False))
    return path


def cancel_leftover_runs(dagster_home: Path) -> list[str]:
    """Mark canceled every run a previous demo left queued or in progress, freeing its slots; return ids.

    Only called while no Dagster process of the demo runs, so none of these runs can still be alive.
    """
    if not (dagster_home / "history").exists():
        return []
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    alive = [
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING,
    ]
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(filters=RunsFilter(statuses=alive))
        for run in runs:
            instance.report_run_canceled(run, message="canceled by the demo: its processes were gone")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        return [run.run_id for run in runs]
