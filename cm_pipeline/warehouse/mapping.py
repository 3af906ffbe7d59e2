"""Pure mapping of a ChartMogul customer entry to a `chartmogul.customers` row, and COPY text encoding.

Rules:
- Every column is derived from the entry; the entry itself is kept verbatim in `raw`, so a field the API
  adds later is never an error and never lost.
- Split for speed: Python validates each entry (uuid, the integer and timestamp fields, the type of every
  other field) and stages uuid + typed values + raw JSON with one COPY; SQL derives the text and jsonb
  columns from `raw` at publish time (`mapped_columns_sql`), with the same source-key rules.
- A field whose value cannot be coerced to its column type is stored as NULL and reported as a
  `FieldProblem` naming the customer, the field and what is wrong; the rest of the row is kept.
- An entry that is not an object, or has no usable `uuid`, cannot be stored (uuid is the key): it raises
  `RowRejected`, and the caller records it without sinking the other rows of the page.
- Postgres text and jsonb cannot hold NUL (U+0000) nor lone UTF-16 surrogates: both are replaced by
  U+FFFD (the Unicode replacement character) in `raw` (hence in every column), and reported as a problem.
  Everything else (quotes, backslashes, tabs, newlines, SQL metacharacters, any Unicode) round-trips.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from cm_pipeline.chartmogul.vocabulary import parse_timestamp
from cm_pipeline.warehouse.schema import CUSTOMER_DATA_COLUMNS

REPLACEMENT = "\ufffd"
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")

# Column -> keys tried in order in the entry. The API spells some fields with hyphens; official clients
# (and some examples) use underscores, which are accepted as a fallback.
TEXT_SOURCES: dict[str, tuple[str, ...]] = {
    "uuid": ("uuid",),
    "external_id": ("external_id",),
    "data_source_uuid": ("data_source_uuid",),
    "name": ("name",),
    "email": ("email",),
    "company": ("company",),
    "status": ("status",),
    "country": ("country",),
    "state": ("state",),
    "city": ("city",),
    "zip": ("zip",),
    "currency": ("currency",),
    "currency_sign": ("currency-sign", "currency_sign"),
    "billing_system_type": ("billing-system-type", "billing_system_type"),
    "billing_system_url": ("billing-system-url", "billing_system_url"),
    "chartmogul_url": ("chartmogul-url", "chartmogul_url"),
    "owner": ("owner",),
    "website_url": ("website_url", "website-url"),
}
TIMESTAMP_SOURCES: dict[str, tuple[str, ...]] = {
    "customer_since": ("customer-since", "customer_since"),
    "lead_created_at": ("lead_created_at", "lead-created-at"),
    "free_trial_started_at": ("free_trial_started_at", "free-trial-started-at"),
}
INTEGER_SOURCES: dict[str, tuple[str, ...]] = {"id": ("id",), "mrr": ("mrr",), "arr": ("arr",)}
# jsonb columns: (where, key, expected python type). where "top" = the entry, "attributes" = entry.attributes
JSON_SOURCES: dict[str, tuple[str, str, type]] = {
    "external_ids": ("top", "external_ids", list),
    "data_source_uuids": ("top", "data_source_uuids", list),
    "address": ("top", "address", dict),
    "tags": ("attributes", "tags", list),
    "custom_attributes": ("attributes", "custom", dict),
    "stripe": ("attributes", "stripe", dict),
}


class RowRejected(ValueError):
    """The entry cannot be stored at all (not an object, or no usable uuid)."""


@dataclass(frozen=True)
class FieldProblem:
    """A value that could not be stored as its column type; the column is NULL, `raw` keeps the value."""

    uuid: str
    field: str
    problem: str

    def __str__(self) -> str:
        return f"customer {self.uuid}: field {self.field!r} {self.problem}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def clean_text(value: str) -> str:
    """`value` with NUL and lone surrogates replaced by U+FFFD (Postgres stores neither)."""
    return _BAD_CHARS.sub(REPLACEMENT, value)


def _clean_json(value: Any) -> Any:
    """A copy of a JSON value with every string (keys included) passed through `clean_text`."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dump_json(value: Any) -> tuple[str, bool]:
    """Compact JSON text Postgres jsonb accepts, and whether characters had to be replaced.

    NaN/Infinity (not JSON) are replaced by null.
    """
    try:
        text = _dump(value)
    except ValueError:  # NaN / Infinity somewhere (anything else fails again and propagates)
        value = _replace_nonfinite(value)
        text = _dump(value)
    if "\\u0000" in text or _BAD_CHARS.search(text):  # rare: look closer (may be a literal backslash-u)
        cleaned = _clean_json(value)
        return _dump(cleaned), cleaned != value
    return text, False


