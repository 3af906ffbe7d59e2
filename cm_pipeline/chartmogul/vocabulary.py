"""The API's own vocabulary, in one place: statuses, custom attribute types and forms, timestamps.

Pure and stdlib-only, so every part of the project can use it: the client, the warehouse mapping, the
push's coercions and the sandbox all read the API's rules from here. Nothing here imports HTTP code.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

# The status filter of GET /customers takes underscores; responses carry spaces.
STATUS_FILTERS = (
    "New_Lead",
    "Working_Lead",
    "Qualified_Lead",
    "Unqualified_Lead",
    "Active",
    "Past_Due",
    "Cancelled",
)
STATUSES = tuple(s.replace("_", " ") for s in STATUS_FILTERS)
# Only these can be set through the API; Active, Past Due and Cancelled are computed by ChartMogul.
LEAD_STATUSES = STATUSES[:4]

MAX_PER_PAGE = 200  # List Customers and Search serve at most 200 entries a page

# Custom attributes (add-custom-attributes-by-email.txt): five types, keys of letters, digits and
# underscores, Strings of at most 255 characters, and these Boolean forms.
CUSTOM_ATTRIBUTE_TYPES = ("String", "Integer", "Decimal", "Timestamp", "Boolean")
ATTRIBUTE_KEY_RE = re.compile(r"^[A-Za-z0-9_]+$")
MAX_STRING = 255
TRUE_FORMS = ("TRUE", "true", "t", "1")
FALSE_FORMS = ("FALSE", "false", "f", "0")


def status_to_filter(status: str) -> str:
    """'Past Due' (or 'Past_Due', any case) -> 'Past_Due'; ValueError naming the allowed values otherwise."""
    if not isinstance(status, str):
        raise ValueError(f"status: expected a string, got {type(status).__name__}")
    wanted = "_".join(status.strip().replace("_", " ").split()).lower()
    for f in STATUS_FILTERS:
        if f.lower() == wanted:
            return f
    raise ValueError(f"status: {status!r} is not one of {', '.join(STATUS_FILTERS)}")


def filter_to_status(value: str) -> str:
    """'Past_Due' (or 'Past Due') -> 'Past Due'."""
    return status_to_filter(value).replace("_", " ")


# A date, optionally a time (T or a space) with up to 9 fractional digits, and a zone: ISO 8601 as the
# API writes it ("2023-09-08 00:00:00", "2022-10-14T00:00:00.000Z", "2023-06-09T13:16:00-04:00").
_TIMESTAMP_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|z|[+-]\d{2}(:?\d{2})?)?$"
)


_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_timestamp(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string; None for None or ''. A value without a zone is UTC.

    Raises ValueError naming the value when it is not a timestamp string.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"is not a timestamp string: {_show(value)}")
    text = value.strip()
    if not _TIMESTAMP_RE.match(text):
        raise ValueError(f"is not an ISO 8601 timestamp: {_show(value)}")
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    if _LONG_FRACTION.search(text):  # fromisoformat takes at most 6 fractional digits
        text = _LONG_FRACTION.sub(r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:  # e.g. 2024-02-30
        raise ValueError(f"is not an ISO 8601 timestamp: {_show(value)}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def timestamp_or_none(value: Any) -> datetime | None:
    """`parse_timestamp(value)`, or None when `value` is not a timestamp string."""
    try:
        return parse_timestamp(value)
    except ValueError:
        return None
