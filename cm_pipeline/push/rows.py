"""Turn one row of each outbound relation into a validated, typed request, with its fingerprint (pure).

Each row is parsed here once per run. A row that cannot be sent raises `RowRejected` with every
problem it has, each naming the field (or attribute key) and the value. The fingerprint of a row is
computed from its raw desired values, so a row rejected once is recognised when it comes back
unchanged. Every request has a `target` (what push_log names) and a `fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from cm_pipeline.chartmogul.vocabulary import timestamp_or_none
from cm_pipeline.push.coerce import (
    CoercionError,
    coerce_attribute,
    coerce_value,
    format_timestamp,
    infer_type,
    normalize_type,
    validate_key,
)
from cm_pipeline.push.merge import Changes

EMAIL_COLUMNS = ("email", "key", "type", "value", "source")
NEW_CUSTOMER_TEXT_FIELDS = (
    "data_source_uuid",
    "external_id",
    "name",
    "email",
    "company",
    "country",
    "state",
    "city",
    "zip",
    "owner",
    "website_url",
)
NEW_CUSTOMER_TIME_FIELDS = ("lead_created_at", "free_trial_started_at")
NEW_CUSTOMER_COLUMNS = (
    NEW_CUSTOMER_TEXT_FIELDS + NEW_CUSTOMER_TIME_FIELDS + ("primary_contact", "tags", "custom")
)


class RowRejected(ValueError):
    """A row that will not be sent; `problems` lists each reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def canonical_json(value: Any) -> str:
    """Stable JSON text (sorted keys, no spaces) used for fingerprints and payload logging."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable, ensure_ascii=False)


def fingerprint(values: Any) -> str:
    """sha256 of the canonical JSON of a row's desired values."""
    return hashlib.sha256(canonical_json(values).encode("utf-8")).hexdigest()


def _maybe_json(value: Any) -> Any:
    """jsonb arrives decoded; a text column holding JSON is decoded too."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _tag_list(field: str, value: Any, problems: list[str]) -> tuple[str, ...]:
    value = _maybe_json(value)
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(f"{field}: value {value!r} is not a JSON array of tags")
        return ()
    tags: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or not tag.strip():
            problems.append(f"{field}: tag {tag!r} is not a non-empty string")
        elif tag not in tags:
            tags.append(tag)
    return tuple(tags)


def _object(field: str, value: Any, problems: list[str]) -> dict:
    value = _maybe_json(value)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{field}: value {value!r} is not a JSON object")
        return {}
    return value


@dataclass(frozen=True)
class UpdateRequest:
    """A validated row of chartmogul_updates."""

    customer_uuid: str
    changes: Changes
    fingerprint: str

    @property
    def target(self) -> str:
        return self.customer_uuid


def update_fingerprint(row: Mapping[str, Any]) -> str:
    """Fingerprint of an update row's desired values (tag order does not matter)."""

    def tags(v: Any) -> Any:
        v = _maybe_json(v)
        return sorted({t for t in v if isinstance(t, str)}) if isinstance(v, list) else v

    return fingerprint(
        {
            "customer_uuid": row.get("customer_uuid"),
            "add_tags": tags(row.get("add_tags")),
            "remove_tags": tags(row.get("remove_tags")),
            "custom_attributes": _maybe_json(row.get("custom_attributes")),
            "attribute_types": _maybe_json(row.get("attribute_types")),
        }
    )


def parse_update_row(row: Mapping[str, Any]) -> UpdateRequest:
    """Validate and type one update row; raises RowRejected naming each bad field, key and value."""
    problems: list[str] = []
    uuid = row.get("customer_uuid")
    if not isinstance(uuid, str) or not uuid.strip():
        problems.append(f"customer_uuid: value {uuid!r} is not a customer uuid")
    add = _tag_list("add_tags", row.get("add_tags"), problems)
    remove = _tag_list("remove_tags", row.get("remove_tags"), problems)
    custom = _object("custom_attributes", row.get("custom_attributes"), problems)
    declared = _object("attribute_types", row.get("attribute_types"), problems)
    set_custom: dict[str, Any] = {}
    types: dict[str, str] = {}
    removals: list[str] = []
    for key, value in custom.items():
        try:
            validate_key(key)
            if value is None:
                removals.append(key)
                continue
            if declared.get(key) is None:
                # Undeclared: sent as given (the account's type for an existing key applies); the
                # inferred type is used only if the key has to be created.
                typed, type_name = value, infer_type(key, value)
                if isinstance(value, str):
                    coerce_value(key, value, "String")  # length check
            else:
                typed, type_name = coerce_attribute(key, value, declared[key])
        except CoercionError as exc:
            problems.append(str(exc))
            continue
        set_custom[key], types[key] = typed, type_name
    for key, type_name in declared.items():
        if key not in custom:
            try:
                normalize_type(str(key), type_name)
            except CoercionError as exc:
                problems.append(f"attribute_types: {exc}")
    if problems:
        raise RowRejected(problems)
    changes = Changes(
        add_tags=add,
        remove_tags=remove,
        set_custom=set_custom,
        remove_custom=tuple(removals),
        types=types,
        declared={k: types[k] for k in set_custom if declared.get(k) is not None},
    )
    return UpdateRequest(customer_uuid=uuid.strip(), changes=changes, fingerprint=update_fingerprint(row))


