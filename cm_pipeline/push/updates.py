"""Push kind `updates` (reverse_etl.chartmogul_updates): merge-safe PATCH of tags and custom attributes.

Plan (decide.decide_update): rows whose desired state the warehouse row already holds are skipped with
no call; bad rows are rejected with their reasons. Apply, per row left: GET the live customer, merge
onto it, skip if it already matches, create keys the account lacks through the add-by-email POST (only
for a unique email), PATCH the whole merged tags + custom, check the answer, and write it back to
chartmogul.customers.

Nothing is merged onto an answer that is not a well-formed customer (see live.py): such a row is
recorded 'failed' with no PATCH, so an empty or partial body can never wipe tags or attributes.

KNOWN RISK, new keys: the add-by-email POST writes the key to EVERY customer with that email, and
the email is checked to be unique only in the warehouse. A customer created in ChartMogul since the
last extraction (or one the warehouse misses) with the same email also gets the key and value. The
POST's answer lists every customer it touched: when it names more than this one, the row is recorded
'failed' with the uuids in its error (the values on the others are not undone), and written back.
Rows needing a key the warehouse says the account lacks are checked against the warehouse email
count in the plan, before any call.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from cm_pipeline.push.decide import UpdatesKnown, decide_update, parse_updates, shared_email_reason
from cm_pipeline.push.engine import PushKind, RowRun
from cm_pipeline.push.live import MalformedCustomer, live_state
from cm_pipeline.push.merge import attribute_entries, missing_keys, patch_body, state_equal, stored_types
from cm_pipeline.push.push_log import api_rejections
from cm_pipeline.push.rows import UpdateRequest
from cm_pipeline.warehouse.customers import (
    customers_state,
    email_counts,
    known_attribute_keys,
    write_attributes,
    write_entries,
)

NAME = "updates"


def known(engine: Engine, reqs: list[UpdateRequest]) -> UpdatesKnown:
    """The warehouse state of the rows' customers, the account's keys, their emails' counts, and
    the rows the API rejected before."""
    state = customers_state(engine, [r.customer_uuid for r in reqs])
    emails = sorted({s["email"] for s in state.values() if s.get("email")})
    return UpdatesKnown(
        state=state,
        keys=known_attribute_keys(engine),
        per_email=email_counts(engine, emails),
        remembered=api_rejections(engine, NAME),
    )


def _well_formed(
    row: RowRun, answer: Any, uuid: str | None, what: str, status, note: str, payload=None
) -> tuple[list[str], dict[str, Any]]:
    """(tags, custom) of a customer answer; otherwise the row is recorded 'failed' and stopped."""
    try:
        return live_state(answer, uuid, what)
    except MalformedCustomer as err:
        error = f"{err}; {note}; the row is tried again on the next run"
        row.stop("failed", payload=payload, http_status=status, error=error)


def apply(req: UpdateRequest, row: RowRun, known: UpdatesKnown) -> None:
    """GET, merge, (create missing keys,) PATCH the whole merged state, check the answer, write it back."""
    uuid, changes = req.customer_uuid, req.changes
    live, status = row.call(
        row.client.retrieve_customer, uuid, what="GET", not_found=f"customer {uuid} not found in ChartMogul"
    )
    tags, custom = _well_formed(
        row, live, uuid, f"GET /customers/{uuid}", status, "nothing was merged or sent"
    )
    body = patch_body(tags, custom, changes)
    if body is None:
        if not row.dry_run:
            write_entries(
                row.engine, [live], row.answered_ns
            )  # the warehouse was stale; ChartMogul already matches
        row.log("unchanged", http_status=status)
        return
    with known.lock:
        missing = missing_keys(changes, custom, known.keys)
    if missing:
        answered = _create_keys(req, row, known, live.get("email"), missing)
        if answered is not None:  # merge onto what the POST answered (None: a dry run)
            body = patch_body(*answered, changes)
            if body is None:
                return
    sent = row.write(row.client.update_customer, uuid, body, what="PATCH", payload=body)
    if sent is None:
        return
    response, status = sent
    note = "the PATCH was sent; its answer was not written back"
    got = _well_formed(row, response, uuid, f"PATCH /customers/{uuid} answer", status, note, body)
    write_entries(row.engine, [response], row.answered_ns)
    want = body["attributes"]
    if not state_equal(*got, want["tags"], want["custom"], stored_types(changes, want["custom"])):
        error = "PATCH answered, but the customer's tags/custom attributes differ from what was sent"
        row.stop("failed", payload=body, http_status=status, error=error)
    row.log("applied", payload=body, http_status=status)


def _create_keys(
    req: UpdateRequest, row: RowRun, known: UpdatesKnown, email: str | None, missing: list[str]
) -> tuple[list[str], dict[str, Any]] | None:
    """Create the keys the account lacks with the add-by-email POST (the email must be exactly one
    customer's); the customer's (tags, custom) as the POST answered them, or None in a dry run."""
    count = email_counts(row.engine, [email]).get(email.lower(), 0) if email else 0
    if count != 1:
        row.stop("rejected", error=shared_email_reason(missing, email, count, "the live customer's email"))
    post = {"email": email, "custom": attribute_entries(req.changes, missing)}
    sent = row.write(
        row.client.add_custom_attributes, email, post["custom"], what="add-by-email POST", payload=post
    )
    if sent is None:
        return None
    entries, status = sent
    note = "the POST was made; no PATCH was sent"
    states = [
        _well_formed(row, e, None, f"add-by-email POST entry {i}", status, note, post)
        for i, e in enumerate(entries)
    ]
    for got in entries:
        write_attributes(row.engine, got, row.answered_ns)
    others = [e["uuid"] for e in entries if e["uuid"] != req.customer_uuid]
    if others or not entries:
        row.stop(
            "failed",
            payload=post,
            http_status=status,
            error=(
                f"email {email!r} matched {len(entries)} customers in ChartMogul "
                f"({', '.join(map(str, others)) or 'none'} besides {req.customer_uuid}), although the "
                "warehouse had it on exactly 1 (the uniqueness of an email is checked only in "
                "the warehouse: a known risk); the key(s) were added to each customer the POST "
                "named and are not undone; row left for the next run"
            ),
        )
    row.log("applied", payload=post, http_status=status)
    with known.lock:
        known.keys.update(missing)
    return states[0]


KIND = PushKind(
    name=NAME,
    required_columns=("customer_uuid", "add_tags", "remove_tags", "custom_attributes"),
    parse=parse_updates,
    known=known,
    decide=decide_update,
    apply=apply,
)
