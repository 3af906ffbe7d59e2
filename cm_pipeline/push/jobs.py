"""Reverse-ETL ops and jobs: load → apply → summarise, one job per push kind.

`push_updates_job`, `push_by_email_job` and `push_creates_job`; their ops are `load_<kind>`,
`apply_<kind>` and `summarise_<kind>`. Run config goes on the load op, e.g.
`{"ops": {"load_updates": {"config": {"dry_run": true, "relation": "my_schema.my_updates"}}}}`.
The ops of one run exchange small summaries; the rows travel through cm_pipeline.push_plan keyed by
run_id and kind, and every outcome is written to cm_pipeline.push_log as soon as it is known.

The summarise step records the push's health on its asset (assets.py) and fails the run when the
rejected-plus-failed share of its rows is over `max_rejected_share` (health.py). The apply step fails the
run at once, with one message, when the API is unreachable or refuses the credentials.
"""

import dagster as dg
from pydantic import Field

from cm_pipeline.push.assets import health_events
from cm_pipeline.push.engine import PushKind
from cm_pipeline.push.failures import FatalPushError
from cm_pipeline.push.health import (
    DEFAULT_MAX_REJECTED_SHARE,
    THRESHOLD_FROM_ROWS,
    assess,
    failure_message,
    log_query,
)
from cm_pipeline.push.kinds import BY_EMAIL, CREATES, KINDS, UPDATES
from cm_pipeline.push.preview import markdown_table
from cm_pipeline.push.push_log import drop_plan, final_outcomes, outcome_counts
from cm_pipeline.push.run import apply, load
from cm_pipeline.resources import CHARTMOGUL_API_RUN_TAGS, ChartMogulResource, WarehouseResource

# On every push run: the deployment's QueuedRunCoordinator limits runs with these tags to one at a time,
# since all pushes (and the refresh) share the account's API limits (40 req/s, 20 connections).
PUSH_RUN_TAGS = {"cm_pipeline/push": "chartmogul", **CHARTMOGUL_API_RUN_TAGS}


class PushConfig(dg.Config):
    """Run config of a push, set on its load op and carried to the ops after it."""

    relation: str | None = Field(default=None, description="schema.table to read; defaults to the dbt model.")
    dry_run: bool = Field(
        default=False, description="Log would-be payloads as dry_run; call nothing that writes."
    )
    max_workers: int = Field(
        default=10, description="Parallel calls (the client's limiter still caps rps and connections)."
    )
    max_rejected_share: float = Field(
        default=DEFAULT_MAX_REJECTED_SHARE,
        ge=0,
        le=1,
        description=(
            f"Fail the run (after logging every row) when more than this share of its rows is rejected or "
            f"failed; applied from {THRESHOLD_FROM_ROWS} rows up."
        ),
    )


def load_op_name(kind: str) -> str:
    """Name of the load op of a push (where its run config goes)."""
    return f"load_{kind}"


def _load_op(kind: PushKind) -> dg.OpDefinition:
    @dg.op(name=load_op_name(kind.name))
    def load_rows(context: dg.OpExecutionContext, config: PushConfig, warehouse: WarehouseResource) -> dict:
        """Snapshot the outbound relation for this run."""
        relation = config.relation or kind.relation
        engine = warehouse.get_engine()
        try:
            rows = load(engine, context.run_id, kind.name, relation)
        finally:
            engine.dispose()
        context.add_output_metadata(
            {"relation": relation, "dagster/row_count": rows, "dry_run": config.dry_run}
        )
        return {
            "relation": relation,
            "rows": rows,
            "dry_run": config.dry_run,
            "max_workers": config.max_workers,
            "max_rejected_share": config.max_rejected_share,
        }

    return load_rows


