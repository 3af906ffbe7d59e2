"""The two steps of a push of one kind (load, apply), and one push end to end without Dagster."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from cm_pipeline.push.engine import StepSummary, push_rows
from cm_pipeline.push.kinds import KINDS
from cm_pipeline.push.push_log import drop_plan, outcome_counts, plan_rows, snapshot_relation
from cm_pipeline.warehouse.schema import ensure_schema


def load(engine: Engine, run_id: str, kind: str, relation: str | None = None) -> int:
    """Snapshot the kind's relation into push_plan for this run; the number of rows."""
    push_kind = KINDS[kind]
    ensure_schema(engine)
    return snapshot_relation(engine, run_id, kind, relation or push_kind.relation, push_kind.required_columns)


def apply(engine: Engine, client, run_id: str, kind: str, *, dry_run: bool, max_workers: int) -> StepSummary:
    """Plan and apply this run's snapshot of `kind` (see engine.push_rows)."""
    rows = plan_rows(engine, run_id, kind)
    return push_rows(engine, client, run_id, KINDS[kind], rows, dry_run=dry_run, max_workers=max_workers)


def push(
    engine: Engine,
    client,
    run_id: str,
    kind: str,
    *,
    relation: str | None = None,
    dry_run: bool = False,
    max_workers: int = 10,
) -> dict:
    """Run one push of `kind` and return {rows, calls, applied, unchanged, rejected, failed, dry_run}."""
    rows = load(engine, run_id, kind, relation)
    applied = apply(engine, client, run_id, kind, dry_run=dry_run, max_workers=max_workers)
    drop_plan(engine, run_id, kind)
    return {"rows": rows, "calls": applied.calls, **outcome_counts(engine, run_id, kind)}