@dataclass(frozen=True)
class EmailAttribute:
    """A validated row of chartmogul_by_email."""

    email: str
    key: str
    type: str
    value: Any
    source: str | None
    fingerprint: str

    def entry(self) -> dict:
        """This attribute as an add-custom-attributes `custom` entry."""
        out = {"type": self.type, "key": self.key, "value": self.value}
        if self.source:
            out["source"] = self.source
        return out


@dataclass(frozen=True)
class EmailGroup:
    """The valid rows of one email (matched case-insensitively): one add-by-email POST."""

    attributes: tuple[EmailAttribute, ...]

    @property
    def email(self) -> str:
        return self.attributes[0].email

    @property
    def target(self) -> str:
        return self.email

    @property
    def fingerprint(self) -> str:
        """Its rows' fingerprints, order-independent."""
        return fingerprint(sorted(a.fingerprint for a in self.attributes))

    def payload(self) -> dict:
        """The POST body: {email, custom: [{type, key, value[, source]}]}."""
        return {"email": self.email, "custom": [a.entry() for a in self.attributes]}


def email_fingerprint(row: Mapping[str, Any]) -> str:
    """Fingerprint of a by-email row's desired values."""
    return fingerprint({c: _maybe_json(row.get(c)) for c in EMAIL_COLUMNS})


def parse_email_row(row: Mapping[str, Any]) -> EmailAttribute:
    """Validate and type one by-email row; raises RowRejected naming each bad field and value."""
    problems: list[str] = []
    email = row.get("email")
    if not isinstance(email, str) or "@" not in email or not email.strip():
        problems.append(f"email: value {email!r} is not an email address")
    source = row.get("source")
    if source is not None and not isinstance(source, str):
        problems.append(f"source: value {source!r} is not a string")
    key = row.get("key")
    typed = type_name = None
    if row.get("value") is None:
        problems.append(f"custom attribute {key!r}: value None is null; by-email rows cannot remove a key")
    else:
        try:
            typed, type_name = coerce_attribute(key, row.get("value"), row.get("type"))
        except CoercionError as exc:
            problems.append(str(exc))
    if problems:
        raise RowRejected(problems)
    return EmailAttribute(
        email=email.strip(),
        key=key,
        type=type_name,
        value=typed,
        source=source or None,
        fingerprint=email_fingerprint(row),
    )


@dataclass(frozen=True)
class NewCustomer:
    """A validated row of chartmogul_creates: the create body and its identity."""

    data_source_uuid: str
    external_id: str
    body: dict
    fingerprint: str

    @property
    def target(self) -> str:
        return self.external_id


def new_customer_fingerprint(row: Mapping[str, Any]) -> str:
    """Fingerprint of a new-customer row's desired values."""
    return fingerprint({c: _maybe_json(row.get(c)) for c in NEW_CUSTOMER_COLUMNS})


def _timestamp_field(field: str, value: Any, problems: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_timestamp(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    moment = timestamp_or_none(value) if isinstance(value, str) else None
    if moment is None:
        problems.append(f"{field}: value {value!r} is not an ISO 8601 timestamp")
        return None
    if moment > datetime.now(timezone.utc):
        problems.append(f"{field}: value {value!r} is in the future; it must be in the past")
        return None
    return format_timestamp(moment)


def _custom_entries(value: Any, problems: list[str]) -> list[dict]:
    """The create body's `attributes.custom`: each {type, key, value[, source]} validated and typed."""
    custom = _maybe_json(value)
    if custom is None:
        return []
    if not isinstance(custom, list):
        problems.append(f"custom: value {custom!r} is not a JSON array of {{type, key, value, source}}")
        return []
    entries = []
    for item in custom:
        if not isinstance(item, dict):
            problems.append(f"custom: entry {item!r} is not an object with type, key and value")
            continue
        try:
            typed, type_name = coerce_attribute(item.get("key"), item.get("value"), item.get("type"))
        except CoercionError as exc:
            problems.append(f"custom: {exc}")
            continue
        entry = {"type": type_name, "key": item["key"], "value": typed}
        if item.get("source"):
            entry["source"] = str(item["source"])
        entries.append(entry)
    return entries


def parse_new_customer_row(row: Mapping[str, Any]) -> NewCustomer:
    """Validate one new-customer row into a create body; raises RowRejected naming each bad field."""
    problems: list[str] = []
    body: dict[str, Any] = {}
    for field in NEW_CUSTOMER_TEXT_FIELDS:
        value = row.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            if field in ("data_source_uuid", "external_id"):
                problems.append(f"{field}: value {value!r} is missing; it is required")
            continue
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            problems.append(f"{field}: value {value!r} is not a string")
            continue
        body[field] = str(value).strip()
    for field in NEW_CUSTOMER_TIME_FIELDS:
        stamp = _timestamp_field(field, row.get(field), problems)
        if stamp is not None:
            body[field] = stamp
    contact = _maybe_json(row.get("primary_contact"))
    if contact is not None:
        if isinstance(contact, dict):
            body["primary_contact"] = contact
        else:
            problems.append(f"primary_contact: value {contact!r} is not a JSON object")
    attributes: dict[str, Any] = {}
    tags = _tag_list("tags", row.get("tags"), problems)
    if tags:
        attributes["tags"] = list(tags)
    entries = _custom_entries(row.get("custom"), problems)
    if entries:
        attributes["custom"] = entries
    if attributes:
        body["attributes"] = attributes
    if problems:
        raise RowRejected(problems)
    return NewCustomer(
        data_source_uuid=body["data_source_uuid"],
        external_id=body["external_id"],
        body=body,
        fingerprint=new_customer_fingerprint(row),
    )
