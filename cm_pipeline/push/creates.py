"""Push rows of reverse_etl.chartmogul_creates: idempotent creates.

An existing (data_source_uuid, external_id) — in the warehouse, or found by the client after a 422
duplicate (also when a timed-out create was in fact applied and retried) — is recorded 'unchanged'
and never duplicated.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import ChartMogulError
from cm_pipeline.push.outcomes import (
    OP_CREATES,
    LogSink,
    StepSummary,
    classify,
    parse_each,
    push_lock,
    run_pool,
)
from cm_pipeline.push.push_log import (
    LogEntry,
    api_rejections,
    mark_plan,
    plan_rows,
    record,
)
from cm_pipeline.push.rows import (
    NewCustomer,
    new_customer_fingerprint,
    parse_new_customer_row,
)
from cm_pipeline.warehouse.customers import (
    existing_external_ids,
    write_entries,
)

REQUIRED_COLUMNS = ("data_source_uuid", "external_id")
DEFAULT_RELATION = "reverse_etl.chartmogul_creates"


def _parse(rows: list[tuple[int, dict]], op: str) -> tuple[list[tuple[int, NewCustomer]], list[LogEntry]]:
    """(rows to create, log entries): rejected rows, conflicting duplicates, and extra identical copies."""
    valid, rejected = parse_each(rows, op, parse_new_customer_row, "external_id", new_customer_fingerprint)
    per_id = Counter((n.data_source_uuid, n.external_id) for _, n in valid)
    kept: list[tuple[int, NewCustomer]] = []
    seen: dict[tuple[str, str], str] = {}
    for seq, new in valid:
        ident = (new.data_source_uuid, new.external_id)
        if (
            per_id[ident] > 1
            and len({n.fingerprint for _, n in valid if (n.data_source_uuid, n.external_id) == ident}) > 1
        ):
            rejected.append(
                LogEntry(
                    op,
                    new.external_id,
                    "rejected",
                    new.fingerprint,
                    payload=new.body,
                    error=(
                        f"external_id {new.external_id!r} in data source {new.data_source_uuid!r} "
                        f"appears in {per_id[ident]} rows with different values; keep one"
                    ),
                )
            )
        elif ident not in seen:  # identical duplicates collapse to one create
            seen[ident] = new.fingerprint
            kept.append((seq, new))
        else:  # ... and each extra copy is one logged skip
            rejected.append(
                LogEntry(
                    op,
                    new.external_id,
                    "unchanged",
                    new.fingerprint,
                    payload=new.body,
                    error=(
                        f"skipped: duplicate of another row in this run (same external_id {new.external_id!r} "
                        f"in data source {new.data_source_uuid!r}, same values); created at most once"
                    ),
                )
            )
    return kept, rejected


def diff(engine: Engine, run_id: str, op: str = OP_CREATES) -> StepSummary:
    """Skip customers the warehouse already has, reject bad rows, leave the rest to apply."""
    valid, entries = _parse(plan_rows(engine, run_id, op), op)
    existing = existing_external_ids(engine, [(n.data_source_uuid, n.external_id) for _, n in valid])
    remembered = api_rejections(engine, op)
    to_apply: list[int] = []
    for seq, new in valid:
        ident = (new.data_source_uuid, new.external_id)
        if ident in existing:
            entries.append(
                LogEntry(
                    op,
                    new.external_id,
                    "unchanged",
                    new.fingerprint,
                    error=f"exists already as customer {existing[ident]} (warehouse)",
                )
            )
        elif (new.external_id, new.fingerprint) in remembered:
            status, error = remembered[(new.external_id, new.fingerprint)]
            entries.append(
                LogEntry(
                    op,
                    new.external_id,
                    "rejected",
                    new.fingerprint,
                    http_status=status,
                    error=f"not resent: the API rejected this customer before ({error}); "
                    "change the row to try again",
                )
            )
        else:
            to_apply.append(seq)
    record(engine, run_id, entries)
    mark_plan(engine, run_id, op, to_apply, "apply")
    summary = StepSummary(pending=len(to_apply))
    summary.counts.update(e.outcome for e in entries)
    return summary


def apply(
    engine: Engine, client, run_id: str, *, dry_run: bool = False, max_workers: int = 10, op: str = OP_CREATES
) -> StepSummary:
    """Create each remaining customer; a duplicate resolves to the existing one, recorded 'unchanged'."""
    valid, _ = _parse(plan_rows(engine, run_id, op, action="apply"), op)
    sink = LogSink(engine, run_id)
    before = client.stats["requests"]

    def create(item: tuple[int, NewCustomer]) -> None:
        new = item[1]
        started = datetime.now(timezone.utc)

        def log(outcome: str, **kw) -> None:
            sink.write([LogEntry(op, new.external_id, outcome, new.fingerprint, started_at=started, **kw)])

        try:
            if dry_run:
                found = client.find_customers(
                    external_id=new.external_id, data_source_uuid=new.data_source_uuid
                )
                if found:
                    log(
                        "unchanged",
                        http_status=client.last_status,
                        error=f"exists already as customer {found[0].get('uuid')} (ChartMogul)",
                    )
                else:
                    log("dry_run", payload=new.body)
                return
            result = client.create_customer(new.body)
        except ValueError as err:  # refused by the client before sending
            log("rejected", payload=new.body, error=str(err))
            return
        except ChartMogulError as err:
            log(classify(err), payload=new.body, http_status=err.status, error=str(err))
            return
        write_entries(engine, [result.customer])
        if result.created:
            log("applied", payload=new.body, http_status=result.status)
        else:  # the POST answered "external_id already exists" (its status is kept), then a lookup found it
            log(
                "unchanged",
                payload=new.body,
                http_status=result.status,
                error=f"exists already as customer {result.customer.get('uuid')} (ChartMogul answered duplicate)",
            )

    with push_lock(engine, op):
        run_pool(create, valid, max_workers)
    return StepSummary(counts=sink.counts, calls=client.stats["requests"] - before)
