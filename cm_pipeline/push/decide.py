"""Every decision made before a call, for the three kinds (pure): rejected, unchanged or apply, with why.

For each kind: `parse_<kind>(rows)` validates every snapshot row once (rows.py) and settles the rows
that clash with another row of the run; `decide_<kind>(item, known)` compares one valid item with
what the warehouse and push_log know (`<Kind>Known`, read by the kind's module).

An API rejection is remembered by (target, fingerprint) and not resent until what it depended on has
changed: the row's desired values (a new fingerprint), or, for updates and by_email, the warehouse rows
involved (the customer and every customer sharing its email) were written since the rejection. A
rejection for a custom attribute key the account lacked is never remembered: the key gets created.
"""

from __future__ import annotations

import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cm_pipeline.push.merge import missing_keys, needs_change, values_equal
from cm_pipeline.push.rows import (
    EmailGroup,
    NewCustomer,
    RowRejected,
    UpdateRequest,
    email_fingerprint,
    new_customer_fingerprint,
    parse_email_row,
    parse_new_customer_row,
    parse_update_row,
    update_fingerprint,
)


@dataclass(frozen=True)
class Rejection:
    """The latest push_log entry for a (target, fingerprint), when the API rejected it."""

    http_status: int | None
    error: str | None
    at: datetime  # when it was logged (finished_at)


# (target, fingerprint) -> Rejection (http_status, error, at) of rows whose latest attempt the API rejected.
Remembered = Mapping[tuple[str, str], Rejection]

_MISSING_ATTRIBUTE = re.compile(
    r"attribute.*(does not exist|doesn't exist|not (been )?(defined|found))|unknown (custom )?attribute", re.I
)


def is_missing_attribute(error: str | None) -> bool:
    """Whether an API error says a custom attribute key does not exist in the account."""
    return bool(error) and bool(_MISSING_ATTRIBUTE.search(error))


@dataclass(frozen=True)
class Decision:
    """What the plan decided for one row: 'apply', 'unchanged' or 'rejected', and why."""

    outcome: str
    error: str | None = None
    http_status: int | None = None
    payload: Any = None


APPLY = Decision("apply")
UNCHANGED = Decision("unchanged")


@dataclass(frozen=True)
class Settled:
    """A row the plan settled without any call: what push_log names it by, and the decision."""

    target: str
    fingerprint: str
    decision: Decision


def remembered_rejection(
    item: Any, remembered: Remembered, changed_at: datetime | None = None, *, depends: str = ""
) -> Decision | None:
    """A rejection for an item whose same desired values the API rejected before, else None (send it).

    None as well when the rejection was for a missing attribute key, or when what it depended on was
    written after it (`changed_at`; `depends` names that in the message)."""
    hit = remembered.get((item.target, item.fingerprint))
    if hit is None or is_missing_attribute(hit.error):
        return None
    if changed_at is not None and changed_at > hit.at:
        return None
    again = f"change the row{f' or refresh {depends}' if depends else ''} to try again"
    return Decision(
        "rejected",
        f"not resent: the API rejected these desired values before ({hit.error}); {again}",
        hit.http_status,
    )


def _validate(
    row: dict, parse: Callable[[dict], Any], target: str, fingerprint: Callable[[dict], str]
) -> tuple[Any, Settled | None]:
    """(the parsed item, None), or (None, a rejection naming every problem with the row as its payload)."""
    try:
        return parse(row), None
    except RowRejected as exc:
        return None, Settled(target, fingerprint(row), Decision("rejected", str(exc), payload=row))


# ---- updates ------------------------------------------------------------------------------------


@dataclass
class UpdatesKnown:
    """What the warehouse and push_log say about a run's update rows. `keys` grows as the run
    creates attribute keys (under `lock`: the apply threads share it)."""

    state: Mapping[str, dict]  # uuid -> {tags, custom_attributes, email} of live customers
    keys: set[str]  # custom attribute keys the account has
    per_email: Mapping[str, int]  # lower(email) -> live customers with it
    remembered: Remembered
    changed: Mapping[str, datetime] = field(default_factory=dict)  # uuid -> last write of it or its email
    lock: threading.Lock = field(default_factory=threading.Lock)


def shared_email_reason(missing: list[str], email: str | None, count: int, where: str) -> str:
    """Why a row needing new keys is rejected when its email is not exactly one customer's."""
    return (
        f"new custom attribute key(s) {', '.join(missing)} must be created with the add-by-email POST, "
        f"but email {email!r} belongs to {count} customers in the warehouse (needs exactly 1; {where}); "
        "create the key in ChartMogul first or make the email unique"
    )


def parse_updates(rows: list[dict]) -> tuple[list[UpdateRequest], list[Settled]]:
    """Valid update requests, and the rows rejected: invalid, or a customer named by several rows."""
    per_uuid = Counter(row.get("customer_uuid") for row in rows)
    items: list[UpdateRequest] = []
    settled: list[Settled] = []
    for row in rows:
        uuid = row.get("customer_uuid")
        target = uuid if isinstance(uuid, str) and uuid else f"<row without customer_uuid: {uuid!r}>"
        if per_uuid[uuid] > 1:
            error = f"customer_uuid {uuid!r} appears in {per_uuid[uuid]} rows; the relation must hold one row per customer"
            settled.append(Settled(target, update_fingerprint(row), Decision("rejected", error, payload=row)))
            continue
        req, rejected = _validate(row, parse_update_row, target, update_fingerprint)
        if rejected:
            settled.append(rejected)
        else:
            items.append(req)
    return items, settled


