"""The one mapping of a ChartMogul customer entry to a `chartmogul.customers` row.

Rules (`SOURCES` lists every column with the entry keys it is read from, in order of preference):
- Every column is derived from the entry; the entry itself is kept verbatim in `raw`, so a field the API
  adds later is never an error and never lost.
- The mapping runs in two halves of one pass over `SOURCES`: Python (`prepare_entry`) validates each entry
  and types the integer and timestamp columns; SQL (`mapped_columns_sql`) derives the text and jsonb
  columns from `raw`, guarded by jsonb_typeof. Every writer of the table (the publish and the push's
  write-back, both in customers.py) goes through both halves, so a row is the same whoever wrote it.
- A field whose value cannot be coerced to its column type is stored as NULL and reported as a
  `FieldProblem` naming the customer, the field and what is wrong; the rest of the row is kept.
- An entry that is not an object, or has no usable `uuid`, cannot be stored (uuid is the key): it raises
  `RowRejected`, and the caller records it without sinking the other rows of the page.
- Postgres text and jsonb cannot hold NUL (U+0000) nor lone UTF-16 surrogates: both are replaced by
  U+FFFD (the Unicode replacement character) in `raw` (hence in every column), and reported as a problem.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from cm_pipeline.chartmogul.vocabulary import parse_timestamp
from cm_pipeline.warehouse.schema import CUSTOMER_DATA_COLUMNS

REPLACEMENT = "\ufffd"
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class Source:
    """Where a column comes from: its kind and the keys tried in order (under `attributes` if nested)."""

    column: str
    kind: str  # "text" | "integer" | "timestamp" | "array" | "object"
    keys: tuple[str, ...]
    nested: bool = False

    @property
    def label(self) -> str:
        return f"attributes.{self.keys[0]}" if self.nested else self.keys[0]


# The API spells some fields with hyphens; official clients (and some examples) use underscores, which
# are accepted as a fallback.
SOURCES: tuple[Source, ...] = (
    Source("id", "integer", ("id",)),
    Source("mrr", "integer", ("mrr",)),
    Source("arr", "integer", ("arr",)),
    Source("customer_since", "timestamp", ("customer-since", "customer_since")),
    Source("lead_created_at", "timestamp", ("lead_created_at", "lead-created-at")),
    Source("free_trial_started_at", "timestamp", ("free_trial_started_at", "free-trial-started-at")),
    *(
        Source(c, "text", (c,))
        for c in ("external_id", "data_source_uuid", "name", "email", "company", "status")
        + ("country", "state", "city", "zip", "currency", "owner")
    ),
    Source("currency_sign", "text", ("currency-sign", "currency_sign")),
    Source("billing_system_type", "text", ("billing-system-type", "billing_system_type")),
    Source("billing_system_url", "text", ("billing-system-url", "billing_system_url")),
    Source("chartmogul_url", "text", ("chartmogul-url", "chartmogul_url")),
    Source("website_url", "text", ("website_url", "website-url")),
    Source("external_ids", "array", ("external_ids",)),
    Source("data_source_uuids", "array", ("data_source_uuids",)),
    Source("address", "object", ("address",)),
    Source("tags", "array", ("tags",), nested=True),
    Source("custom_attributes", "object", ("custom",), nested=True),
    Source("stripe", "object", ("stripe",), nested=True),
)
# Columns Python types and stages (in this order); every other column is derived from `raw` in SQL.
TYPED_COLUMNS: tuple[str, ...] = tuple(s.column for s in SOURCES if s.kind in ("integer", "timestamp"))
_TYPED = tuple(s for s in SOURCES if s.column in TYPED_COLUMNS)
_CHECKED = tuple(s for s in SOURCES if s.column not in TYPED_COLUMNS)
_JSON_KINDS = {"array": (list, "an array"), "object": (dict, "an object")}


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


@dataclass
class PreparedEntry:
    """An entry ready for staging: its key, typed values (TYPED_COLUMNS order), raw JSON text, problems."""

    uuid: str
    typed: list[Any]
    raw: str
    problems: list[FieldProblem]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def clean_text(value: str) -> str:
    """`value` with NUL and lone surrogates replaced by U+FFFD (Postgres stores neither)."""
    return _BAD_CHARS.sub(REPLACEMENT, value)


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value


def _replace_nonfinite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _replace_nonfinite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_nonfinite(v) for v in value]
    return value


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dump_json(value: Any) -> tuple[str, bool]:
    """Compact JSON text Postgres jsonb accepts (NaN/Infinity become null), and whether characters had to
    be replaced."""
    try:
        text = _dump(value)
    except ValueError:  # NaN / Infinity somewhere (anything else fails again and propagates)
        value = _replace_nonfinite(value)
        text = _dump(value)
    if "\\u0000" in text or _BAD_CHARS.search(text):  # rare: look closer (may be a literal backslash-u)
        cleaned = _clean_json(value)
        return _dump(cleaned), cleaned != value
    return text, False


def parse_integer(value: Any) -> int | None:
    """An int from an integer, an integral float or an integral numeric string; None for None.

    Raises ValueError naming the problem (booleans, fractions, text, out of bigint range).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"is a boolean, not an integer: {_short(value)}")
    if isinstance(value, str):
        try:
            number = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise ValueError(f"is not a number: {_short(value)}") from None
        return parse_integer(number)
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"is not a whole number: {_short(value)}")
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"is not a number: {_short(value)}")
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"is out of the bigint range: {_short(value)}")
    return value


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


