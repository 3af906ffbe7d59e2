"""Reverse-ETL ops and jobs: load desired → diff → apply → summarise, one job per outbound relation.

The ops of one run exchange small summaries; the rows travel through cm_pipeline.push_plan keyed by
run_id, and every outcome is written to cm_pipeline.push_log as soon as it is known.
"""

import dagster as dg
from pydantic import Field

from cm_pipeline.push.outcomes import OP_BY_EMAIL, OP_CREATES, OP_UPDATES
from cm_pipeline.push.push_log import drop_plan, outcome_counts
from cm_pipeline.push.run import PUSHERS, load
from cm_pipeline.resources import CHARTMOGUL_API_RUN_TAGS, ChartMogulResource, WarehouseResource

JOB_NAMES = {
    OP_UPDATES: "push_customer_updates_job",
    OP_BY_EMAIL: "push_custom_attributes_job",
    OP_CREATES: "create_customers_job",
}
OP_SUFFIX = {OP_UPDATES: "updates", OP_BY_EMAIL: "custom_attributes", OP_CREATES: "new_customers"}
# On every push run: the deployment's QueuedRunCoordinator limits runs with these tags to one at a time,
# since all pushes (and the refresh) share the account's API limits (40 req/s, 20 connections).
PUSH_RUN_TAGS = {"cm_pipeline/push": "chartmogul", **CHARTMOGUL_API_RUN_TAGS}


class PushConfig(dg.Config):
    """Run config of a push, set on its load-desired op and carried to the ops after it."""

    relation: str | None = Field(default=None, description="schema.table to read; defaults to the dbt model.")
    dry_run: bool = Field(
        default=False, description="Log would-be payloads as dry_run; call nothing that writes."
    )
    max_workers: int = Field(
        default=10, description="Parallel calls (the client's limiter still caps rps and connections)."
    )


def load_op_name(op: str) -> str:
    """Name of the load-desired op of a push (where its run config goes)."""
    return f"load_desired_{OP_SUFFIX[op]}"


def build_push_job(op: str) -> dg.JobDefinition:
    """The four-op job for one outbound relation."""
    pusher = PUSHERS[op]
    suffix = OP_SUFFIX[op]
    relation_default = pusher.DEFAULT_RELATION

    @dg.op(name=f"load_desired_{suffix}")
    def load_desired(
        context: dg.OpExecutionContext, config: PushConfig, warehouse: WarehouseResource
    ) -> dict:
        """Snapshot the outbound relation for this run."""
        relation = config.relation or relation_default
        engine = warehouse.get_engine()
        try:
            rows = load(engine, context.run_id, op, relation)
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
        }

    @dg.op(name=f"diff_{suffix}")
    def diff(context: dg.OpExecutionContext, loaded: dict, warehouse: WarehouseResource) -> dict:
        """Compare desired rows with the warehouse: unchanged, rejected or to apply."""
        engine = warehouse.get_engine()
        try:
            summary = pusher.diff(engine, context.run_id, op=op).as_dict()
        finally:
            engine.dispose()
        context.add_output_metadata(
            {
                "to_apply": summary["pending"],
                "unchanged": summary["unchanged"],
                "rejected": summary["rejected"],
            }
        )
        return {**loaded, **{f"diff_{k}": v for k, v in summary.items()}}

    @dg.op(name=f"apply_{suffix}")
    def apply(
        context: dg.OpExecutionContext,
        planned: dict,
        warehouse: WarehouseResource,
        chartmogul: ChartMogulResource,
    ) -> dict:
        """Apply the rows the diff left, through one rate-limited client."""
        engine = warehouse.get_engine()
        try:
            with chartmogul.get_client() as client:
                summary = pusher.apply(
                    engine,
                    client,
                    context.run_id,
                    dry_run=planned["dry_run"],
                    max_workers=planned["max_workers"],
                    op=op,
                ).as_dict()
                stats = client.stats
        finally:
            engine.dispose()
        context.add_output_metadata(
            {
                "applied": summary["applied"],
                "unchanged": summary["unchanged"],
                "rejected": summary["rejected"],
                "failed": summary["failed"],
                "dry_run": summary["dry_run"],
                "calls": summary["calls"],
                "retries": stats.get("retries", 0),
                "rate_limited_429s": stats.get("rate_limited", 0),
            }
        )
        return {**planned, "calls": summary["calls"]}

    @dg.op(name=f"summarise_{suffix}")
    def summarise(context: dg.OpExecutionContext, applied: dict, warehouse: WarehouseResource) -> dict:
        """Report this run's outcomes from push_log."""
        engine = warehouse.get_engine()
        try:
            counts = outcome_counts(engine, context.run_id, op)
            drop_plan(engine, context.run_id, op)
        finally:
            engine.dispose()
        context.add_output_metadata(
            {
                **counts,
                "calls": applied["calls"],
                "relation": applied["relation"],
                "dagster/row_count": applied["rows"],
            }
        )
        context.log.info(f"{op}: {counts} with {applied['calls']} calls")
        if counts["failed"]:
            context.log.warning(f"{counts['failed']} row(s) failed; they are tried again on the next run")
        return {**counts, "calls": applied["calls"], "rows": applied["rows"]}

    @dg.job(
        name=JOB_NAMES[op],
        description=f"Push {relation_default} to ChartMogul: load desired, diff, apply, summarise.",
        run_tags=PUSH_RUN_TAGS,
    )
    def push_job():
        summarise(apply(diff(load_desired())))

    return push_job


push_customer_updates_job = build_push_job(OP_UPDATES)
push_custom_attributes_job = build_push_job(OP_BY_EMAIL)
create_customers_job = build_push_job(OP_CREATES)

PUSH_JOBS = [push_customer_updates_job, push_custom_attributes_job, create_customers_job]
