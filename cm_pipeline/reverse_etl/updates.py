"""Push rows of reverse_etl.chartmogul_customer_updates: merge-safe PATCH of tags and custom attributes.

diff: rows whose desired state equals the warehouse row are skipped with no call; bad rows are
rejected with their reasons; the rest are left to apply.
apply: for each remaining row, GET the live customer, merge onto it, skip if it already matches,
create keys the account lacks through the add-by-email POST (only for a unique email), PATCH the
whole merged tags + custom, and write the response back to chartmogul.customers.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timezone

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import ChartMogulError, NotFoundError
from cm_pipeline.reverse_etl.merge import (
    attribute_entries,
    merge_state,
    needs_change,
    state_equal,
)
from cm_pipeline.reverse_etl.outcomes import OP_UPDATES, LogSink, StepSummary, classify, push_lock, run_pool
from cm_pipeline.reverse_etl.push_log import (
    LogEntry,
    api_rejections,
    customers_state,
    email_counts,
    known_attribute_keys,
    mark_plan,
    plan_rows,
    record,
    write_back_attributes,
    write_back_customer,
)
from cm_pipeline.reverse_etl.rows import RowRejected, UpdateRequest, parse_update_row, update_fingerprint

REQUIRED_COLUMNS = ("customer_uuid", "add_tags", "remove_tags", "custom_attributes")
DEFAULT_RELATION = "reverse_etl.chartmogul_customer_updates"


def _target(row: dict) -> str:
    value = row.get("customer_uuid")
    return value if isinstance(value, str) and value else f"<row without customer_uuid: {value!r}>"


def diff(engine: Engine, run_id: str, op: str = OP_UPDATES) -> StepSummary:
    """Decide every snapshot row: unchanged vs the warehouse, rejected, or left to apply."""
    rows = plan_rows(engine, run_id, op)
    summary = StepSummary()
    entries: list[LogEntry] = []
    parsed: list[tuple[int, UpdateRequest]] = []
    uuid_rows = Counter(r.get("customer_uuid") for _, r in rows)
    for seq, row in rows:
        fp = update_fingerprint(row)
        try:
            if uuid_rows[row.get("customer_uuid")] > 1:
                raise RowRejected(
                    [
                        f"customer_uuid {row.get('customer_uuid')!r} appears in {uuid_rows[row.get('customer_uuid')]} rows; "
                        "the relation must hold one row per customer"
                    ]
                )
            parsed.append((seq, parse_update_row(row)))
        except RowRejected as exc:
            entries.append(LogEntry(op, _target(row), "rejected", fp, payload=row, error=str(exc)))
    state = customers_state(engine, [req.customer_uuid for _, req in parsed])
    remembered = api_rejections(engine, op)
    to_apply: list[int] = []
    for seq, req in parsed:
        current = state.get(req.customer_uuid)
        if current is None:
            entries.append(
                LogEntry(
                    op,
                    req.customer_uuid,
                    "rejected",
                    req.fingerprint,
                    error=f"customer {req.customer_uuid} not in warehouse (unknown or deleted)",
                )
            )
        elif (req.customer_uuid, req.fingerprint) in remembered:
            status, error = remembered[(req.customer_uuid, req.fingerprint)]
            entries.append(
                LogEntry(
                    op,
                    req.customer_uuid,
                    "rejected",
                    req.fingerprint,
                    http_status=status,
                    error=f"not resent: the API rejected these desired values before ({error}); "
                    "change the row to try again",
                )
            )
        elif not needs_change(current["tags"], current["custom_attributes"], req.changes):
            entries.append(LogEntry(op, req.customer_uuid, "unchanged", req.fingerprint))
        else:
            to_apply.append(seq)
    record(engine, run_id, entries)
    mark_plan(engine, run_id, op, to_apply, "apply")
    summary.counts.update(e.outcome for e in entries)
    summary.pending = len(to_apply)
    return summary


class _Applier:
    """Applies one row at a time; shared by the worker threads of one apply step."""

    def __init__(self, engine: Engine, client, sink: LogSink, op: str, dry_run: bool) -> None:
        self.engine, self.client, self.sink, self.op, self.dry_run = engine, client, sink, op, dry_run
        self.known_keys = known_attribute_keys(engine)
        self._lock = threading.Lock()

    def entry(self, req: UpdateRequest, outcome: str, started: datetime, **kw) -> LogEntry:
        return LogEntry(self.op, req.customer_uuid, outcome, req.fingerprint, started_at=started, **kw)

    def __call__(self, req: UpdateRequest) -> None:
        started = datetime.now(timezone.utc)
        try:
            self.sink.write(self._apply(req, started))
        except Exception as exc:  # one bad row never sinks the others: record it and go on
            from cm_pipeline.reverse_etl.outcomes import FatalPushError

            if isinstance(exc, FatalPushError):
                raise
            self.sink.write([self.entry(req, "failed", started, error=f"{type(exc).__name__}: {exc}")])

    def _apply(self, req: UpdateRequest, started: datetime) -> list[LogEntry]:
        uuid, changes = req.customer_uuid, req.changes
        try:
            live = self.client.retrieve_customer(uuid)
        except NotFoundError as err:
            return [
                self.entry(
                    req,
                    "rejected",
                    started,
                    http_status=404,
                    error=f"customer {uuid} not found in ChartMogul: {err}",
                )
            ]
        except ChartMogulError as err:
            return [
                self.entry(req, classify(err), started, http_status=err.status, error=f"GET failed: {err}")
            ]
        attrs = live.get("attributes") or {}
        live_tags, live_custom = attrs.get("tags") or [], attrs.get("custom") or {}
        tags, custom = merge_state(live_tags, live_custom, changes)
        if state_equal(live_tags, live_custom, tags, custom):
            if not self.dry_run:
                write_back_customer(self.engine, live)  # the warehouse was stale; ChartMogul already matches
            return [self.entry(req, "unchanged", started, http_status=200, error=None)]
        out: list[LogEntry] = []
        with self._lock:
            missing = [
                k for k in sorted(changes.set_custom) if k not in live_custom and k not in self.known_keys
            ]
        if missing:
            email = live.get("email")
            count = email_counts(self.engine, [email]).get(email.lower(), 0) if email else 0
            if count != 1:
                return [
                    self.entry(
                        req,
                        "rejected",
                        started,
                        error=(
                            f"new custom attribute key(s) {', '.join(missing)} must be created with the add-by-email "
                            f"POST, but email {email!r} belongs to {count} customers in the warehouse (needs exactly 1); "
                            "create the key in ChartMogul first or make the email unique"
                        ),
                    )
                ]
            post = {"email": email, "custom": attribute_entries(changes, missing)}
            if self.dry_run:
                out.append(self.entry(req, "dry_run", started, payload=post))
            else:
                try:
                    entries = self.client.add_custom_attributes(email, post["custom"])
                except ChartMogulError as err:
                    return [
                        self.entry(
                            req,
                            classify(err),
                            started,
                            payload=post,
                            http_status=err.status,
                            error=f"add-by-email POST failed: {err}",
                        )
                    ]
                for got in entries:
                    write_back_attributes(self.engine, got)
                others = [e.get("uuid") for e in entries if e.get("uuid") != uuid]
                if others or not entries:
                    return [
                        self.entry(
                            req,
                            "failed",
                            started,
                            payload=post,
                            http_status=200,
                            error=(
                                f"email {email!r} matched {len(entries)} customers in ChartMogul ({', '.join(map(str, others))} "
                                f"besides {uuid}); the keys were added to each; row left for the next run"
                            ),
                        )
                    ]
                out.append(self.entry(req, "applied", started, payload=post, http_status=200))
                with self._lock:
                    self.known_keys.update(missing)
                attrs = entries[0].get("attributes") or {}
                live_tags, live_custom = attrs.get("tags") or [], attrs.get("custom") or {}
                tags, custom = merge_state(live_tags, live_custom, changes)
                if state_equal(live_tags, live_custom, tags, custom):
                    return out
                started = datetime.now(timezone.utc)
        body = {"attributes": {"tags": tags, "custom": custom}}
        if self.dry_run:
            return [*out, self.entry(req, "dry_run", started, payload=body)]
        try:
            response = self.client.update_customer(uuid, body)
        except ChartMogulError as err:
            return [
                *out,
                self.entry(
                    req,
                    classify(err),
                    started,
                    payload=body,
                    http_status=err.status,
                    error=f"PATCH failed: {err}",
                ),
            ]
        write_back_customer(self.engine, response)
        got = response.get("attributes") or {}
        if not state_equal(got.get("tags") or [], got.get("custom") or {}, tags, custom):
            return [
                *out,
                self.entry(
                    req,
                    "failed",
                    started,
                    payload=body,
                    http_status=200,
                    error="PATCH answered, but the customer's tags/custom attributes differ from what was sent",
                ),
            ]
        return [*out, self.entry(req, "applied", started, payload=body, http_status=200)]


def apply(
    engine: Engine, client, run_id: str, *, dry_run: bool = False, max_workers: int = 10, op: str = OP_UPDATES
) -> StepSummary:
    """GET-merge-compare-PATCH every row the diff left, through one client, `max_workers` at a time."""
    reqs = []
    for _seq, row in plan_rows(engine, run_id, op, action="apply"):
        reqs.append(parse_update_row(row))
    sink = LogSink(engine, run_id)
    before = client.stats["requests"]
    with push_lock(engine, op):
        # A concurrent push of the same rows may have finished while this one waited for the lock:
        # its write-back shows in the warehouse, so those rows are settled without a call.
        state = customers_state(engine, [r.customer_uuid for r in reqs])
        settled = [
            r
            for r in reqs
            if r.customer_uuid in state
            and not needs_change(
                state[r.customer_uuid]["tags"], state[r.customer_uuid]["custom_attributes"], r.changes
            )
        ]
        sink.write(LogEntry(op, r.customer_uuid, "unchanged", r.fingerprint) for r in settled)
        settled_ids = {id(r) for r in settled}
        applier = _Applier(engine, client, sink, op, dry_run)
        run_pool(applier, [r for r in reqs if id(r) not in settled_ids], max_workers)
    return StepSummary(counts=sink.counts, calls=client.stats["requests"] - before)
