"""Records and vocabularies at the API boundary: statuses, custom attribute types, a light customer view."""

from __future__ import annotations

from dataclasses import dataclass, field
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

CUSTOM_ATTRIBUTE_TYPES = ("String", "Integer", "Decimal", "Timestamp", "Boolean")


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


@dataclass(frozen=True)
class CreateResult:
    """Outcome of create_customer: the customer as ChartMogul has it, whether this call created it, and
    the HTTP status the POST was answered with (201 created; 422 when it met an existing external_id)."""

    customer: dict
    created: bool
    status: int | None = None


@dataclass(frozen=True)
class Customer:
    """Typed view of one customer entry; `raw` keeps the entry exactly as received."""

    uuid: str
    external_id: str | None
    data_source_uuid: str | None
    email: str | None
    status: str | None
    tags: tuple[str, ...]
    custom: dict[str, Any]
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_entry(cls, entry: dict) -> Customer:
        if not isinstance(entry, dict) or not entry.get("uuid"):
            raise ValueError(f"customer entry: expected an object with a 'uuid', got {str(entry)[:80]!r}")
        attributes = entry.get("attributes") or {}
        return cls(
            uuid=entry["uuid"],
            external_id=entry.get("external_id"),
            data_source_uuid=entry.get("data_source_uuid"),
            email=entry.get("email"),
            status=entry.get("status"),
            tags=tuple(attributes.get("tags") or ()),
            custom=dict(attributes.get("custom") or {}),
            raw=entry,
        )