def _replace_nonfinite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _replace_nonfinite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_nonfinite(v) for v in value]
    return value


def parse_integer(value: Any) -> int | None:
    """An int from an integer, an integral float or an integral numeric string; None for None.

    Raises ValueError naming the problem (booleans, fractions, text, out of bigint range).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"is a boolean, not an integer: {_short(value)}")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"is not a whole number: {_short(value)}")
        result = int(value)
    elif isinstance(value, str):
        try:
            number = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise ValueError(f"is not a number: {_short(value)}") from None
        return parse_integer(number)
    else:
        raise ValueError(f"is not a number: {_short(value)}")
    if not -(2**63) <= result < 2**63:
        raise ValueError(f"is out of the bigint range: {_short(value)}")
    return result


def _pick(entry: dict, keys: tuple[str, ...]) -> tuple[str, Any]:
    for key in keys:
        if key in entry:
            return key, entry[key]
    return keys[0], None


def entry_uuid(entry: Any) -> str:
    """The entry's uuid, or RowRejected naming the problem."""
    if not isinstance(entry, dict):
        raise RowRejected(f"entry is not a JSON object: {_short(entry)}")
    value = entry.get("uuid")
    if not isinstance(value, str) or not value.strip():
        raise RowRejected(f"entry has no usable 'uuid' (got {_short(value)}): cannot be keyed")
    if _BAD_CHARS.search(value):
        raise RowRejected(f"entry 'uuid' contains NUL or invalid characters: {_short(value)}")
    return value


def map_customer(entry: Any) -> tuple[dict[str, Any], list[FieldProblem]]:
    """Column name -> value for every CUSTOMER_DATA_COLUMNS column, plus the problems met.

    The single-row mapping (used where one customer is written, e.g. after a push); the bulk path stages
    `prepare_entry` and maps with `mapped_columns_sql`, and tests hold the two to identical rows.

    Values: str for text, int for bigint, aware datetime for timestamptz, JSON text for jsonb.
    """
    uuid = entry_uuid(entry)
    problems: list[FieldProblem] = []
    row: dict[str, Any] = {}

    for column, keys in TEXT_SOURCES.items():
        key, value = _pick(entry, keys)
        if value is None or isinstance(value, str):
            pass
        elif isinstance(value, (bool, dict, list)):
            problems.append(FieldProblem(uuid, key, f"is not text: {_short(value)}; stored NULL"))
            value = None
        else:  # numbers: their text is unambiguous
            value = str(value)
        if value is not None and _BAD_CHARS.search(value):
            problems.append(FieldProblem(uuid, key, "contains NUL or lone surrogates; replaced by U+FFFD"))
            value = clean_text(value)
        row[column] = value

    for column, keys in TIMESTAMP_SOURCES.items():
        key, value = _pick(entry, keys)
        try:
            row[column] = parse_timestamp(value)
        except ValueError as exc:
            problems.append(FieldProblem(uuid, key, f"{exc}; stored NULL"))
            row[column] = None

    for column, keys in INTEGER_SOURCES.items():
        key, value = _pick(entry, keys)
        try:
            row[column] = parse_integer(value)
        except ValueError as exc:
            problems.append(FieldProblem(uuid, key, f"{exc}; stored NULL"))
            row[column] = None

    attributes = entry.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        problems.append(FieldProblem(uuid, "attributes", f"is not an object: {_short(attributes)}"))
        attributes = None
    for column, (where, key, expected) in JSON_SOURCES.items():
        source = entry if where == "top" else (attributes or {})
        value = source.get(key)
        label = key if where == "top" else f"attributes.{key}"
        if value is not None and not isinstance(value, expected):
            kind = "an array" if expected is list else "an object"
            problems.append(FieldProblem(uuid, label, f"is not {kind}: {_short(value)}; stored NULL"))
            value = None
        if value is None:
            row[column] = None
        else:
            row[column], replaced = dump_json(value)
            if replaced:
                problems.append(
                    FieldProblem(uuid, label, "contains NUL or lone surrogates; replaced by U+FFFD")
                )

    row["raw"], _ = dump_json(entry)
    return row, problems


