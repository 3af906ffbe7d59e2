"""One push end to end (snapshot, diff, apply, summary) without Dagster: for scripts and benchmarks."""

from __future__ import annotations

from types import ModuleType

from sqlalchemy.engine import Engine

from cm_pipeline.push import by_email, creates, updates
from cm_pipeline.push.outcomes import OP_BY_EMAIL, OP_CREATES, OP_UPDATES
from cm_pipeline.push.push_log import drop_plan, outcome_counts, snapshot_relation
from cm_pipeline.warehouse.schema import ensure_schema

PUSHERS: dict[str, ModuleType] = {OP_UPDATES: updates, OP_BY_EMAIL: by_email, OP_CREATES: creates}


def load(engine: Engine, run_id: str, op: str, relation: str | None = None) -> int:
    """Snapshot the op's relation into push_plan for this run; the number of rows."""
    pusher = PUSHERS[op]
    ensure_schema(engine)
    return snapshot_relation(engine, run_id, op, relation or pusher.DEFAULT_RELATION, pusher.REQUIRED_COLUMNS)


def push(
    engine: Engine,
    client,
    run_id: str,
    op: str,
    *,
    relation: str | None = None,
    dry_run: bool = False,
    max_workers: int = 10,
) -> dict:
    """Run one push of `op` and return {rows, calls, applied, unchanged, rejected, failed, dry_run}."""
    pusher = PUSHERS[op]
    rows = load(engine, run_id, op, relation)
    pusher.diff(engine, run_id, op=op)
    applied = pusher.apply(engine, client, run_id, dry_run=dry_run, max_workers=max_workers, op=op)
    drop_plan(engine, run_id, op)
    return {"rows": rows, "calls": applied.calls, **outcome_counts(engine, run_id, op)}
