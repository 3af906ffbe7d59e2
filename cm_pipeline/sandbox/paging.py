"""What a listing needs to know of a customer (Meta), the filters of GET /v1/customers and of the email
search (Filters), opaque cursors and the page they make (Page). Pure: the store walks its indexes with them.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import NamedTuple

from cm_pipeline.sandbox.responses import bad_param

Links = tuple[tuple[str, ...], tuple[str, ...]]  # (every data source uuid, every external id)


class Meta(NamedTuple):
    uuid: str
    data_source_uuid: str  # the primary's
    external_id: str  # the primary's
    status: str
    system: str  # the primary's billing system
    email: str  # lower-cased
    more: Links | None  # a merged customer's data sources and external ids, all of them; None for others

    @property
    def data_source_uuids(self) -> tuple[str, ...]:
        return self.more[0] if self.more is not None else (self.data_source_uuid,)

    @property
    def external_ids(self) -> tuple[str, ...]:
        return self.more[1] if self.more is not None else (self.external_id,)


def _strings(values: object, primary: str) -> tuple[str, ...]:
    """The primary value first, then the other non-empty strings of `values`, once each."""
    extra = [x for x in values if isinstance(x, str) and x] if isinstance(values, list) else []
    return tuple(dict.fromkeys([primary, *extra]))


def meta_of(doc: dict) -> Meta:
    """The Meta of any customer document, odd ones (admin-made) included."""
    ds = doc.get("data_source_uuid") or ""
    ext = doc.get("external_id") or ""
    dss, exts = _strings(doc.get("data_source_uuids"), ds), _strings(doc.get("external_ids"), ext)
    more = None if dss == (ds,) and exts == (ext,) else (dss, exts)
    return Meta(doc["uuid"], ds, ext, doc.get("status") or "", doc.get("billing-system-type") or "",
                (doc.get("email") or "").lower(), more)  # fmt: skip


@dataclass(frozen=True)
class Filters:
    """List Customers' filters (a merged customer matches under each of its data sources and external ids;
    `system` is the primary's billing system), plus the search's email (lower-cased)."""

    data_source_uuid: str | None = None
    external_id: str | None = None
    status: str | None = None  # with spaces
    system: str | None = None
    email: str | None = None  # GET /v1/customers/search only

    def as_list(self) -> list:
        base = [self.data_source_uuid, self.external_id, self.status, self.system]
        return base if self.email is None else [*base, self.email]  # list cursors stay as they were

    def matches(self, m: Meta) -> bool:
        ds, ext = self.data_source_uuid, self.external_id
        return (
            (ds is None or m.data_source_uuid == ds or (m.more is not None and ds in m.more[0]))
            and (ext is None or m.external_id == ext or (m.more is not None and ext in m.more[1]))
            and (self.status is None or m.status == self.status)
            and (self.system is None or m.system == self.system)
            and (self.email is None or m.email == self.email)
        )

    @property
    def empty(self) -> bool:
        return self.as_list() == [None, None, None, None]


def encode_cursor(after_id: int, filters: Filters) -> str:
    raw = json.dumps({"a": after_id, "f": filters.as_list()}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, Filters]:
    """Opaque cursor -> (last id returned, filters); 400 naming `cursor` when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        after = data["a"]
        f = data["f"]
        if not isinstance(after, int) or not isinstance(f, list) or len(f) not in (4, 5):
            raise ValueError
        if not all(x is None or isinstance(x, str) for x in f):
            raise ValueError
        return after, Filters(*f)
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise bad_param(f"Invalid cursor {cursor[:60]!r}", "cursor") from None


@dataclass
class Page:
    entries: list[bytes]
    has_more: bool
    cursor: str | None
    total: int | None  # matching customers, computed for first pages only, when asked
