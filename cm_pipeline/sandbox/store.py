"""The sandbox account's state: customers, data sources, custom attribute definitions, cursor paging.

Each customer is kept as its pre-serialised JSON bytes (re-serialised on change), plus a small tuple of
the fields the filters need, so a page of 200 is a bytes join and 1M customers fit in one process.
The rules of a change live elsewhere: writes.py (the API's writes), admin.py (the admin door).
"""

from __future__ import annotations

import base64
import binascii
import gc
import json
import random
import threading
import uuid as uuidlib
from bisect import bisect_right, insort
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from cm_pipeline.sandbox import seed as seedmod
from cm_pipeline.sandbox.responses import bad_param, customer_not_found, dumps

# A customer's keys in the order the API answers them (retrieve-customer.txt).
CUSTOMER_KEYS = (
    "id", "uuid", "external_id", "external_ids", "data_source_uuid", "data_source_uuids", "name", "email",
    "company", "status", "lead_created_at", "free_trial_started_at", "customer-since", "zip", "city", "state",
    "country", "address", "attributes", "mrr", "arr", "billing-system-type", "billing-system-url",
    "chartmogul-url", "currency", "currency-sign", "owner", "website_url",
)  # fmt: skip


def new_customer(
    cid: int, uuid: str, data_source: dict, external_id: str, label: str | None
) -> dict[str, Any]:
    """A customer document with every key, empty but for its identity, in `data_source` (uuid, system)."""
    doc: dict[str, Any] = dict.fromkeys(CUSTOMER_KEYS)
    doc.update(
        {
            "id": cid,
            "uuid": uuid,
            "external_id": external_id,
            "external_ids": [external_id],
            "data_source_uuid": data_source["uuid"],
            "data_source_uuids": [data_source["uuid"]],
            "name": "",
            "email": "",
            "company": "",
            "attributes": {"tags": [], "custom": {}, "stripe": {}},
            "mrr": 0,
            "arr": 0,
            "billing-system-type": data_source["system"],
            "chartmogul-url": seedmod.chartmogul_url(cid, label),
            "currency": "USD",
            "currency-sign": "$",
        }
    )
    return doc


class Meta(NamedTuple):
    uuid: str
    data_source_uuid: str
    external_id: str
    status: str
    system: str
    email: str  # lower-cased


