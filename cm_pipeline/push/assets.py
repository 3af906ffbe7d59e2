"""Push health in the UI: one asset per push kind standing for the ChartMogul state it pushed, and its check.

`chartmogul_pushed_<kind>` sits downstream of its dbt outbound model (`reverse_etl/chartmogul_<kind>`)
in the lineage graph. The push job does not compute it: its summarise step records a materialization
of it per push, with the outcome counts, the calls and the duration as numeric metadata (plotted over
time), and the `rows_rejected_or_failed` check's result: passed when no row was rejected or failed, a
WARN when some were but under the run's max_rejected_share, an ERROR when over it (the run then fails).
A dry run records an observation instead (nothing was pushed) holding the first 20 planned changes,
field by field, as a Markdown table. The check can also be run on its own from the UI: it reads the
latest push of its kind from push_log.
"""

from __future__ import annotations

import dagster as dg

from cm_pipeline.push.engine import PushKind
from cm_pipeline.push.health import DEFAULT_MAX_REJECTED_SHARE, Health, assess, log_query, summary_line
from cm_pipeline.push.kinds import KINDS
from cm_pipeline.push.push_log import final_outcomes, latest_push_run
from cm_pipeline.resources import WarehouseResource

CHECK_NAME = "rows_rejected_or_failed"
COUNTED = ("applied", "unchanged", "rejected", "failed", "pending")


def push_asset_key(kind: str) -> dg.AssetKey:
    """The asset standing for what the push of `kind` left in ChartMogul."""
    return dg.AssetKey(f"chartmogul_pushed_{kind}")


def _spec(kind: PushKind) -> dg.AssetSpec:
    return dg.AssetSpec(
        push_asset_key(kind.name),
        deps=[dg.AssetKey(kind.relation.split("."))],
        group_name="reverse_etl",
        description=(
            f"ChartMogul customers as {kind.job_name} last left them, pushed from {kind.relation}: each push "
            "records its outcome counts, calls and duration here (a dry run, its planned changes)."
        ),
        metadata={"push_log": dg.MetadataValue.text(f"cm_pipeline.push_log WHERE kind = '{kind.name}'")},
    )


def check_fields(health: Health, run_id: str | None, kind: str) -> dict:
    """passed, severity, description and metadata of the check for one run's health."""
    if run_id is None:
        return {"passed": True, "description": f"no push of {kind} yet"}
    metadata = {
        "rejected": health.rejected,
        "failed": health.failed,
        "rows": health.rows,
        "share": round(health.share, 4),
        "top_reasons": dg.MetadataValue.json([{"reason": r, "rows": n} for r, n in health.reasons]),
        "query": dg.MetadataValue.text(log_query(run_id, kind)),
        "run_id": dg.MetadataValue.text(run_id),
    }
    return {
        "passed": health.bad == 0,
        "severity": dg.AssetCheckSeverity.ERROR if health.over else dg.AssetCheckSeverity.WARN,
        "description": summary_line(health)
        + (" — over max_rejected_share: the run failed" if health.over else ""),
        "metadata": metadata,
    }


def _check(kind: PushKind) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=push_asset_key(kind.name),
        name=CHECK_NAME,
        description=f"No row of the latest {kind.name} push was rejected or failed (WARN under the threshold).",
        blocking=False,
    )
    def rows_rejected_or_failed(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        """Read the latest push of this kind from push_log and judge its rejected and failed rows."""
        engine = warehouse.get_engine()
        try:
            run_id = latest_push_run(engine, kind.name)
            final = final_outcomes(engine, run_id, kind.name) if run_id else []
        finally:
            engine.dispose()
        return dg.AssetCheckResult(
            **check_fields(assess(final, DEFAULT_MAX_REJECTED_SHARE), run_id, kind.name)
        )

    return rows_rejected_or_failed


def health_events(kind: str, run_id: str, counts: dict, health: Health, info: dict) -> list:
    """What one push records on its asset: a materialization (with the check's result) or, for a dry
    run, an observation with the planned changes. Numeric metadata only for figures worth a plot."""
    key = push_asset_key(kind)
    metadata: dict = {k: int(counts.get(k, 0)) for k in COUNTED}
    metadata.update(calls=int(info["calls"]), duration_s=round(float(info["seconds"]), 2))
    metadata["relation"] = dg.MetadataValue.text(info["relation"])
    if info["dry_run"]:
        metadata["planned"] = int(counts.get("dry_run", 0))
        metadata["planned_changes"] = dg.MetadataValue.md(info.get("preview") or "No change planned.")
        return [dg.AssetObservation(key, metadata=metadata)]
    evaluation = dg.AssetCheckEvaluation(
        asset_key=key, check_name=CHECK_NAME, **check_fields(health, run_id, kind)
    )
    return [dg.AssetMaterialization(key, metadata=metadata), evaluation]


PUSH_ASSETS = [_spec(k) for k in KINDS.values()]
PUSH_CHECKS = [_check(k) for k in KINDS.values()]