def _typed_value(uuid: str, entry: dict, source: Source, problems: list[FieldProblem]) -> Any:
    key, value = _pick(entry, source.keys)
    if source.kind == "integer" and (value is None or (value.__class__ is int and -(2**63) <= value < 2**63)):
        return value  # the common case, without a call
    try:
        return parse_integer(value) if source.kind == "integer" else parse_timestamp(value)
    except ValueError as exc:
        problems.append(FieldProblem(uuid, key, f"{exc}; stored NULL"))
        return None


def _check_type(uuid: str, entry: dict, attributes: dict | None, source: Source) -> FieldProblem | None:
    """A problem when the value of `source` is not of its column's kind (the SQL half stores NULL)."""
    key, value = _pick((attributes or {}) if source.nested else entry, source.keys)
    if value is None:
        return None
    label = f"attributes.{key}" if source.nested else key
    if source.kind == "text":
        if value.__class__ is str or (isinstance(value, str | int | float) and value.__class__ is not bool):
            return None
        return FieldProblem(uuid, label, f"is not text: {_short(value)}; stored NULL")
    expected, kind = _JSON_KINDS[source.kind]
    if isinstance(value, expected):
        return None
    return FieldProblem(uuid, label, f"is not {kind}: {_short(value)}; stored NULL")


# Per checked column: its keys, the value classes that need no closer look, and the source (see
# _check_type, which words the problem); a flat loop, as every entry of every page goes through it.
_FAST_CLASSES = {"text": (str, int, float), "array": (list,), "object": (dict,)}
_CHECK_PLAN = tuple((s.keys, s.nested, _FAST_CLASSES[s.kind], s) for s in _CHECKED)


def _checked_problems(uuid: str, entry: dict, attributes: dict | None) -> list[FieldProblem]:
    """The problems of the columns SQL derives (`_check_type` for each value not plainly of its kind)."""
    problems = []
    for keys, nested, fine, source in _CHECK_PLAN:
        container = attributes if nested else entry
        if not container:
            continue
        for key in keys:
            if key in container:
                value = container[key]
                break
        else:
            continue
        if value is None or value.__class__ in fine:
            continue
        problem = _check_type(uuid, entry, attributes, source)
        if problem is not None:
            problems.append(problem)
    return problems


def entry_bytes(entry: Any) -> bytes | None:
    """The UTF-8 text an entry is staged as (orjson: compact, key order kept, NaN -> null), or None when
    it needs `entry_text`'s slow path (lone surrogates, integers beyond 64 bits, odd keys, NUL)."""
    try:
        raw = orjson.dumps(entry)
    except (TypeError, ValueError):
        return None
    return None if b"\\u0000" in raw else raw


def entry_text(entry: dict, thorough: bool = False) -> tuple[str, bool]:
    """The text an entry is staged as (its md5 tells an unchanged one); whether NUL or lone surrogates
    were replaced in it."""
    if not thorough and (raw := entry_bytes(entry)) is not None:
        return raw.decode("utf-8"), False
    return dump_json(entry)


