"""The sandbox account's state: customers, data sources, custom attribute definitions, cursor paging.

Each customer is kept as its pre-serialised JSON bytes (re-serialised on change), plus a small tuple of
the fields the filters need (paging.Meta), so a page of 200 is a bytes join and 1M customers fit in one
process. Sorted id lists index customers by data source (a merged customer under each of its data
sources), status, primary billing system, external id (each of them) and email; a filtered page walks the shortest list that
applies from the cursor on, and the first page's count is that list's length when one filter alone is
given. Every change goes through put/delete/define/add_data_source, which tell `journal` (the state file,
journal.py) the resulting document. The rules of a change live elsewhere: writes.py (the API's writes),
admin.py (the admin door).
"""

from __future__ import annotations

import gc
import json
import random
import threading
import uuid as uuidlib
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from cm_pipeline.chartmogul.vocabulary import STATUSES
from cm_pipeline.sandbox import seed as seedmod
from cm_pipeline.sandbox.paging import Filters, Meta, Page, encode_cursor, meta_of
from cm_pipeline.sandbox.responses import customer_not_found, dumps

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


Journal = Callable[[dict], None]  # takes one change record (see journal.py)


def _add(ids: list[int], cid: int) -> None:
    """Insert `cid` into the ascending list `ids` (an append when it is the largest)."""
    if not ids or cid > ids[-1]:
        ids.append(cid)
    else:
        insort(ids, cid)


def _discard(ids: list[int], cid: int) -> None:
    i = bisect_left(ids, cid)
    if i < len(ids) and ids[i] == cid:
        del ids[i]


