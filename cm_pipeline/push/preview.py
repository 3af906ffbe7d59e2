"""What a dry run would change, field by field (before -> after), and the Markdown table the UI shows (pure)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

NOTHING = "—"  # a field with no value before (or after)
CELL_CHARS = 60


def _tags(tags: Iterable[str]) -> str:
    return ", ".join(sorted(tags)) or NOTHING


def state_changes(
    tags: Iterable[str], custom: Mapping[str, Any], want_tags: Iterable[str], want_custom: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """(field, before, after) for the tags (as one field) and each custom attribute a PATCH changes."""
    out: list[tuple[str, Any, Any]] = []
    if set(tags) != set(want_tags):
        out.append(("tags", _tags(tags), _tags(want_tags)))
    for key in sorted(set(custom) | set(want_custom), key=str):
        before, after = custom.get(key, NOTHING), want_custom.get(key, NOTHING)
        if before != after:
            out.append((f"custom.{key}", before, after))
    return out


def entries_changes(
    holders: Iterable[Mapping[str, Any]], entries: Iterable[Mapping[str, Any]]
) -> list[tuple[str, Any, Any]]:
    """(field, before, after) per key an add-by-email POST sets: before as the warehouse's customers
    with the email hold it (their distinct values)."""
    holders = list(holders)
    out = []
    for e in entries:
        seen = sorted({_cell((h.get("custom_attributes") or {}).get(e["key"], NOTHING)) for h in holders})
        out.append((f"custom.{e['key']}", " / ".join(seen) or NOTHING, e.get("value")))
    return out


def create_changes(body: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, —, value) for each field a create would set."""
    return [(k, NOTHING, v) for k, v in body.items() if v not in (None, [], {}, "")]


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def markdown_table(previews: Iterable[tuple[int, str, list[tuple[str, Any, Any]]]], limit: int = 20) -> str:
    """The first `limit` planned changes (rows, in plan order), one line per field: target, field,
    before, after."""
    lines = ["| # | target | field | before | after |", "| --- | --- | --- | --- | --- |"]
    shown = 0
    for n, (_, target, changes) in enumerate(previews, 1):
        if n > limit:
            break
        shown = n
        for field, before, after in changes:
            lines.append(f"| {n} | {_cell(target)} | {_cell(field)} | {_cell(before)} | {_cell(after)} |")
    if shown == 0:
        return "No change planned."
    return "\n".join(lines)