# Columns whose values Python validates and stages as typed columns; every other column is extracted from
# `raw` by SQL at publish time (`mapped_columns_sql`), guarded by jsonb_typeof so a wrong type is NULL.
TYPED_COLUMNS: tuple[str, ...] = (
    "id",
    "mrr",
    "arr",
    "customer_since",
    "lead_created_at",
    "free_trial_started_at",
)
_TEXT_OK = (str, int, float)  # numbers are stored as their text


@dataclass
class PreparedEntry:
    """An entry ready for staging: its key, typed values (TYPED_COLUMNS order), raw JSON text, problems."""

    uuid: str
    typed: list[Any]
    raw: str
    problems: list[FieldProblem]


_SINGLE_TEXT_KEYS = tuple(keys[0] for keys in TEXT_SOURCES.values() if len(keys) == 1)
_MULTI_TEXT_KEYS = tuple(keys for keys in TEXT_SOURCES.values() if len(keys) > 1)


def prepare_entry(entry: Any, thorough: bool = True) -> PreparedEntry:
    """Validate an API entry for staging; RowRejected when it has no usable uuid.

    Bad values never raise: they become FieldProblems (the column will be NULL, `raw` keeps the value).
    thorough=False skips the search for lone surrogates in `raw` (NUL is always handled): the bulk loader
    finds them for a whole page at once when encoding it, and only then prepares that page thoroughly.
    """
    uuid = entry_uuid(entry)
    problems: list[FieldProblem] = []
    typed: list[Any] = []
    for column in ("id", "mrr", "arr"):
        key, value = _pick(entry, INTEGER_SOURCES[column])
        if value is None or (value.__class__ is int and -(2**63) <= value < 2**63):
            typed.append(value)
            continue
        try:
            typed.append(parse_integer(value))
        except ValueError as exc:
            problems.append(FieldProblem(uuid, key, f"{exc}; stored NULL"))
            typed.append(None)
    for column in ("customer_since", "lead_created_at", "free_trial_started_at"):
        key, value = _pick(entry, TIMESTAMP_SOURCES[column])
        try:
            typed.append(parse_timestamp(value))
        except ValueError as exc:
            problems.append(FieldProblem(uuid, key, f"{exc}; stored NULL"))
            typed.append(None)
    get = entry.get
    for key in _SINGLE_TEXT_KEYS:
        value = get(key)
        if value is not None and value.__class__ is not str and _not_text(value):
            problems.append(FieldProblem(uuid, key, f"is not text: {_short(value)}; stored NULL"))
    for keys in _MULTI_TEXT_KEYS:
        key, value = _pick(entry, keys)
        if value is not None and value.__class__ is not str and _not_text(value):
            problems.append(FieldProblem(uuid, key, f"is not text: {_short(value)}; stored NULL"))
    attributes = get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        problems.append(FieldProblem(uuid, "attributes", f"is not an object: {_short(attributes)}"))
        attributes = None
    for where, key, expected in JSON_SOURCES.values():
        value = (entry if where == "top" else (attributes or {})).get(key)
        if value is not None and not isinstance(value, expected):
            label = key if where == "top" else f"attributes.{key}"
            kind = "an array" if expected is list else "an object"
            problems.append(FieldProblem(uuid, label, f"is not {kind}: {_short(value)}; stored NULL"))
    raw, replaced = None, False
    if not thorough:
        try:  # orjson: compact, key order kept, several times faster than json.dumps (NaN -> null)
            raw = orjson.dumps(entry).decode("utf-8")
        except (TypeError, ValueError):  # lone surrogates, integers beyond 64 bits, odd keys: json below
            raw = None
        if raw is not None and "\\u0000" in raw:
            raw = None
    if raw is None:
        raw, replaced = dump_json(entry)
    if replaced:  # rare: say where
        for key, value in entry.items():
            if _has_bad_chars(value) or _has_bad_chars(key):
                problems.append(
                    FieldProblem(
                        uuid, key, "contains NUL or lone surrogates; replaced by U+FFFD (also in raw)"
                    )
                )
    return PreparedEntry(uuid, typed, raw, problems)