class Store:
    """Thread-safe account state. All mutations go through the lock; pages read under it briefly."""

    def __init__(self, customers: int = 0, seed: int = 1, account: str = "uniform"):
        self.lock = threading.RLock()
        self.account = seedmod.shape(account).name
        self._rng = random.Random(f"sandbox-{seed}")
        self.uuid_draws = 0  # new_uuid() calls so far: the state file restores the generator's position
        self.data_sources: dict[str, dict] = {r["uuid"]: r for r in seedmod.data_source_records(account)}
        self.definitions: dict[str, str] = dict(seedmod.SEED_DEFINITIONS)
        self._docs: dict[int, bytes] = {}
        self._meta: dict[int, Meta] = {}
        self._order: list[int] = []  # ascending ids, live ones only
        self._by_uuid: dict[str, int] = {}
        # Ascending id lists: (index, the keys of a customer in it) per filterable field.
        self._by_ext: dict[str, list[int]] = {}
        self._by_email: dict[str, list[int]] = {}
        self._by_ds: dict[str, list[int]] = {ds: [] for ds in self.data_sources}
        self._by_status: dict[str, list[int]] = {status: [] for status in STATUSES}
        self._by_system: dict[str, list[int]] = {}  # the primary's billing system
        self.next_id = 1
        self.writes_applied = 0
        self.journal: Journal | None = None
        if customers:
            gc_was_enabled = gc.isenabled()
            gc.disable()  # millions of small containers would trigger repeated full collections
            try:
                self._seed(customers, seed, account)
            finally:
                if gc_was_enabled:
                    gc.enable()

    def _seed(self, customers: int, seed: int, account: str) -> None:
        """Bulk load of generated customers (ids 1..N, already ascending): the fast path of put."""
        enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        docs, meta, by_uuid, order = self._docs, self._meta, self._by_uuid, self._order
        by_ext, by_email, by_ds, by_status = self._by_ext, self._by_email, self._by_ds, self._by_status
        by_system = self._by_system
        for _, _, system in seedmod.shape(account).data_sources:
            by_system.setdefault(system, [])
        for doc in seedmod.generate(customers, seed, first_id=1, account=account):
            cid = doc["id"]
            docs[cid] = enc(doc).encode()
            email = doc["email"].lower()
            dss, exts = doc["data_source_uuids"], doc["external_ids"]
            more = None if len(dss) == 1 and len(exts) == 1 else (tuple(dss), tuple(exts))
            m = Meta(doc["uuid"], doc["data_source_uuid"], doc["external_id"], doc["status"],
                     doc["billing-system-type"], email, more)  # fmt: skip
            meta[cid] = m
            by_uuid[m.uuid] = cid
            for ext in exts:
                ids = by_ext.get(ext)
                if ids is None:
                    by_ext[ext] = [cid]
                else:
                    ids.append(cid)
            ids = by_email.get(email)
            if ids is None:
                by_email[email] = [cid]
            else:
                ids.append(cid)
            for ds in dss:
                by_ds[ds].append(cid)
            by_status[m.status].append(cid)
            by_system[m.system].append(cid)
            order.append(cid)
        self.next_id = customers + 1

    # ------------------------------------------------------------ primitives (callers hold the lock)

    @staticmethod
    def now() -> datetime:
        return datetime.now(timezone.utc)

    def _log(self, record: dict) -> None:
        if self.journal is not None:
            self.journal({**record, "draws": self.uuid_draws})

    def put(self, doc: dict, new: bool) -> None:
        """Store `doc` (a new customer, or a new version of one) and index it."""
        cid = doc["id"]
        old = None if new else self._meta[cid]
        m = meta_of(doc)
        self._docs[cid] = dumps(doc)
        self._meta[cid] = m
        self._by_uuid[m.uuid] = cid
        self._reindex(cid, old, m)
        if new:
            _add(self._order, cid)
            self.next_id = max(self.next_id, cid + 1)
        self._log({"put": doc})

    def _keys(self, m: Meta | None) -> tuple[tuple[dict[str, list[int]], Sequence[str]], ...]:
        """Each index with the keys customer `m` has in it (none for None)."""
        if m is None:
            return tuple((index, ()) for index in self._indexes())
        return (
            (self._by_ext, m.external_ids),
            (self._by_email, (m.email,) if m.email else ()),
            (self._by_ds, [ds for ds in m.data_source_uuids if ds]),
            (self._by_status, (m.status,)),
            (self._by_system, (m.system,)),
        )

    def _indexes(self) -> tuple[dict[str, list[int]], ...]:
        return self._by_ext, self._by_email, self._by_ds, self._by_status, self._by_system

    def _reindex(self, cid: int, old: Meta | None, new: Meta | None) -> None:
        """Move `cid` in every index from the keys of `old` to those of `new` (only those that changed)."""
        for (index, before), (_, after) in zip(self._keys(old), self._keys(new), strict=True):
            for key in before:
                if key not in after:
                    _discard(index[key], cid)
            for key in after:
                if key not in before:
                    _add(index.setdefault(key, []), cid)

    def delete(self, uuid: str) -> None:
        with self.lock:
            cid = self.id_for(uuid)
            self._reindex(cid, self._meta[cid], None)
            del self._docs[cid], self._meta[cid], self._by_uuid[uuid]
            _discard(self._order, cid)
            self._log({"delete": uuid})

    def define(self, definitions: dict[str, str]) -> None:
        """Define the custom attribute keys of `definitions` (key -> type) not yet defined in the account."""
        added = {k: t for k, t in definitions.items() if k not in self.definitions}
        if added:
            self.definitions.update(added)
            self._log({"define": added})

    def add_data_source(self, record: dict) -> None:
        """A new data source (uuid, name, system, created_at, status), as GET /v1/data_sources answers it."""
        self.data_sources[record["uuid"]] = record
        self._by_ds.setdefault(record["uuid"], [])
        self._log({"data_source": record})

    def apply(self, record: dict) -> None:
        """Apply one change record of the journal (put, delete, define, data_source) without journaling it,
        and move the uuid generator to where it was when the change was made."""
        journal, self.journal = self.journal, None
        try:
            if "put" in record:
                doc = record["put"]
                self.put(doc, new=not self.has_id(doc["id"]))
            elif "delete" in record:
                self.delete(record["delete"])
            elif "define" in record:
                self.define(record["define"])
            elif "data_source" in record:
                self.add_data_source(record["data_source"])
            else:
                raise ValueError(f"unknown change record {sorted(record)}")
            while self.uuid_draws < record.get("draws", 0):
                self.new_uuid()
        finally:
            self.journal = journal

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
        self.uuid_draws += 1
        return "cus_" + str(uuidlib.UUID(int=self._rng.getrandbits(128), version=4))

    def find_external(self, data_source_uuid: str, external_id: str) -> int | None:
        """The customer with `external_id` in data source `data_source_uuid` (merged ones in any of theirs)."""
        for cid in self._by_ext.get(external_id, ()):
            if data_source_uuid in self._meta[cid].data_source_uuids:
                return cid
        return None

    def ids_with_email(self, email: str) -> list[int]:
        """Ids of the customers whose email is `email` in any case (str.lower() of both), ascending."""
        return list(self._by_email.get(email.lower(), ()))

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

    def page(self, filters: Filters, per_page: int, after_id: int | None, count: bool = True) -> Page:
        """Customers matching `filters` with id > after_id, ascending id, at most per_page; a first page
        (no after_id) also counts every match when `count` is set."""
        with self.lock:
            ids, exact = self._candidates(filters)
            start = bisect_right(ids, after_id) if after_id is not None else 0
            if exact:
                chunk = ids[start : start + per_page]
                out, last = [self._docs[c] for c in chunk], (chunk[-1] if chunk else None)
                has_more = start + per_page < len(ids)
            else:
                out, last, has_more = self._matching(ids, start, filters, per_page)
            total = None
            if count and after_id is None:
                total = len(ids) if exact else sum(1 for c in ids if filters.matches(self._meta[c]))
        cursor = encode_cursor(last, filters) if has_more and last is not None else None
        return Page(out, has_more, cursor, total)

    def _candidates(self, filters: Filters) -> tuple[Sequence[int], bool]:
        """(ascending ids holding every match, whether every one of them matches): the shortest index
        list of the filters given (all customers when none is)."""
        if filters.empty:
            return self._order, True
        keys = (filters.external_id, filters.email, filters.data_source_uuid, filters.status, filters.system)
        lists = [
            index.get(key, ()) for index, key in zip(self._indexes(), keys, strict=True) if key is not None
        ]
        return min(lists, key=len), len(lists) == 1

    def _matching(
        self, ids: Sequence[int], start: int, filters: Filters, per_page: int
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
