"""Pure validators of custom attributes and tags (add-custom-attributes-by-email.txt, update-customer.txt).

The API's vocabulary (types, key characters, String limit, Boolean forms) comes from
cm_pipeline.chartmogul.vocabulary; what each type accepts here is the sandbox's reading of the pages (see
the package docstring). Failures raise responses.ApiFailure naming the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from cm_pipeline.chartmogul.vocabulary import (
    ATTRIBUTE_KEY_RE,
    CUSTOM_ATTRIBUTE_TYPES,
    FALSE_FORMS,
    MAX_STRING,
    TRUE_FORMS,
)
from cm_pipeline.sandbox.responses import ApiFailure, bad_param, field_errors, missing
from cm_pipeline.sandbox.validation import parse_timestamp

BOOLEAN_STRINGS = {**dict.fromkeys(TRUE_FORMS, True), **dict.fromkeys(FALSE_FORMS, False)}
# add-custom-attributes-by-email.txt: Integer "accepts only numeric characters" (ASCII digits, a leading
# minus for negatives); Decimal "accepts floating point numbers". Used with fullmatch (no trailing newline).
_INT_RE = re.compile(r"-?[0-9]+")
_DECIMAL_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")

Item = tuple[str, str, Any]  # (key, type, stored value)


def format_attribute_timestamp(dt: datetime) -> str:
    """A Timestamp custom attribute's response form, as list/retrieve-customer.txt show it: UTC
    "2023-09-08 00:00:00"; a non-zero fraction of a second is kept ("2023-09-08 00:00:00.25")."""
    dt = dt.astimezone(timezone.utc)
    text = dt.strftime("%Y-%m-%d %H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text


def validate_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise field_errors([("key", "Custom attribute key must be a non-empty string")])
    if not ATTRIBUTE_KEY_RE.match(key):
        raise field_errors(
            [(key, f"Custom attribute key {key!r} may contain only alphanumeric characters and underscores")]
        )
    return key


# ---------------------------------------------------------------- values, one coercer a type


def _fail(key: str, attr_type: str, value: Any, why: str) -> ApiFailure:
    return field_errors([(key, f"Custom attribute {key!r} ({attr_type}): {why}, got {value!r}")])


def _string(value: Any, key: str) -> str:
    # The pages' String values are all JSON strings; a number or boolean is not silently stringified.
    if not isinstance(value, str):
        raise _fail(key, "String", value, f"expected a string, not a JSON {_json_kind(value)}")
    if len(value) > MAX_STRING:
        raise field_errors(
            [(key, f"Custom attribute {key!r} (String): at most {MAX_STRING} characters, got {len(value)}")]
        )
    return value


def _integer(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise _fail(key, "Integer", value, "expected an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value):
        return int(value)
    raise _fail(
        key, "Integer", value, "expected an integer (numeric characters 0-9 only, optionally a leading '-')"
    )


def _decimal(value: Any, key: str) -> int | float:
    if isinstance(value, bool):
        raise _fail(key, "Decimal", value, "expected a decimal number, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(key, "Decimal", value, "expected a finite decimal number")
        return value
    if isinstance(value, str) and _DECIMAL_RE.fullmatch(value):
        num = float(value)
        if not math.isfinite(num):
            raise _fail(key, "Decimal", value, "expected a decimal number within range")
        return num
    raise _fail(
        key, "Decimal", value, "expected a decimal number (a JSON number or a string such as 12.5 or -1e3)"
    )


def _timestamp(value: Any, key: str) -> str:
    try:
        return format_attribute_timestamp(parse_timestamp(value))
    except ValueError:
        raise _fail(key, "Timestamp", value, "expected an ISO 8601 timestamp") from None


def _boolean(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value in BOOLEAN_STRINGS:
        return BOOLEAN_STRINGS[value]
    raise _fail(key, "Boolean", value, f"expected one of {', '.join(TRUE_FORMS + FALSE_FORMS)}")


_COERCERS: dict[str, Callable[[Any, str], Any]] = {
    "String": _string,
    "Integer": _integer,
    "Decimal": _decimal,
    "Timestamp": _timestamp,
    "Boolean": _boolean,
}  # one for each of vocabulary.CUSTOM_ATTRIBUTE_TYPES


def coerce_value(attr_type: str, value: Any, key: str) -> Any:
    """Validate `value` against a custom attribute type and return the stored form. None clears a value."""
    if value is None:
        return None
    coerce = _COERCERS.get(attr_type)
    if coerce is None:
        raise field_errors([(key, f"Unknown custom attribute type {attr_type!r}")])
    return coerce(value, key)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


# ---------------------------------------------------------------- request parts


def validate_custom_items(items: Any, param: str = "custom") -> list[Item]:
    """A list of {type, key, value[, source]} -> [(key, type, stored value)]."""
    if not isinstance(items, list):
        raise bad_param(f'Parameter "{param}" must be an array of custom attributes', param)
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad_param(f"{param}[{n}] must be an object with type, key and value", param)
        for required in ("type", "key", "value"):
            if required not in item:
                raise missing(f"{param}[{n}].{required}")
        key = validate_key(item["key"])
        attr_type = item["type"]
        if attr_type not in CUSTOM_ATTRIBUTE_TYPES:
            types = ", ".join(CUSTOM_ATTRIBUTE_TYPES)
            raise field_errors(
                [(key, f"Custom attribute {key!r}: type must be one of {types}, got {attr_type!r}")]
            )
        out.append((key, attr_type, coerce_value(attr_type, item["value"], key)))
    return out


def check_type_conflicts(items: list[Item], definitions: dict[str, str]) -> None:
    errors = []
    seen: dict[str, str] = {}
    for key, attr_type, _ in items:
        existing = definitions.get(key) or seen.get(key)
        if existing is not None and existing != attr_type:
            why = f"is already defined with type {existing}, cannot use {attr_type}"
            errors.append((key, f"Custom attribute {key!r} {why}"))
        seen[key] = attr_type
    if errors:
        raise field_errors(errors)


def validate_custom_patch(custom: Any, definitions: dict[str, str]) -> dict[str, Any]:
    """PATCH attributes.custom: {key: value | {"value": v, "source": s}}; every key must already exist."""
    if not isinstance(custom, dict):
        raise bad_param('Parameter "attributes.custom" must be an object', "attributes.custom")
    out = {}
    for key, raw in custom.items():
        validate_key(key)
        if key not in definitions:
            raise field_errors(
                [(key, f"Custom attribute {key!r} does not exist in this account; create it first with "
                       "POST /v1/customers/attributes/custom")]
            )  # fmt: skip
        value = raw
        if isinstance(raw, dict):
            if "value" not in raw:
                raise missing(f"attributes.custom.{key}.value")
            value = raw["value"]
        out[key] = coerce_value(definitions[key], value, key)
    return out


def validate_tags(tags: Any) -> list[str]:
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise bad_param('Parameter "attributes.tags" must be an array of strings', "attributes.tags")
    return list(tags)


def type_of(value: Any) -> str:
    """The custom attribute type a JSON value suggests (the admin door defines keys this way)."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Decimal"
    return "String"
