"""Push kind `updates` (reverse_etl.chartmogul_updates): merge-safe PATCH of tags and custom attributes.

Plan (decide.decide_update): rows whose desired state the warehouse row already holds are skipped with
no call; bad rows are rejected with their reasons. Apply, per row left: GET the live customer, merge
onto it, skip if it already matches, create keys the account lacks through the add-by-email POST (only
for an email that is exactly this customer's: in the warehouse, then by ChartMogul's search), PATCH the
whole merged tags + custom, check the answer, and write it back to chartmogul.customers.

Whether a key exists is judged from what the account has now: keys live customers hold in the
warehouse, plus what the API told this run (keys a GET showed, keys a POST created, keys a 422 said
are missing). A PATCH refused with 422 for a missing key creates it through the POST when that is
safe, then PATCHes again; otherwise the row is recorded 'failed' (tried again), not rejected.

Nothing is merged onto an answer that is not a well-formed customer (see live.py): such a row is
recorded 'failed' with no PATCH, so an empty or partial body can never wipe tags or attributes.

KNOWN RISK, new keys: the add-by-email POST writes the key to EVERY customer with that email. The
search just before it must find exactly this customer (search.py); a customer with the same email
created between the search and the POST still gets the key and value. The POST's answer names every
customer it touched: when it names more than this one, the row is recorded 'failed' with their uuids
(the values on the others are not undone), and written back.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import ChartMogulError, UnprocessableEntityError
from cm_pipeline.push.decide import (
    UpdatesKnown,
    decide_update,
    is_missing_attribute,
    parse_updates,
    shared_email_reason,
)
from cm_pipeline.push.engine import PushKind, RowRun
from cm_pipeline.push.live import MalformedCustomer, live_state
from cm_pipeline.push.merge import attribute_entries, missing_keys, patch_body, state_equal, stored_types
from cm_pipeline.push.pending import read_customer, resolve_email_post
from cm_pipeline.push.preview import state_changes
from cm_pipeline.push.push_log import api_rejections
from cm_pipeline.push.rows import UpdateRequest
from cm_pipeline.push.search import confirm_email_holders, reached_beyond
from cm_pipeline.warehouse.customers import (
    customers_state,
    email_counts,
    last_changed_by_customer,
    live_attribute_keys,
    write_attributes,
    write_entries,
)

NAME = "updates"


def known(engine: Engine, reqs: list[UpdateRequest]) -> UpdatesKnown:
    """The warehouse state of the rows' customers, the keys live customers hold, their emails'
    counts, the rows the API rejected before, and when each customer (or its email) last changed."""
    uuids = [r.customer_uuid for r in reqs]
    state = customers_state(engine, uuids)
    emails = sorted({s["email"] for s in state.values() if s.get("email")})
    return UpdatesKnown(
        state=state,
        keys=live_attribute_keys(engine),
        per_email=email_counts(engine, emails),
        remembered=api_rejections(engine, NAME),
        changed=last_changed_by_customer(engine, uuids),
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


def _holds(answer: Any, want: dict, types: dict) -> bool:
    """Whether a customer answer holds the PATCH's whole tags + custom (its write landed)."""
    try:
        tags, custom = live_state(answer, None, "customer")
    except MalformedCustomer:
        return False
    return state_equal(tags, custom, want["tags"], want["custom"], types)


def _missing_key_refusal(err: ChartMogulError) -> bool:
    return isinstance(err, UnprocessableEntityError) and is_missing_attribute(err.message)


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
            write_entries(row.engine, [live], row.answered_ns)  # the warehouse was stale; ChartMogul matches
        row.log("unchanged", http_status=status)
        return
    with known.lock:
        known.keys.update(custom)  # the API just showed these keys exist
        missing = missing_keys(changes, custom, known.keys)
    if missing:
        answered = _create_keys(req, row, known, live.get("email"), missing)
        if answered is not None:  # merge onto what the POST answered (None: a dry run)
            body = patch_body(*answered, changes)
            if body is None:
                return
    _patch(req, row, known, live.get("email"), body, (tags, custom))


