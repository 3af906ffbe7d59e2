"""Push rows of reverse_etl.chartmogul_by_email: one add-by-email POST per email.

The POST applies to every customer with that email (that is what the relation asks for). An email
with no customer in the warehouse is rejected; an email whose customers all hold the values already
is skipped with no call.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import ChartMogulError
from cm_pipeline.push.merge import values_equal
from cm_pipeline.push.outcomes import (
    OP_BY_EMAIL,
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
    EmailAttribute,
    email_fingerprint,
    fingerprint,
    parse_email_row,
)
from cm_pipeline.warehouse.customers import (
    customers_by_email,
    write_attributes,
)

REQUIRED_COLUMNS = ("email", "key", "type", "value")
DEFAULT_RELATION = "reverse_etl.chartmogul_by_email"


def group_fingerprint(attrs: list[EmailAttribute]) -> str:
    """Fingerprint of one email's POST: its rows' fingerprints, order-independent."""
    return fingerprint(sorted(a.fingerprint for a in attrs))


def _parse_groups(
    rows: list[tuple[int, dict]], op: str
) -> tuple[dict[str, list[tuple[int, EmailAttribute]]], list[LogEntry]]:
    valid, rejected = parse_each(rows, op, parse_email_row, "email", email_fingerprint)
    per_key = Counter((a.email.lower(), a.key) for _, a in valid)
    groups: dict[str, list[tuple[int, EmailAttribute]]] = defaultdict(list)
    for seq, attr in valid:
        n = per_key[(attr.email.lower(), attr.key)]
        if n > 1:
            rejected.append(
                LogEntry(
                    op,
                    attr.email,
                    "rejected",
                    attr.fingerprint,
                    payload=attr.entry(),
                    error=f"key {attr.key!r} is set {n} times for email {attr.email!r}; keep one row",
                )
            )
        else:
            groups[attr.email.lower()].append((seq, attr))
    return groups, rejected


def diff(engine: Engine, run_id: str, op: str = OP_BY_EMAIL) -> StepSummary:
    """Decide every email: unchanged (all its customers hold the values), rejected, or left to apply."""
    groups, entries = _parse_groups(plan_rows(engine, run_id, op), op)
    holders = customers_by_email(engine, list(groups))
    remembered = api_rejections(engine, op)
    to_apply: list[int] = []
    for email_key, members in groups.items():
        attrs = [a for _, a in members]
        email, fp = attrs[0].email, group_fingerprint(attrs)
        customers = holders.get(email_key, [])
        if not customers:
            entries.append(
                LogEntry(
                    op,
                    email,
                    "rejected",
                    fp,
                    payload=[a.entry() for a in attrs],
                    error=f"no customer with email {email!r} in the warehouse",
                )
            )
        elif (email, fp) in remembered:
            status, error = remembered[(email, fp)]
            entries.append(
                LogEntry(
                    op,
                    email,
                    "rejected",
                    fp,
                    http_status=status,
                    error=f"not resent: the API rejected these values before ({error}); "
                    "change the rows to try again",
                )
            )
        elif all(
            a.key in c["custom_attributes"] and values_equal(c["custom_attributes"][a.key], a.value, a.type)
            for a in attrs
            for c in customers
        ):
            entries.append(LogEntry(op, email, "unchanged", fp))
        else:
            to_apply.extend(seq for seq, _ in members)
    record(engine, run_id, entries)
    mark_plan(engine, run_id, op, to_apply, "apply")
    summary = StepSummary(pending=len(to_apply))
    summary.counts.update(e.outcome for e in entries)
    return summary


def apply(
    engine: Engine,
    client,
    run_id: str,
    *,
    dry_run: bool = False,
    max_workers: int = 10,
    op: str = OP_BY_EMAIL,
) -> StepSummary:
    """One add-by-email POST per email the diff left; responses written back to the warehouse."""
    groups, _ = _parse_groups(plan_rows(engine, run_id, op, action="apply"), op)
    sink = LogSink(engine, run_id)
    before = client.stats["requests"]

    def push(members: list[tuple[int, EmailAttribute]]) -> None:
        attrs = [a for _, a in members]
        email, fp = attrs[0].email, group_fingerprint(attrs)
        payload = {"email": email, "custom": [a.entry() for a in attrs]}
        started = datetime.now(timezone.utc)
        if dry_run:
            sink.write([LogEntry(op, email, "dry_run", fp, payload=payload, started_at=started)])
            return
        try:
            entries = client.add_custom_attributes(email, payload["custom"])
            status = client.last_status  # this thread's call: the POST's answer
        except ValueError as err:  # refused by the client before sending
            sink.write(
                [LogEntry(op, email, "rejected", fp, payload=payload, error=str(err), started_at=started)]
            )
            return
        except ChartMogulError as err:
            sink.write(
                [
                    LogEntry(
                        op,
                        email,
                        classify(err),
                        fp,
                        payload=payload,
                        http_status=err.status,
                        error=str(err),
                        started_at=started,
                    )
                ]
            )
            return
        for got in entries:
            write_attributes(engine, got)
        note = None if entries else "the API matched no customer with this email"
        sink.write(
            [
                LogEntry(
                    op,
                    email,
                    "applied" if entries else "failed",
                    fp,
                    payload=payload,
                    http_status=status,
                    error=note,
                    started_at=started,
                )
            ]
        )

    with push_lock(engine, op):
        run_pool(push, list(groups.values()), max_workers)
    return StepSummary(counts=sink.counts, calls=client.stats["requests"] - before)