def _apply_op(kind: PushKind) -> dg.OpDefinition:
    @dg.op(name=f"apply_{kind.name}")
    def apply_rows(
        context: dg.OpExecutionContext,
        loaded: dict,
        warehouse: WarehouseResource,
        chartmogul: ChartMogulResource,
    ) -> dict:
        """Decide every row against the warehouse, then apply the changes through one rate-limited client."""
        engine = warehouse.get_engine()
        try:
            with chartmogul.get_client() as client:
                try:
                    step = apply(
                        engine,
                        client,
                        context.run_id,
                        kind.name,
                        dry_run=loaded["dry_run"],
                        max_workers=loaded["max_workers"],
                    )
                except FatalPushError as err:
                    counts = outcome_counts(engine, context.run_id, kind.name)
                    raise dg.Failure(
                        description=str(err),
                        metadata={
                            **counts,
                            "query": dg.MetadataValue.text(log_query(context.run_id, kind.name)),
                        },
                        allow_retries=False,
                    ) from None
                stats = client.stats
        finally:
            engine.dispose()
        summary = step.as_dict()
        context.add_output_metadata(
            {**summary, "retries": stats.get("retries", 0), "rate_limited_429s": stats.get("rate_limited", 0)}
        )
        if step.resolved:
            context.log.info(
                f"push {kind.name}: writes left pending by earlier runs settled: {dict(step.resolved)}"
            )
        return {
            **loaded,
            "calls": summary["calls"],
            "seconds": step.seconds,
            "preview": markdown_table(step.previews) if loaded["dry_run"] else None,
        }

    return apply_rows


def _summarise_op(kind: PushKind) -> dg.OpDefinition:
    @dg.op(name=f"summarise_{kind.name}")
    def summarise(context: dg.OpExecutionContext, applied: dict, warehouse: WarehouseResource) -> dict:
        """Report this run's outcomes from push_log, record them on the push asset, fail over the threshold."""
        engine = warehouse.get_engine()
        try:
            counts = outcome_counts(engine, context.run_id, kind.name)
            health = assess(final_outcomes(engine, context.run_id, kind.name), applied["max_rejected_share"])
            drop_plan(engine, context.run_id, kind.name)
        finally:
            engine.dispose()
        for event in health_events(kind.name, context.run_id, counts, health, applied):
            context.log_event(event)
        calls = applied["calls"]
        metadata = {
            **counts,
            "calls": calls,
            "relation": applied["relation"],
            "dagster/row_count": applied["rows"],
        }
        if applied.get("preview"):
            metadata["planned_changes"] = dg.MetadataValue.md(applied["preview"])
        context.add_output_metadata(metadata)
        context.log.info(f"push {kind.name}: {counts} with {calls} calls")
        if health.over:
            raise dg.Failure(
                description=failure_message(kind.name, context.run_id, health), allow_retries=False
            )
        if health.bad:
            context.log.warning(
                f"push {kind.name}: {health.bad} row(s) rejected or failed (under max_rejected_share); "
                f"failed rows are tried again on the next run. See: {log_query(context.run_id, kind.name)}"
            )
        return {**counts, "calls": calls, "rows": applied["rows"]}

    return summarise


def build_push_job(kind: PushKind) -> dg.JobDefinition:
    """The three-op job of one push kind."""
    load_rows, apply_rows, summarise = _load_op(kind), _apply_op(kind), _summarise_op(kind)

    @dg.job(
        name=kind.job_name,
        description=f"Push {kind.relation} to ChartMogul: load, apply (decide, then call), summarise.",
        run_tags=PUSH_RUN_TAGS,
        # The three ops follow one another in the run's own process: a step process of the default
        # executor loads the code location again before its op starts (~9 s each on two cores), which
        # made a push start calling ~18 s after its run began, for two 50 ms steps. In one process a
        # killed run worker also takes the apply step with it, so no push goes on headless.
        executor_def=dg.in_process_executor,
    )
    def push_job():
        summarise(apply_rows(load_rows()))

    return push_job


push_updates_job = build_push_job(KINDS[UPDATES])
push_by_email_job = build_push_job(KINDS[BY_EMAIL])
push_creates_job = build_push_job(KINDS[CREATES])

PUSH_JOBS = [push_updates_job, push_by_email_job, push_creates_job]