def _patch(
    req: UpdateRequest,
    row: RowRun,
    known: UpdatesKnown,
    email,
    body: dict,
    before: tuple,
    healed: bool = False,
) -> None:
    """PATCH `body`, check the answer and write it back. A 422 for a missing key creates the key (when
    safe) and PATCHes once more."""
    uuid, want = req.customer_uuid, body["attributes"]
    types = stored_types(req.changes, want["custom"])
    update = partial(row.client.update_customer, uuid, body, landed=lambda got: _holds(got, want, types))
    preview = state_changes(*before, want["tags"], want["custom"])
    try:
        sent = row.write(update, what="PATCH", payload=body, preview=preview, refused=_missing_key_refusal)
    except UnprocessableEntityError as err:
        keys = [k for k in want["custom"] if k not in before[1]]
        named = [k for k in keys if k == err.param or repr(k) in err.message or f'"{k}"' in err.message]
        with known.lock:
            known.keys.difference_update(named or keys)  # the API says the account lacks them
        if healed:
            row.stop("failed", payload=body, http_status=err.status, error=f"PATCH failed again: {err}")
        answered = _create_keys(req, row, known, email, named or keys, unsafe="failed")
        body = patch_body(*answered, req.changes)
        if body is not None:
            _patch(req, row, known, email, body, answered, healed=True)
        return
    if sent is None:
        return
    response, status = sent
    note = "the PATCH was sent; its answer was not written back"
    got = _well_formed(row, response, uuid, f"PATCH /customers/{uuid} answer", status, note, body)
    write_entries(row.engine, [response], row.answered_ns)
    if not state_equal(*got, want["tags"], want["custom"], types):
        error = "PATCH answered, but the customer's tags/custom attributes differ from what was sent"
        row.stop("failed", payload=body, http_status=status, error=error)
    row.log("applied", payload=body, http_status=status)


def _create_keys(
    req: UpdateRequest,
    row: RowRun,
    known: UpdatesKnown,
    email: str | None,
    missing: list[str],
    unsafe: str = "rejected",
) -> tuple[list[str], dict[str, Any]] | None:
    """Create the keys the account lacks with the add-by-email POST: only when the email is exactly
    this customer's, in the warehouse and then by ChartMogul's search (otherwise the row is recorded
    `unsafe` and stopped). The customer's (tags, custom) as the POST answered them, or None in a dry run."""
    uuid = req.customer_uuid
    count = email_counts(row.engine, [email]).get(email.lower(), 0) if email else 0
    if count != 1:
        row.stop(unsafe, error=shared_email_reason(missing, email, count, "the live customer's email"))
    post = {"email": email, "custom": attribute_entries(req.changes, missing)}
    confirm_email_holders(row, email, [uuid], post, outcome=unsafe)
    add = partial(row.client.add_custom_attributes, email, post["custom"])
    sent = row.write(add, what="add-by-email POST", payload=post)
    if sent is None:
        return None
    entries, status = sent
    note = "the POST was made; no PATCH was sent"
    states = {
        e.get("uuid"): _well_formed(row, e, None, f"add-by-email POST entry {i}", status, note, post)
        for i, e in enumerate(entries)
    }
    for got in entries:
        write_attributes(row.engine, got, row.answered_ns)
    others = reached_beyond(entries, [uuid])
    if others or uuid not in states:
        row.stop(
            "failed",
            payload=post,
            http_status=status,
            error=(
                f"email {email!r} matched {len(entries)} customers in ChartMogul ({', '.join(others) or 'none'} besides "
                f"{uuid}), although the search just before the POST found only {uuid}: a customer with that "
                "email was created in between (the known risk left: the moment between the search and the "
                "POST); the key(s) were added to each customer the POST named and are not undone; row left "
                "for the next run"
            ),
        )
    row.log("applied", payload=post, http_status=status)
    with known.lock:
        known.keys.update(missing)
    return states[uuid]


def resolve(client, intent: dict) -> tuple[bool, list[dict]]:
    """Whether a pending PATCH (the customer holds its tags + custom) or key-creating POST landed."""
    payload = intent["payload"] or {}
    if "attributes" not in payload:
        return resolve_email_post(client, intent)
    live = read_customer(client, intent["target"])
    if live is None:
        return False, []
    want = payload["attributes"]
    types = {k: "Timestamp" for k, v in want.get("custom", {}).items() if isinstance(v, str)}
    return _holds(live, {"tags": want.get("tags", []), "custom": want.get("custom", {})}, types), [live]


KIND = PushKind(
    name=NAME,
    required_columns=("customer_uuid", "add_tags", "remove_tags", "custom_attributes"),
    parse=parse_updates,
    known=known,
    decide=decide_update,
    apply=apply,
    resolve=resolve,
)
