"""Push rows of reverse_etl.chartmogul_updates: merge-safe PATCH of tags and custom attributes.

diff: rows whose desired state equals the warehouse row are skipped with no call; bad rows are
rejected with their reasons; the rest are left to apply.
apply: for each remaining row, GET the live customer, merge onto it, skip if it already matches,
create keys the account lacks through the add-by-email POST (only for a unique email), PATCH the
whole merged tags + custom, and write the response back to chartmogul.customers.

Nothing is merged onto an answer that is not a well-formed customer (see live.py): such a row is
recorded 'failed' with no PATCH, so an empty or partial body can never wipe tags or attributes.

KNOWN RISK, new keys: the add-by-email POST writes the key to EVERY customer with that email, and
the email is checked to be unique only in the warehouse. A customer created in ChartMogul since the
last extraction (or one the warehouse misses) with the same email also gets the key and value. The
POST's answer lists every customer it touched: when it names more than this one, the row is recorded
'failed' with the uuids in its error (the values on the others are not undone), and written back.
Rows needing a key the warehouse says the account lacks are checked against the warehouse email
count in the diff, before any call.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timezone

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import ChartMogulError, NotFoundError
from cm_pipeline.push.live import MalformedCustomer, live_state
from cm_pipeline.push.merge import (
    attribute_entries,
    merge_state,
    needs_change,
    state_equal,
    stored_types,
)
from cm_pipeline.push.outcomes import (
    OP_UPDATES,
    FatalPushError,
    LogSink,
    StepSummary,
    classify,
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
from cm_pipeline.push.rows import RowRejected, UpdateRequest, parse_update_row, update_fingerprint
from cm_pipeline.warehouse.customers import (
    customers_state,
    email_counts,
    known_attribute_keys,
    write_attributes,
    write_entries,
)

REQUIRED_COLUMNS = ("customer_uuid", "add_tags", "remove_tags", "custom_attributes")
DEFAULT_RELATION = "reverse_etl.chartmogul_updates"


def _target(row: dict) -> str:
    value = row.get("customer_uuid")
    return value if isinstance(value, str) and value else f"<row without customer_uuid: {value!r}>"


def shared_email_reason(missing: list[str], email: str | None, count: int, where: str) -> str:
    """Why a row needing new keys is rejected when its email is not exactly one customer's."""
    return (
        f"new custom attribute key(s) {', '.join(missing)} must be created with the add-by-email POST, "
        f"but email {email!r} belongs to {count} customers in the warehouse (needs exactly 1; {where}); "
        "create the key in ChartMogul first or make the email unique"
    )


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
    known = known_attribute_keys(engine)
    emails = {s["email"] for s in state.values() if s.get("email")}
    per_email = email_counts(engine, sorted(emails))
    to_apply: list[int] = []

    def reject(req: UpdateRequest, error: str, http_status: int | None = None) -> None:
        entries.append(
            LogEntry(op, req.customer_uuid, "rejected", req.fingerprint, http_status=http_status, error=error)
        )

    for seq, req in parsed:
        current = state.get(req.customer_uuid)
        if current is None:
            reject(req, f"customer {req.customer_uuid} not in warehouse (unknown or deleted)")
        elif (req.customer_uuid, req.fingerprint) in remembered:
            status, error = remembered[(req.customer_uuid, req.fingerprint)]
            reject(
                req,
                f"not resent: the API rejected these desired values before ({error}); change the row to try again",
                status,
            )
        elif not needs_change(current["tags"], current["custom_attributes"], req.changes):
            entries.append(LogEntry(op, req.customer_uuid, "unchanged", req.fingerprint))
        elif (
            missing := sorted(
                k for k in req.changes.set_custom if k not in known and k not in current["custom_attributes"]
            )
        ) and per_email.get((current.get("email") or "").lower(), 0) != 1:
            # Would need the add-by-email POST, which the warehouse already says cannot be made: no GET.
            email = current.get("email") or None
            count = per_email.get(email.lower(), 0) if email else 0
            reject(req, shared_email_reason(missing, email, count, "checked before any call"))
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
        except FatalPushError:
            raise
        except Exception as exc:  # one bad row never sinks the others: record it and go on
            self.sink.write([self.entry(req, "failed", started, error=f"{type(exc).__name__}: {exc}")])

    def _call(self, fn, *args):
        """(answer, the HTTP status the API answered) of one client call made in this thread."""
        answer = fn(*args)
        return answer, self.client.last_status

    def _malformed(
        self, req, started, err: MalformedCustomer, status, note: str, payload=None, done=()
    ) -> list[LogEntry]:
        """A 'failed' entry for an answer that is not a well-formed customer (nothing merged onto it)."""
        return [
            *done,
            self.entry(
                req,
                "failed",
                started,
                payload=payload,
                http_status=status,
                error=f"{err}; {note}; the row is tried again on the next run",
            ),
        ]

    def _apply(self, req: UpdateRequest, started: datetime) -> list[LogEntry]:
        uuid, changes = req.customer_uuid, req.changes
        try:
            live, status = self._call(self.client.retrieve_customer, uuid)
        except NotFoundError as err:
            return [
                self.entry(
                    req,
                    "rejected",
                    started,
                    http_status=err.status,
                    error=f"customer {uuid} not found in ChartMogul: {err}",
                )
            ]
        except ChartMogulError as err:
            return [
                self.entry(req, classify(err), started, http_status=err.status, error=f"GET failed: {err}")
            ]
        try:
            live_tags, live_custom = live_state(live, uuid, f"GET /customers/{uuid}")
        except MalformedCustomer as err:
            return self._malformed(req, started, err, status, "nothing was merged or sent")
        tags, custom = merge_state(live_tags, live_custom, changes)
        if state_equal(live_tags, live_custom, tags, custom, changes.declared):
            if not self.dry_run:
                write_entries(self.engine, [live])  # the warehouse was stale; ChartMogul already matches
            return [self.entry(req, "unchanged", started, http_status=status, error=None)]
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
                        error=shared_email_reason(missing, email, count, "the live customer's email"),
                    )
                ]
            post = {"email": email, "custom": attribute_entries(changes, missing)}
            if self.dry_run:
                out.append(self.entry(req, "dry_run", started, payload=post))
            else:
                try:
                    entries, status = self._call(self.client.add_custom_attributes, email, post["custom"])
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
                try:
                    states = [
                        (
                            e.get("uuid") if isinstance(e, dict) else None,
                            live_state(e, None, f"add-by-email POST entry {i}"),
                        )
                        for i, e in enumerate(entries)
                    ]
                except MalformedCustomer as err:
                    return self._malformed(
                        req, started, err, status, "the POST was made; no PATCH was sent", payload=post
                    )
                for got in entries:
                    write_attributes(self.engine, got)
                others = [u for u, _ in states if u != uuid]
                if others or not entries:
                    return [
                        self.entry(
                            req,
                            "failed",
                            started,
                            payload=post,
                            http_status=status,
                            error=(
                                f"email {email!r} matched {len(entries)} customers in ChartMogul "
                                f"({', '.join(map(str, others)) or 'none'} besides {uuid}), although the "
                                "warehouse had it on exactly 1 (the uniqueness of an email is checked only in "
                                "the warehouse: a known risk); the key(s) were added to each customer the POST "
                                "named and are not undone; row left for the next run"
                            ),
                        )
                    ]
                out.append(self.entry(req, "applied", started, payload=post, http_status=status))
                with self._lock:
                    self.known_keys.update(missing)
                live_tags, live_custom = states[0][1]
                tags, custom = merge_state(live_tags, live_custom, changes)
                if state_equal(live_tags, live_custom, tags, custom, changes.declared):
                    return out
                started = datetime.now(timezone.utc)
        body = {"attributes": {"tags": tags, "custom": custom}}
        if self.dry_run:
            return [*out, self.entry(req, "dry_run", started, payload=body)]
        try:
            response, status = self._call(self.client.update_customer, uuid, body)
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
        try:
            got_tags, got_custom = live_state(response, uuid, f"PATCH /customers/{uuid} answer")
        except MalformedCustomer as err:
            return self._malformed(
                req, started, err, status, "the PATCH was sent; its answer was not written back", body, out
            )
        write_entries(self.engine, [response])
        if not state_equal(got_tags, got_custom, tags, custom, stored_types(changes, custom)):
            return [
                *out,
                self.entry(
                    req,
                    "failed",
                    started,
                    payload=body,
                    http_status=status,
                    error="PATCH answered, but the customer's tags/custom attributes differ from what was sent",
                ),
            ]
        return [*out, self.entry(req, "applied", started, payload=body, http_status=status)]


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
