"""Postgres COPY text format: how the loaders encode values and lines (NULL is \\N, escapes doubled)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

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


def typed_copy_text(values: list) -> str:
    """COPY text of a prepared entry's typed values (integers, aware datetimes or None), tab-separated:
    `copy_field` for exactly those kinds, without its checks (every staged entry goes through it)."""
    return "\t".join(
        ["\\N" if v is None else v.isoformat() if v.__class__ is datetime else str(v) for v in values]
    )


def copy_line(values: list | tuple) -> str:
    """One COPY text line (with its newline) for `values`."""
    return "\t".join([copy_field(v) for v in values]) + "\n"