def _replaced_fields(entry: dict) -> list[str]:
    """Where an entry holds NUL or lone surrogates: top-level keys, and `attributes.<key>` inside it."""
    fields = []
    for key, value in entry.items():
        if key == "attributes" and isinstance(value, dict):
            fields += [f"attributes.{k}" for k, v in value.items() if _has_bad_chars(v) or _has_bad_chars(k)]
        elif _has_bad_chars(value) or _has_bad_chars(key):
            fields.append(key)
    return fields


def prepare_entry(entry: Any, thorough: bool = True) -> PreparedEntry:
    """Validate an API entry for staging: its uuid, typed values, raw text and problems.

    RowRejected when it has no usable uuid; bad values never raise: they become FieldProblems (the column
    is NULL, `raw` keeps the value). thorough=False skips the search for lone surrogates in `raw` (NUL is
    always handled): the bulk loader finds them for a whole page at once when encoding it, and only then
    prepares that page thoroughly.
    """
    uuid = entry_uuid(entry)
    problems: list[FieldProblem] = []
    typed = [_typed_value(uuid, entry, source, problems) for source in _TYPED]
    attributes = entry.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        problems.append(FieldProblem(uuid, "attributes", f"is not an object: {_short(attributes)}"))
        attributes = None
    problems += _checked_problems(uuid, entry, attributes)
    raw, replaced = entry_text(entry, thorough)
    if replaced:  # rare: say where
        problems += [
            FieldProblem(uuid, f, "contains NUL or lone surrogates; replaced by U+FFFD (also in raw)")
            for f in _replaced_fields(entry)
        ]
    return PreparedEntry(uuid, typed, raw, problems)


def prepare_written(entry: Any) -> PreparedEntry:
    """`prepare_entry` for an entry written on its own (the push's write-back): the same text the bulk
    loader stages for it (so the same md5), made thorough only if the fast text cannot be encoded."""
    prepared = prepare_entry(entry, thorough=False)
    try:
        prepared.raw.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate the fast path keeps: replace it, as the loader does
        prepared = prepare_entry(entry, thorough=True)
    return prepared


def text_md5(text: str | bytes) -> str:
    """md5 of an entry's staged text (or its UTF-8 bytes): what tells an unchanged entry from a changed one."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _has_bad_chars(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_BAD_CHARS.search(value))
    if isinstance(value, dict):
        return any(_has_bad_chars(k) or _has_bad_chars(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_bad_chars(v) for v in value)
    return False


def _sql_value(source: Source, raw: str) -> str:
    """The jsonb value of the first of the source's keys present (the same rule as `_pick`)."""
    base = f"({raw} -> 'attributes')" if source.nested else raw
    keys = source.keys
    expr = f"{base} -> '{keys[-1]}'"
    for key in reversed(keys[:-1]):
        expr = f"CASE WHEN {base} ? '{key}' THEN {base} -> '{key}' ELSE {expr} END"
    return expr


def mapped_columns_sql(alias: str) -> str:
    """SELECT list producing CUSTOMER_DATA_COLUMNS from a row `alias` (uuid, TYPED_COLUMNS, raw jsonb)."""
    by_column = {s.column: s for s in _CHECKED}
    exprs = []
    for column in CUSTOMER_DATA_COLUMNS:
        source = by_column.get(column)
        if source is None:  # uuid, raw and the typed columns are taken as they are
            exprs.append(f"{alias}.{column}")
            continue
        value = _sql_value(source, f"{alias}.raw")
        if source.kind == "text":
            kinds, value_sql = "('string', 'number')", f"({value}) #>> '{{}}'"
        else:
            kinds, value_sql = f"('{source.kind}')", value
        exprs.append(f"CASE WHEN jsonb_typeof({value}) IN {kinds} THEN {value_sql} END AS {column}")
    return ",\n    ".join(exprs)


# Bump when prepare_entry's validation changes; the SQL text is hashed in. Publish compares every mapped
# column (not just raw) once after it changes, so existing rows pick up the new mapping.
_PREPARE_VERSION = "1"
MAPPING_VERSION = hashlib.sha1(
    f"{_PREPARE_VERSION}|{mapped_columns_sql('l')}".encode(), usedforsecurity=False
).hexdigest()[:12]