@dataclass(frozen=True)
class Filters:
    data_source_uuid: str | None = None
    external_id: str | None = None
    status: str | None = None  # with spaces
    system: str | None = None

    def as_list(self) -> list:
        return [self.data_source_uuid, self.external_id, self.status, self.system]

    def matches(self, m: Meta) -> bool:
        return (
            (self.data_source_uuid is None or m.data_source_uuid == self.data_source_uuid)
            and (self.external_id is None or m.external_id == self.external_id)
            and (self.status is None or m.status == self.status)
            and (self.system is None or m.system == self.system)
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
        if not isinstance(after, int) or not isinstance(f, list) or len(f) != 4:
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
    total: int | None  # matching customers, computed for first pages only


class Store:
    """Thread-safe account state. All mutations go through the lock; pages read under it briefly."""

    def __init__(self, customers: int = 0, seed: int = 1):
        self.lock = threading.RLock()
        self._rng = random.Random(f"sandbox-{seed}")
        self.data_sources: dict[str, dict] = {
            ds: {"uuid": ds, "name": name, "system": system} for ds, name, system in seedmod.DATA_SOURCES
        }
        self.definitions: dict[str, str] = dict(seedmod.SEED_DEFINITIONS)
        self._docs: dict[int, bytes] = {}
        self._meta: dict[int, Meta] = {}
        self._order: list[int] = []  # ascending ids, live ones only
        self._by_uuid: dict[str, int] = {}
        self._by_ext: dict[str, list[int]] = {}
        self._by_email: dict[str, list[int]] = {}
        self.next_id = 1
        self.writes_applied = 0
        if customers:
            gc_was_enabled = gc.isenabled()
            gc.disable()  # millions of small containers would trigger repeated full collections
            try:
                self._seed(customers, seed)
            finally:
                if gc_was_enabled:
                    gc.enable()

    def _seed(self, customers: int, seed: int) -> None:
        """Bulk load of generated customers (ids 1..N, already ascending): the fast path of put."""
        enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        docs, meta, by_uuid, by_ext, by_email, order = (
            self._docs,
            self._meta,
            self._by_uuid,
            self._by_ext,
            self._by_email,
            self._order,
        )
        for doc in seedmod.generate(customers, seed, first_id=1):
            cid = doc["id"]
            docs[cid] = enc(doc).encode()
            email = doc["email"].lower()
            m = Meta(doc["uuid"], doc["data_source_uuid"], doc["external_id"], doc["status"],
                     doc["billing-system-type"], email)  # fmt: skip
            meta[cid] = m
            by_uuid[m.uuid] = cid
            ext = by_ext.get(m.external_id)
            if ext is None:
                by_ext[m.external_id] = [cid]
            else:
                ext.append(cid)
            em = by_email.get(email)
            if em is None:
                by_email[email] = [cid]
            else:
                em.append(cid)
            order.append(cid)
        self.next_id = customers + 1

    # ------------------------------------------------------------ primitives (callers hold the lock)

    @staticmethod
    def now() -> datetime:
        return datetime.now(timezone.utc)

    def put(self, doc: dict, new: bool) -> None:
        """Store `doc` (a new customer, or a new version of one) and index it."""
        cid = doc["id"]
        if not new:
            self._unindex(cid)
        self._docs[cid] = dumps(doc)
        m = Meta(
            doc["uuid"],
            doc.get("data_source_uuid") or "",
            doc.get("external_id") or "",
            doc.get("status") or "",
            doc.get("billing-system-type") or "",
            (doc.get("email") or "").lower(),
        )
        self._meta[cid] = m
        self._by_uuid[m.uuid] = cid
        self._by_ext.setdefault(m.external_id, []).append(cid)
        if m.email:
            self._by_email.setdefault(m.email, []).append(cid)
        if new:
            if not self._order or cid > self._order[-1]:
                self._order.append(cid)
            else:
                insort(self._order, cid)
            self.next_id = max(self.next_id, cid + 1)

    def _unindex(self, cid: int) -> None:
        m = self._meta[cid]
        self._by_ext[m.external_id].remove(cid)
        if m.email:
            self._by_email[m.email].remove(cid)

    def delete(self, uuid: str) -> None:
        with self.lock:
            cid = self.id_for(uuid)
            self._unindex(cid)
            del self._docs[cid], self._meta[cid], self._by_uuid[uuid]
            pos = bisect_right(self._order, cid) - 1
            del self._order[pos]

    def doc(self, cid: int) -> dict:
        return json.loads(self._docs[cid])

    def id_for(self, uuid: str) -> int:
        """The id of the customer `uuid`; the API's 404 when there is none."""
        cid = self._by_uuid.get(uuid)
        if cid is None:
            raise customer_not_found()
        return cid

    def has_id(self, cid: int) -> bool:
        return cid in self._docs

    def has_uuid(self, uuid: str) -> bool:
        return uuid in self._by_uuid

    def new_uuid(self) -> str:
        return "cus_" + str(uuidlib.UUID(int=self._rng.getrandbits(128), version=4))

    def find_external(self, data_source_uuid: str, external_id: str) -> int | None:
        for cid in self._by_ext.get(external_id, ()):
            if self._meta[cid].data_source_uuid == data_source_uuid:
                return cid
        return None

    def ids_with_email(self, email: str) -> list[int]:
        """Ids of the customers whose email is `email` in any case, ascending."""
        return sorted(self._by_email.get(email.lower(), ()))

    # ------------------------------------------------------------ reads

    def __len__(self) -> int:
        return len(self._docs)

    def get_bytes(self, uuid: str) -> bytes:
        with self.lock:
            return self._docs[self.id_for(uuid)]

    def get(self, uuid: str) -> dict | None:
        with self.lock:
            cid = self._by_uuid.get(uuid)
            return None if cid is None else self.doc(cid)

    def all(self) -> list[dict]:
        with self.lock:
            return [self.doc(cid) for cid in self._order]

    def page(self, filters: Filters, per_page: int, after_id: int | None) -> Page:
        """Customers matching `filters` with id > after_id, ascending id, at most per_page."""
        with self.lock:
            if filters.external_id is not None:
                ids = sorted(self._by_ext.get(filters.external_id, ()))
            else:
                ids = self._order
            start = bisect_right(ids, after_id) if after_id is not None else 0
            if filters.empty:
                chunk = ids[start : start + per_page]
                out, last = [self._docs[c] for c in chunk], (chunk[-1] if chunk else None)
                has_more = start + per_page < len(ids)
            else:
                out, last, has_more = self._matching(ids, start, filters, per_page)
            total = self._count(filters) if after_id is None else None
        cursor = encode_cursor(last, filters) if has_more and last is not None else None
        return Page(out, has_more, cursor, total)

    def _matching(
        self, ids: list[int], start: int, filters: Filters, per_page: int
    ) -> tuple[list[bytes], int | None, bool]:
        """(docs, last id, has_more) of the first per_page of ids[start:] that match `filters`."""
        out: list[bytes] = []
        last = None
        docs, meta = self._docs, self._meta
        for i in range(start, len(ids)):
            cid = ids[i]
            if filters.matches(meta[cid]):
                if len(out) == per_page:
                    return out, last, True
                out.append(docs[cid])
                last = cid
        return out, last, False

    def _count(self, filters: Filters) -> int:
        if filters.empty:
            return len(self._order)
        if filters.external_id is not None:
            return sum(1 for c in self._by_ext.get(filters.external_id, ()) if filters.matches(self._meta[c]))
        return sum(1 for m in self._meta.values() if filters.matches(m))
