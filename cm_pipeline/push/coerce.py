"""Validate and coerce custom attribute values to ChartMogul's five types (pure functions).

The accepted forms follow the add-custom-attributes reference: String (at most 255 characters),
Integer (numeric characters only), Decimal (floating point), Timestamp (ISO 8601) and Boolean
(TRUE, true, t, 1, FALSE, false, f, 0, plus JSON booleans).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from cm_pipeline.chartmogul.vocabulary import (
    ATTRIBUTE_KEY_RE,
    CUSTOM_ATTRIBUTE_TYPES,
    FALSE_FORMS,
    MAX_STRING,
    TRUE_FORMS,
    timestamp_or_none,
)

_INTEGER_RE = re.compile(r"^[+-]?\d+$")
_DECIMAL_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
# A date, optionally followed by a time and a zone: what ISO 8601 timestamps look like here.
_TIMESTAMP_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}"
    r"([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?"
    r"(Z|z|[+-]\d{2}(:?\d{2})?)?$"
)


class CoercionError(ValueError):
    """A value that cannot be sent as its attribute's type; the message names the key and the value."""

    def __init__(self, key: str, value: Any, problem: str) -> None:
        self.key, self.value, self.problem = key, value, problem
        super().__init__(f"custom attribute {key!r}: value {_show(value)} {problem}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_key(key: Any) -> str:
    """The key itself: a non-empty string of letters, digits and underscores."""
    if not isinstance(key, str) or not ATTRIBUTE_KEY_RE.match(key):
        raise CoercionError(str(key), key, "has an invalid key (only letters, digits and underscores)")
    return key


def normalize_type(key: str, type_name: Any) -> str:
    """The canonical type name (case-insensitive match), or an error naming the key and the type."""
    if isinstance(type_name, str):
        for name in CUSTOM_ATTRIBUTE_TYPES:
            if name.lower() == type_name.strip().lower():
                return name
    raise CoercionError(
        key, type_name, f"is not an attribute type (expected one of {', '.join(CUSTOM_ATTRIBUTE_TYPES)})"
    )


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, e.g. 2024-05-01T12:00:00Z (microseconds kept when present)."""
    utc = moment.astimezone(timezone.utc)
    text = utc.replace(tzinfo=None).isoformat()
    return text + "Z"


def coerce_value(key: str, value: Any, type_name: str) -> Any:
    """`value` as the JSON value to send for an attribute of `type_name`; raises CoercionError."""
    type_name = normalize_type(key, type_name)
    if value is None:
        raise CoercionError(key, value, f"is null, not a {type_name}")
    if isinstance(value, (dict, list, tuple)):
        raise CoercionError(key, value, f"is a JSON {type(value).__name__}, not a {type_name}")
    return _COERCERS[type_name](key, value)


def _string(key: str, value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise CoercionError(key, value, "is not a finite number")
        text = repr(value)
    else:
        text = str(value)
    if len(text) > MAX_STRING:
        raise CoercionError(
            key, value, f"is {len(text)} characters long; a String holds at most {MAX_STRING}"
        )
    return text


def _integer(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise CoercionError(key, value, "is a boolean, not an Integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise CoercionError(key, value, "is not a whole number (Integer)")
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        raise CoercionError(key, value, "is not a whole number (Integer)")
    if isinstance(value, str) and _INTEGER_RE.match(value.strip()):
        return int(value.strip())
    raise CoercionError(key, value, "is not an Integer (digits only, optional sign)")


def _decimal(key: str, value: Any) -> int | float:
    if isinstance(value, bool):
        raise CoercionError(key, value, "is a boolean, not a Decimal")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise CoercionError(key, value, "is not a finite Decimal")
    text = str(value).strip() if isinstance(value, (str, Decimal)) else None
    if text is None or not _DECIMAL_RE.match(text):
        raise CoercionError(key, value, "is not a Decimal number")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise CoercionError(key, value, "is not a Decimal number") from None
    as_float = float(number)
    if not math.isfinite(as_float):
        raise CoercionError(key, value, "is out of range for a Decimal")
    return as_float


def _timestamp(key: str, value: Any) -> str:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return format_timestamp(moment)
    if not isinstance(value, str):
        raise CoercionError(key, value, "is not an ISO 8601 timestamp string")
    moment = timestamp_or_none(value)
    if moment is None:
        raise CoercionError(key, value, "is not an ISO 8601 timestamp (e.g. 2024-05-01T12:00:00Z)")
    return format_timestamp(moment)


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        if value.strip() in TRUE_FORMS:
            return True
        if value.strip() in FALSE_FORMS:
            return False
    raise CoercionError(key, value, f"is not a Boolean (one of {', '.join(TRUE_FORMS + FALSE_FORMS)})")


_COERCERS = {
    "String": _string,
    "Integer": _integer,
    "Decimal": _decimal,
    "Timestamp": _timestamp,
    "Boolean": _boolean,
}


def infer_type(key: str, value: Any) -> str:
    """The type an undeclared value implies: JSON bool, integer, number, ISO timestamp string, else String."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, (float, Decimal)):
        return "Decimal"
    if isinstance(value, str):
        return "Timestamp" if timestamp_or_none(value) is not None else "String"
    if isinstance(value, datetime):
        return "Timestamp"
    raise CoercionError(key, value, f"is a JSON {type(value).__name__}; a custom attribute must be a scalar")


def coerce_attribute(key: Any, value: Any, declared_type: Any = None) -> tuple[Any, str]:
    """(typed value, type) for one attribute, validating key, type and value; raises CoercionError."""
    key = validate_key(key)
    type_name = normalize_type(key, declared_type) if declared_type is not None else infer_type(key, value)
    return coerce_value(key, value, type_name), type_name
