"""The sandbox account's state: customers, data sources, custom attribute definitions, cursor paging.

Each customer is kept as its pre-serialised JSON bytes (re-serialised on change), plus a small tuple of
the fields the filters need, so a page of 200 is a bytes join and 1M customers fit in one process.
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
from cm_pipeline.sandbox import validation as v

CUSTOMER_KEYS = (
    "id", "uuid", "external_id", "external_ids", "data_source_uuid", "data_source_uuids", "name", "email",
    "company", "status", "lead_created_at", "free_trial_started_at", "customer-since", "zip", "city", "state",
    "country", "address", "attributes", "mrr", "arr", "billing-system-type", "billing-system-url",
    "chartmogul-url", "currency", "currency-sign", "owner", "website_url",
)  # fmt: skip
# Keys of an add-custom-attributes-by-email entry (add-custom-attributes-by-email.txt).
EMAIL_ENTRY_KEYS = (
    "id", "uuid", "external_id", "email", "name", "mrr", "arr", "status", "customer-since",
    "billing-system-url", "chartmogul-url", "billing-system-type", "currency", "currency-sign",
)  # fmt: skip
# Admin-friendly aliases for the hyphenated response keys.
ALIASES = {
    "customer_since": "customer-since",
    "billing_system_type": "billing-system-type",
    "billing_system_url": "billing-system-url",
    "chartmogul_url": "chartmogul-url",
    "currency_sign": "currency-sign",
}


def dumps(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


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
        raise v.bad_param(f"Invalid cursor {cursor[:60]!r}", "cursor") from None


@dataclass
class Page:
    entries: list[bytes]
    has_more: bool
    cursor: str | None
    total: int | None  # matching customers, computed for first pages only


class Store:
    """Thread-safe account state. All mutations go through the lock; pages read under it briefly."""

    def __init__(self, customers: int = 0, seed: int = 1, now: datetime | None = None):
        self.lock = threading.RLock()
        self._now = now
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
        self._next_id = 1
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
        """Bulk load of generated customers (ids 1..N, already ascending): the fast path of _put."""
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
        self._next_id = customers + 1

    # ------------------------------------------------------------ internals

    def now(self) -> datetime:
        return self._now or datetime.now(timezone.utc)

    def _put(self, doc: dict, new: bool) -> None:
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
            self._next_id = max(self._next_id, cid + 1)

    def _unindex(self, cid: int) -> None:
        m = self._meta[cid]
        self._by_ext[m.external_id].remove(cid)
        if m.email:
            self._by_email[m.email].remove(cid)

    def _doc(self, cid: int) -> dict:
        return json.loads(self._docs[cid])

    def _id_for(self, uuid: str) -> int:
        cid = self._by_uuid.get(uuid)
        if cid is None:
            raise v.ApiFailure(404, {"code": 404, "message": "Customer not found", "param": "customer_uuid"})
        return cid

    def _new_uuid(self) -> str:
        return "cus_" + str(uuidlib.UUID(int=self._rng.getrandbits(128), version=4))

    def _find_external(self, data_source_uuid: str, external_id: str) -> int | None:
        for cid in self._by_ext.get(external_id, ()):
            if self._meta[cid].data_source_uuid == data_source_uuid:
                return cid
        return None

    # ------------------------------------------------------------ reads

    def __len__(self) -> int:
        return len(self._docs)

    def get_bytes(self, uuid: str) -> bytes:
        with self.lock:
            return self._docs[self._id_for(uuid)]

    def get(self, uuid: str) -> dict | None:
        with self.lock:
            cid = self._by_uuid.get(uuid)
            return None if cid is None else self._doc(cid)

    def all(self) -> list[dict]:
        with self.lock:
            return [self._doc(cid) for cid in self._order]

    def page(self, filters: Filters, per_page: int, after_id: int | None) -> Page:
        """Customers matching `filters` with id > after_id, ascending id, at most per_page."""
        with self.lock:
            out: list[bytes] = []
            last = None
            has_more = False
            docs, meta = self._docs, self._meta
            if filters.external_id is not None:
                candidates = sorted(self._by_ext.get(filters.external_id, ()))
                start = bisect_right(candidates, after_id) if after_id is not None else 0
                for cid in candidates[start:]:
                    if filters.matches(meta[cid]):
                        if len(out) == per_page:
                            has_more = True
                            break
                        out.append(docs[cid])
                        last = cid
            elif filters.empty:
                order = self._order
                start = bisect_right(order, after_id) if after_id is not None else 0
                chunk = order[start : start + per_page]
                has_more = start + per_page < len(order)
                out = [docs[c] for c in chunk]
                last = chunk[-1] if chunk else None
            else:
                order = self._order
                start = bisect_right(order, after_id) if after_id is not None else 0
                for i in range(start, len(order)):
                    cid = order[i]
                    if filters.matches(meta[cid]):
                        if len(out) == per_page:
                            has_more = True
                            break
                        out.append(docs[cid])
                        last = cid
            total = None
            if after_id is None:
                if filters.empty:
                    total = len(self._order)
                elif filters.external_id is not None:
                    total = sum(
                        1 for c in self._by_ext.get(filters.external_id, ()) if filters.matches(meta[c])
                    )
                else:
                    total = sum(1 for m in meta.values() if filters.matches(m))
        cursor = encode_cursor(last, filters) if has_more and last is not None else None
        return Page(out, has_more, cursor, total)

    # ------------------------------------------------------------ API writes

    def create(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise v.bad_param("Request body must be a JSON object", None)
        for field in ("data_source_uuid", "external_id"):
            if body.get(field) in (None, ""):
                raise v.missing(field)
            if not isinstance(body[field], str):
                raise v.field_errors([(field, f"{field} must be a string")])
        v.check_string_fields(body)
        attributes = body.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise v.bad_param('Parameter "attributes" must be an object', "attributes")
        tags = v.validate_tags(attributes.get("tags", []))
        items = v.validate_custom_items(attributes.get("custom", []), "attributes.custom")
        with self.lock:
            now = self.now()
            times = v.validate_lead_and_trial(body, now)
            ds = self.data_sources.get(body["data_source_uuid"])
            if ds is None:
                raise v.data_source_not_found()
            if ds["system"] != "Custom":
                raise v.not_a_custom_data_source(ds["uuid"], ds["system"])
            if self._find_external(ds["uuid"], body["external_id"]) is not None:
                raise v.duplicate_external_id()
            v.check_type_conflicts(items, self.definitions)
            for key, attr_type, _ in items:
                self.definitions.setdefault(key, attr_type)
            cid = self._next_id
            state = v.normalise_state(body.get("state"))
            country = body.get("country")
            company = body.get("company") or ""
            doc = {
                "id": cid,
                "uuid": self._new_uuid(),
                "external_id": body["external_id"],
                "external_ids": [body["external_id"]],
                "data_source_uuid": ds["uuid"],
                "data_source_uuids": [ds["uuid"]],
                "name": body.get("name") or "",
                "email": body.get("email") or "",
                "company": company,
                "status": "Active",  # as create-customer.txt's example response shows
                "lead_created_at": times.get("lead_created_at"),
                "free_trial_started_at": times.get("free_trial_started_at"),
                "customer-since": None,
                "zip": body.get("zip"),
                "city": body.get("city"),
                "state": state,
                "country": country,
                "address": {
                    "address_zip": body.get("zip"),
                    "city": body.get("city"),
                    "state": v.state_full_name(state, country),
                    "country": v.address_country(country),
                },
                "attributes": {"tags": tags, "custom": {k: val for k, _, val in items}, "stripe": {}},
                "mrr": 0,
                "arr": 0,
                "billing-system-type": ds["system"],
                "billing-system-url": None,
                "chartmogul-url": seedmod.chartmogul_url(cid, company or body.get("name")),
                "currency": "USD",
                "currency-sign": "$",
                "owner": body.get("owner"),
                "website_url": v.normalise_website(body.get("website_url")),
            }
            self._put(doc, new=True)
            self.writes_applied += 1
            return doc

    def update(self, uuid: str, body: Any) -> dict:
        if not isinstance(body, dict):
            raise v.bad_param("Request body must be a JSON object", None)
        v.check_string_fields(body)
        with self.lock:
            cid = self._id_for(uuid)
            doc = self._doc(cid)
            times = v.validate_lead_and_trial(body, self.now(), current=doc)
            changes: dict[str, Any] = dict(times)
            if "status" in body:
                changes["status"] = v.lead_status(body["status"])
            if "attributes" in body:
                attrs = body["attributes"]
                if not isinstance(attrs, dict):
                    raise v.bad_param('Parameter "attributes" must be an object', "attributes")
                # update-customer.txt: the attributes object overwrites tags AND custom attributes;
                # whichever of the two it leaves out is deleted.
                new_tags = v.validate_tags(attrs["tags"]) if "tags" in attrs else []
                new_custom = v.validate_custom_patch(attrs.get("custom", {}), self.definitions)
                changes["attributes"] = {
                    "tags": new_tags,
                    "custom": new_custom,
                    "stripe": doc["attributes"].get("stripe", {}),
                }
            for field in ("name", "email", "company", "owner"):
                if field in body:
                    changes[field] = body[field] if body[field] is not None or field == "owner" else ""
            if "website_url" in body:
                changes["website_url"] = v.normalise_website(body["website_url"])
            address = dict(doc.get("address") or {})
            if "zip" in body:
                changes["zip"] = address["address_zip"] = body["zip"]
            if "city" in body:
                changes["city"] = address["city"] = body["city"]
            if "country" in body:
                changes["country"] = body["country"]
                address["country"] = v.address_country(body["country"])
            if "state" in body:
                changes["state"] = v.normalise_state(body["state"])
            if "state" in body or "country" in body:
                address["state"] = v.state_full_name(
                    changes.get("state", doc.get("state")), changes.get("country", doc.get("country"))
                )
            if address != doc.get("address"):
                changes["address"] = address
            doc.update(changes)
            self._put(doc, new=False)
            self.writes_applied += 1
            return doc

    def add_custom_by_email(self, body: Any) -> list[dict]:
        if not isinstance(body, dict):
            raise v.bad_param("Request body must be a JSON object", None)
        email = body.get("email")
        if email in (None, ""):
            raise v.missing("email")
        if not isinstance(email, str):
            raise v.field_errors([("email", "email must be a string")])
        if "custom" not in body:
            raise v.missing("custom")
        items = v.validate_custom_items(body["custom"])
        if not items:
            raise v.bad_param('Parameter "custom" must contain at least one custom attribute', "custom")
        with self.lock:
            v.check_type_conflicts(items, self.definitions)
            ids = sorted(self._by_email.get(email.lower(), ()))
            if not ids:
                raise v.ApiFailure(
                    404,
                    {"code": 404, "message": f"No customers found with email {email!r}", "param": "email"},
                )
            for key, attr_type, _ in items:
                self.definitions.setdefault(key, attr_type)
            entries = []
            for cid in ids:
                doc = self._doc(cid)
                attrs = doc.get("attributes")
                if not isinstance(attrs, dict):
                    attrs = doc["attributes"] = {"tags": [], "custom": {}, "stripe": {}}
                # A customer whose `custom` was nulled (admin API) has no attributes yet: start from {}.
                custom = attrs.get("custom")
                if not isinstance(custom, dict):
                    custom = attrs["custom"] = {}
                for key, _, value in items:
                    custom[key] = value
                self._put(doc, new=False)
                entry = {k: doc.get(k) for k in EMAIL_ENTRY_KEYS}
                entry["attributes"] = {
                    "tags": attrs.get("tags", []),
                    "stripe": attrs.get("stripe", {}),
                    "clearbit": {},
                    "custom": custom,
                }
                entries.append(entry)
            self.writes_applied += 1
            return entries

    # ------------------------------------------------------------ admin (bypasses API validation)

    def _apply_admin_fields(self, doc: dict, fields: dict) -> None:
        attrs = doc.setdefault("attributes", {"tags": [], "custom": {}, "stripe": {}})
        for key, value in fields.items():
            key = ALIASES.get(key, key)
            if key in ("tags", "custom", "stripe"):
                attrs[key] = value
            elif key == "attributes":
                attrs.update(value)
            elif key == "status" and isinstance(value, str):
                doc["status"] = value.replace("_", " ")
            elif key == "address":
                doc["address"] = {**(doc.get("address") or {}), **value}
            else:
                doc[key] = value
        for key, value in (attrs.get("custom") or {}).items():
            if key not in self.definitions:
                self.definitions[key] = _infer_type(value)
        if "mrr" in fields and "arr" not in fields:
            doc["arr"] = (doc.get("mrr") or 0) * 12

    def admin_insert(self, fields: dict) -> dict:
        with self.lock:
            cid = fields.get("id", self._next_id)
            if cid in self._docs:
                raise v.bad_param(f"id {cid} already exists", "id")
            uuid = fields.get("uuid") or self._new_uuid()
            if uuid in self._by_uuid:
                raise v.bad_param(f"uuid {uuid} already exists", "uuid")
            ds_uuid = fields.get("data_source_uuid", seedmod.DOCS_DATA_SOURCE)
            system = fields.get("billing_system_type", fields.get("billing-system-type"))
            if ds_uuid not in self.data_sources:
                self.data_sources[ds_uuid] = {"uuid": ds_uuid, "name": ds_uuid, "system": system or "Custom"}
            ext = fields.get("external_id", f"sandbox_{cid}")
            doc: dict[str, Any] = dict.fromkeys(CUSTOMER_KEYS)
            doc.update(
                {
                    "id": cid,
                    "uuid": uuid,
                    "external_id": ext,
                    "external_ids": [ext],
                    "data_source_uuid": ds_uuid,
                    "data_source_uuids": [ds_uuid],
                    "name": "",
                    "email": "",
                    "company": "",
                    "status": "New Lead",
                    "address": {"address_zip": None, "city": None, "state": None, "country": None},
                    "attributes": {"tags": [], "custom": {}, "stripe": {}},
                    "mrr": 0,
                    "arr": 0,
                    "billing-system-type": self.data_sources[ds_uuid]["system"],
                    "chartmogul-url": seedmod.chartmogul_url(
                        cid, fields.get("company") or fields.get("name")
                    ),
                    "currency": "USD",
                    "currency-sign": "$",
                }
            )
            self._apply_admin_fields(doc, {k: val for k, val in fields.items() if k not in ("id", "uuid")})
            if "external_id" in fields and "external_ids" not in fields:
                doc["external_ids"] = [doc["external_id"]]
            if "data_source_uuid" in fields and "data_source_uuids" not in fields:
                doc["data_source_uuids"] = [doc["data_source_uuid"]]
            self._put(doc, new=True)
            return doc

    def admin_modify(self, uuid: str, fields: dict) -> dict:
        with self.lock:
            cid = self._id_for(uuid)
            doc = self._doc(cid)
            self._apply_admin_fields(doc, {k: val for k, val in fields.items() if k not in ("id", "uuid")})
            self._put(doc, new=False)
            return doc

    def admin_delete(self, uuid: str) -> None:
        with self.lock:
            cid = self._id_for(uuid)
            self._unindex(cid)
            del self._docs[cid], self._meta[cid], self._by_uuid[uuid]
            pos = bisect_right(self._order, cid) - 1
            del self._order[pos]


def _infer_type(value: Any) -> str:
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Decimal"
    return "String"