def decide_update(req: UpdateRequest, known: UpdatesKnown) -> Decision:
    """Rejected (not in the warehouse, rejected before, a new key on a shared email), unchanged
    (the warehouse row already matches: no call), or apply."""
    current = known.state.get(req.customer_uuid)
    if current is None:
        return Decision("rejected", f"customer {req.customer_uuid} not in warehouse (unknown or deleted)")
    changed = known.changed.get(req.customer_uuid)
    if remembered := remembered_rejection(req, known.remembered, changed, depends="the customer"):
        return remembered
    if not needs_change(current["tags"], current["custom_attributes"], req.changes):
        return UNCHANGED
    missing = missing_keys(req.changes, current["custom_attributes"], known.keys)
    email = current.get("email") or None
    count = known.per_email.get(email.lower(), 0) if email else 0
    if missing and count != 1:
        # Would need the add-by-email POST, which the warehouse already says cannot be made: no GET.
        return Decision("rejected", shared_email_reason(missing, email, count, "checked before any call"))
    return APPLY


# ---- by_email -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ByEmailKnown:
    """The warehouse's customers per lower(email) ({uuid, custom_attributes}), and past API rejections."""

    holders: Mapping[str, list[dict]]
    remembered: Remembered
    changed: Mapping[str, datetime] = field(default_factory=dict)  # lower(email) -> last write of its rows


def parse_by_email(rows: list[dict]) -> tuple[list[EmailGroup], list[Settled]]:
    """One group per email, and the rows rejected: invalid, or a key set twice for the same email."""
    valid = []
    settled: list[Settled] = []
    for row in rows:
        attr, rejected = _validate(row, parse_email_row, str(row.get("email")), email_fingerprint)
        if rejected:
            settled.append(rejected)
        else:
            valid.append(attr)
    per_key = Counter((a.email.lower(), a.key) for a in valid)
    groups: dict[str, list] = defaultdict(list)
    for attr in valid:
        n = per_key[(attr.email.lower(), attr.key)]
        if n > 1:
            error = f"key {attr.key!r} is set {n} times for email {attr.email!r}; keep one row"
            settled.append(
                Settled(attr.email, attr.fingerprint, Decision("rejected", error, payload=attr.entry()))
            )
        else:
            groups[attr.email.lower()].append(attr)
    return [EmailGroup(tuple(attrs)) for attrs in groups.values()], settled


def decide_by_email(group: EmailGroup, known: ByEmailKnown) -> Decision:
    """Rejected (no customer with the email, rejected before), unchanged (every customer with the
    email holds every value already: no call), or apply."""
    customers = known.holders.get(group.email.lower(), [])
    if not customers:
        error = f"no customer with email {group.email!r} in the warehouse"
        return Decision("rejected", error, payload=group.payload()["custom"])
    changed = known.changed.get(group.email.lower())
    if remembered := remembered_rejection(group, known.remembered, changed, depends="its customers"):
        return remembered
    if all(
        a.key in c["custom_attributes"] and values_equal(c["custom_attributes"][a.key], a.value, a.type)
        for a in group.attributes
        for c in customers
    ):
        return UNCHANGED
    return APPLY


# ---- creates ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatesKnown:
    """(data_source_uuid, external_id) -> uuid of customers the warehouse has, and past API rejections."""

    existing: Mapping[tuple[str, str], str]
    remembered: Remembered


def parse_creates(rows: list[dict]) -> tuple[list[NewCustomer], list[Settled]]:
    """Customers to create, and the rows settled: invalid, conflicting copies of one external_id
    (rejected), and extra identical copies (each one logged skip: created at most once)."""
    valid = []
    settled: list[Settled] = []
    for row in rows:
        new, rejected = _validate(
            row, parse_new_customer_row, str(row.get("external_id")), new_customer_fingerprint
        )
        if rejected:
            settled.append(rejected)
        else:
            valid.append(new)
    versions: dict[tuple[str, str], list[str]] = defaultdict(list)
    for new in valid:
        versions[(new.data_source_uuid, new.external_id)].append(new.fingerprint)
    kept: dict[tuple[str, str], NewCustomer] = {}
    for new in valid:
        ident = (new.data_source_uuid, new.external_id)
        name = f"external_id {new.external_id!r} in data source {new.data_source_uuid!r}"
        if len(set(versions[ident])) > 1:
            error = f"{name} appears in {len(versions[ident])} rows with different values; keep one"
            decision = Decision("rejected", error, payload=new.body)
        elif ident in kept:
            error = f"skipped: duplicate of another row in this run (same {name}, same values); created at most once"
            decision = Decision("unchanged", error, payload=new.body)
        else:
            kept[ident] = new
            continue
        settled.append(Settled(new.external_id, new.fingerprint, decision))
    return list(kept.values()), settled


def decide_create(new: NewCustomer, known: CreatesKnown) -> Decision:
    """Unchanged (the warehouse has the customer already: no call), rejected before, or apply."""
    uuid = known.existing.get((new.data_source_uuid, new.external_id))
    if uuid is not None:
        return Decision("unchanged", f"exists already as customer {uuid} (warehouse)")
    return remembered_rejection(new, known.remembered) or APPLY
