"""reverse_etl_sensor: launches a push when an outbound relation changes or the warehouse is refreshed.

Its cursor holds a fingerprint of each outbound relation's contents (md5 over the md5 of every row,
computed in SQL) and the id of the last successful warehouse_refresh_job run it has seen. A push
job is requested when its relation's fingerprint changed, or when a new refresh succeeded (dbt has
rebuilt the outbound models and the warehouse state they are compared with), and the relation is
not empty. Missing relations are skipped with a message.

While a refresh is queued or running, the sensor waits and keeps its cursor: `dbt build` rewrites the
outbound relations before the run ends, so a tick in between would launch a push for the changed
relation and the refresh's success another one, which finds nothing left to do. If the refresh fails,
the next tick still sees the changed relations.
"""

import json

import dagster as dg
import sqlalchemy as sa

from cm_pipeline.push.jobs import PUSH_JOBS
from cm_pipeline.push.kinds import KINDS
from cm_pipeline.push.push_log import quote_relation, relation_columns
from cm_pipeline.resources import WarehouseResource

REFRESH_JOB = "warehouse_refresh_job"
_UNDER_WAY = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def relation_fingerprint(conn, relation: str) -> tuple[str, int] | None:
    """(md5 of the relation's rows, row count), independent of row order; None when it does not exist."""
    if relation_columns(conn, relation) is None:
        return None
    row = conn.execute(
        sa.text(
            "SELECT md5(coalesce(string_agg(h, ',' ORDER BY h), '')), count(*) "
            f"FROM (SELECT md5(t::text) AS h FROM {quote_relation(relation)} AS t) rows"
        )
    ).one()
    return row[0], int(row[1])


def refresh_run_id(instance: dg.DagsterInstance, statuses: list[dg.DagsterRunStatus]) -> str | None:
    """Run id of the latest warehouse_refresh_job run in one of `statuses`, if any."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=REFRESH_JOB, statuses=statuses), limit=1
    )
    return records[0].dagster_run.run_id if records else None


@dg.sensor(
    name="reverse_etl_sensor",
    jobs=PUSH_JOBS,
    minimum_interval_seconds=30,
    description="Push to ChartMogul when an outbound relation changes or warehouse_refresh_job succeeds.",
)
def reverse_etl_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    """Fingerprint the outbound relations and request a push for each one that changed."""
    if (running := refresh_run_id(context.instance, _UNDER_WAY)) is not None:
        return dg.SensorResult(
            skip_reason=f"warehouse refresh {running} is under way: the outbound relations are checked after it",
            cursor=context.cursor,
        )
    cursor = json.loads(context.cursor) if context.cursor else {}
    seen = cursor.get("fingerprints", {})
    launches = int(cursor.get("launches", 0))
    refresh = refresh_run_id(context.instance, [dg.DagsterRunStatus.SUCCESS])
    refreshed = refresh is not None and refresh != cursor.get("refresh_run")

    fingerprints: dict[str, str] = {}
    missing: list[str] = []
    requests: list[dg.RunRequest] = []
    engine = warehouse.get_engine()
    try:
        with engine.connect() as conn:
            for kind in KINDS.values():
                relation, job_name = kind.relation, kind.job_name
                found = relation_fingerprint(conn, relation)
                if found is None:
                    missing.append(relation)
                    continue
                fp, rows = found
                fingerprints[relation] = fp
                if rows and (refreshed or seen.get(relation) != fp):
                    launches += 1
                    why = (
                        "refresh " + refresh if refreshed and seen.get(relation) == fp else "relation changed"
                    )
                    requests.append(
                        dg.RunRequest(
                            job_name=job_name,
                            run_key=f"{job_name}:{fp}:{launches}",
                            tags={"cm_pipeline/relation_fingerprint": fp, "cm_pipeline/trigger": why},
                        )
                    )
    finally:
        engine.dispose()

    new_cursor = json.dumps(
        {"fingerprints": fingerprints, "refresh_run": refresh, "launches": launches}, sort_keys=True
    )
    if missing:
        context.log.info(f"outbound relation(s) not built yet, skipped: {', '.join(missing)}")
    if not requests:
        reason = (
            f"no outbound relation exists yet ({', '.join(missing)})"
            if not fingerprints
            else "outbound relations unchanged (or empty) since the last push"
        )
        return dg.SensorResult(skip_reason=reason, cursor=new_cursor)
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)
