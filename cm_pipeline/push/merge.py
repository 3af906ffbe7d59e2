"""Merge desired tag/attribute changes onto a customer's current state, and compare states (pure).

PATCH replaces all tags and all custom attributes, so what is sent is always the whole merged state:
tags = current ∪ add − remove (current order kept, additions appended), custom = current with the
updates applied (a removal drops the key). Whatever a row does not mention is carried over unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from cm_pipeline.chartmogul.vocabulary import FALSE_FORMS, TRUE_FORMS, timestamp_or_none
from cm_pipeline.push.coerce import coerce_value


@dataclass(frozen=True)
class Changes:
    """What one row asks for: tags to add/remove, typed values to set, keys to remove."""

    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    set_custom: Mapping[str, Any] = field(default_factory=dict)
    remove_custom: tuple[str, ...] = ()
    types: Mapping[str, str] = field(default_factory=dict)  # declared or inferred type per set key
    declared: Mapping[str, str] = field(default_factory=dict)  # only the types the row declared


def merge_tags(current: Iterable[str] | None, add: Iterable[str], remove: Iterable[str]) -> list[str]:
    """current ∪ add − remove, keeping current order and appending new tags in the order given."""
    removed = set(remove)
    out: list[str] = []
    seen: set[str] = set()
    for tag in list(current or []) + list(add):
        if tag in removed or tag in seen:
            continue
        seen.add(tag)
        out.append(tag)
    return out


def merge_custom(current: Mapping[str, Any] | None, changes: Changes) -> dict[str, Any]:
    """The current attributes with the row's values set and its removals dropped; others unchanged."""
    out = dict(current or {})
    for key in changes.remove_custom:
        out.pop(key, None)
    out.update(changes.set_custom)
    return out


def merge_state(
    tags: Iterable[str] | None, custom: Mapping[str, Any] | None, changes: Changes
) -> tuple[list[str], dict[str, Any]]:
    """(desired tags, desired custom attributes) for a customer currently holding `tags` and `custom`."""
    return merge_tags(tags, changes.add_tags, changes.remove_tags), merge_custom(custom, changes)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _as_decimal(value: Any) -> Decimal | None:
    if _is_number(value):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.strip() in TRUE_FORMS:
            return True
        if value.strip() in FALSE_FORMS:
            return False
    if _is_number(value) and value in (0, 1):
        return bool(value)
    return None


def values_equal(a: Any, b: Any, type_name: str | None = None) -> bool:
    """Equality of two attribute values as ChartMogul would store them.

    25 == 25.0 == "25"; true == "true" == "t". Two strings compare as instants (whatever their zone
    or precision) only when the attribute's type is Timestamp, or both sides are datetimes: a String
    attribute going from "2024-01-01" to "2024-01-01T00:00:00Z" is a change. Anything else compares
    exactly.
    """
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        left, right = _as_bool(a), _as_bool(b)
        return left is not None and left == right
    if _is_number(a) or _is_number(b):
        left, right = _as_decimal(a), _as_decimal(b)
        return left is not None and right is not None and left == right
    if isinstance(a, (str, datetime)) and isinstance(b, (str, datetime)):
        if a == b:
            return True
        both_typed = isinstance(a, datetime) and isinstance(b, datetime)
        if type_name != "Timestamp" and not both_typed:
            return False
        left = a if isinstance(a, datetime) else timestamp_or_none(a)
        right = b if isinstance(b, datetime) else timestamp_or_none(b)
        return left is not None and right is not None and left == right
    return a == b


def tags_equal(a: Iterable[str] | None, b: Iterable[str] | None) -> bool:
    """Tag lists compared as sets: order and repeats do not matter."""
    return set(a or []) == set(b or [])


def custom_equal(
    a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, types: Mapping[str, str] | None = None
) -> bool:
    """Same keys, and every value equal by `values_equal` under its type in `types` (if any)."""
    a, b, types = a or {}, b or {}, types or {}
    return a.keys() == b.keys() and all(values_equal(a[k], b[k], types.get(k)) for k in a)


def state_equal(
    tags_a: Iterable[str] | None,
    custom_a: Mapping[str, Any] | None,
    tags_b: Iterable[str] | None,
    custom_b: Mapping[str, Any] | None,
    types: Mapping[str, str] | None = None,
) -> bool:
    """Whether two (tags, custom attributes) states are the same for ChartMogul (`types`: key to type)."""
    return tags_equal(tags_a, tags_b) and custom_equal(custom_a, custom_b, types)


def patch_body(tags: Iterable[str] | None, custom: Mapping[str, Any] | None, changes: Changes) -> dict | None:
    """The PATCH body holding the whole merged state, {attributes: {tags, custom}}, for a customer
    currently holding `tags` and `custom`; None when it already matches (timestamps as instants if
    declared). The one comparison of a row with a customer's state before a write."""
    want_tags, want_custom = merge_state(tags, custom, changes)
    if state_equal(tags, custom, want_tags, want_custom, changes.declared):
        return None
    return {"attributes": {"tags": want_tags, "custom": want_custom}}


def needs_change(tags: Iterable[str] | None, custom: Mapping[str, Any] | None, changes: Changes) -> bool:
    """Whether applying `changes` to this state would change it."""
    return patch_body(tags, custom, changes) is not None


def stored_types(changes: Changes, sent: Mapping[str, Any]) -> dict[str, str]:
    """Types to check a PATCH answer with: the declared ones, plus Timestamp for an undeclared key
    whose sent value is a timestamp string.

    A String attribute is stored verbatim, so an answer holding the same instant in another form
    proves the account's key is a Timestamp that ChartMogul normalised: that is not a failed write.
    """
    out = dict(changes.declared)
    for key in changes.set_custom:
        if key not in out and isinstance(sent.get(key), str) and timestamp_or_none(sent[key]) is not None:
            out[key] = "Timestamp"
    return out


def missing_keys(changes: Changes, custom: Mapping[str, Any], known_keys: Iterable[str]) -> list[str]:
    """Keys the row sets that the customer does not hold and the account is not known to have, sorted:
    those must be created (add-by-email POST) before a PATCH can set them."""
    known = known_keys if isinstance(known_keys, (set, frozenset)) else set(known_keys)
    return sorted(k for k in changes.set_custom if k not in custom and k not in known)


def attribute_entries(changes: Changes, keys: Iterable[str], source: str | None = None) -> list[dict]:
    """The add-custom-attributes `custom` list for `keys`: [{type, key, value[, source]}]."""
    out = []
    for key in keys:
        value = coerce_value(key, changes.set_custom[key], changes.types[key])  # e.g. timestamps normalised
        entry = {"type": changes.types[key], "key": key, "value": value}
        if source:
            entry["source"] = source
        out.append(entry)
    return out