def _not_text(value: Any) -> bool:
    return not isinstance(value, _TEXT_OK) or value.__class__ is bool


def _has_bad_chars(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_BAD_CHARS.search(value))
    if isinstance(value, dict):
        return any(_has_bad_chars(k) or _has_bad_chars(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_bad_chars(v) for v in value)
    return False


def _sql_value(keys: tuple[str, ...], base: str) -> str:
    """The jsonb value of the first of `keys` present in `base` (same rule as `_pick`)."""
    expr = f"{base} -> '{keys[-1]}'"
    for key in reversed(keys[:-1]):
        expr = f"CASE WHEN {base} ? '{key}' THEN {base} -> '{key}' ELSE {expr} END"
    return expr


def mapped_columns_sql(alias: str) -> str:
    """SELECT list producing CUSTOMER_DATA_COLUMNS from a staging row `alias` (uuid, TYPED_COLUMNS, raw)."""
    raw = f"{alias}.raw"
    exprs = []
    for column in CUSTOMER_DATA_COLUMNS:
        if column == "uuid" or column == "raw" or column in TYPED_COLUMNS:
            exprs.append(f"{alias}.{column}")
        elif column in TEXT_SOURCES:
            value = _sql_value(TEXT_SOURCES[column], raw)
            exprs.append(
                f"CASE WHEN jsonb_typeof({value}) IN ('string', 'number') THEN ({value}) #>> '{{}}' END AS {column}"
            )
        else:
            where, key, expected = JSON_SOURCES[column]
            value = f"{raw} -> '{key}'" if where == "top" else f"{raw} -> 'attributes' -> '{key}'"
            kind = "array" if expected is list else "object"
            exprs.append(f"CASE WHEN jsonb_typeof({value}) = '{kind}' THEN {value} END AS {column}")
    return ",\n    ".join(exprs)


# ---- COPY text format ---------------------------------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")


def copy_field(value: Any) -> str:
    """One value in Postgres COPY text format (NULL is \\N)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE.search(value) else value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def copy_line(values: list | tuple) -> str:
    """One COPY text line (with its newline) for `values`."""
    return "\t".join([copy_field(v) for v in values]) + "\n"


def customer_copy_values(row: dict[str, Any]) -> list[Any]:
    """The row's values in CUSTOMER_DATA_COLUMNS order."""
    return [row[c] for c in CUSTOMER_DATA_COLUMNS]


# Bump when prepare_entry's validation changes; the SQL text is hashed in. Publish compares every mapped
# column (not just raw) once after it changes, so existing rows pick up the new mapping.
_PREPARE_VERSION = "1"
MAPPING_VERSION = hashlib.sha1(
    f"{_PREPARE_VERSION}|{mapped_columns_sql('l')}".encode(), usedforsecurity=False
).hexdigest()[:12]
