"""The admin door, /_sandbox/ (no auth, exempt from latency, limits and faults), used by SandboxControl:
  GET /_sandbox/health, GET /_sandbox/stats, POST /_sandbox/stats/reset, GET|POST /_sandbox/config,
  GET /_sandbox/requests?since=N, GET|POST /_sandbox/customers, GET|PATCH|DELETE /_sandbox/customers/{uuid},
  POST /_sandbox/customers/merge {"from": uuid, "into": uuid}, GET /_sandbox/custom_attributes,
  GET /_sandbox/data_sources
Its writes bypass the API's validation: a test sets up any state it needs, odd or not (system tags such as
`merged-customer` are plain tags here; a customer with two data_source_uuids/external_ids is a merged one).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from cm_pipeline.sandbox import seed as seedmod
from cm_pipeline.sandbox.attributes import type_of
from cm_pipeline.sandbox.responses import ApiFailure, Response, bad_param, json_response
from cm_pipeline.sandbox.store import Store, new_customer
from cm_pipeline.sandbox.validation import format_timestamp

if TYPE_CHECKING:
    from cm_pipeline.sandbox.server import SandboxHTTPServer

# Admin-friendly aliases for the hyphenated response keys.
ALIASES = {
    "customer_since": "customer-since",
    "billing_system_type": "billing-system-type",
    "billing_system_url": "billing-system-url",
    "chartmogul_url": "chartmogul-url",
    "currency_sign": "currency-sign",
}
CUSTOMERS = "/_sandbox/customers"
MERGE = CUSTOMERS + "/merge"


def admin_answer(srv: SandboxHTTPServer, method: str, path: str, query: str, body: bytes) -> Response:
    """The answer to an admin request; 400 {"error": ...} on a bad body or value, 404 on no route."""
    try:
        data = json.loads(body) if body else {}
    except ValueError as exc:
        return json_response(400, {"error": f"invalid JSON: {exc}"})
    try:
        if path == CUSTOMERS or path.startswith(CUSTOMERS + "/"):
            answer = _customers_answer(srv.store, method, path, data)
        else:
            answer = _server_answer(srv, method, path, query, data)
    except ApiFailure as exc:
        return json_response(exc.status, exc.body)
    except (ValueError, TypeError) as exc:
        return json_response(400, {"error": str(exc)})
    return answer or json_response(404, {"error": f"no admin route {method} {path}"})


def _server_answer(srv: SandboxHTTPServer, method: str, path: str, query: str, data: Any) -> Response | None:
    store = srv.store
    if path == "/_sandbox/health":
        return json_response(200, {"ok": True, "customers": len(store)})
    if path == "/_sandbox/stats":
        return json_response(200, {**srv.governor.snapshot(), "writes_applied": store.writes_applied})
    if path == "/_sandbox/stats/reset" and method == "POST":
        srv.governor.reset_stats()
        with store.lock:
            store.writes_applied = 0
        return json_response(200, {"ok": True})
    if path == "/_sandbox/config":
        if method == "POST":
            srv.governor.configure(data)
        return json_response(200, srv.governor.knobs.as_dict())
    if path == "/_sandbox/requests":
        q = {k: vals[-1] for k, vals in parse_qs(query).items()}
        return json_response(200, {"entries": srv.requests_since(int(q.get("since", 0)))})
    if path == "/_sandbox/custom_attributes":
        with store.lock:
            return json_response(200, dict(store.definitions))
    if path == "/_sandbox/data_sources":
        with store.lock:
            return json_response(200, {"entries": list(store.data_sources.values())})
    return None


def _customers_answer(store: Store, method: str, path: str, data: Any) -> Response | None:
    if path == MERGE and method == "POST":
        return json_response(200, admin_merge(store, data.get("from"), data.get("into")))
    if path == CUSTOMERS:
        if method == "POST":
            return json_response(201, admin_insert(store, data))
        return json_response(200, {"entries": store.all()})
    uuid = unquote(path.rsplit("/", 1)[1])
    if method == "GET":
        doc = store.get(uuid)
        return json_response(200, doc) if doc is not None else json_response(404, {"error": "not found"})
    if method == "PATCH":
        return json_response(200, admin_modify(store, uuid, data))
    if method == "DELETE":
        store.delete(uuid)
        return json_response(200, {"ok": True})
    return None


# ---------------------------------------------------------------- writes


def admin_insert(store: Store, fields: dict) -> dict:
    """A new customer with `fields` as given (aliases allowed); unknown data sources and keys are created."""
    with store.lock:
        cid = fields.get("id", store.next_id)
        if store.has_id(cid):
            raise bad_param(f"id {cid} already exists", "id")
        uuid = fields.get("uuid") or store.new_uuid()
        if store.has_uuid(uuid):
            raise bad_param(f"uuid {uuid} already exists", "uuid")
        ds_uuid = fields.get("data_source_uuid", seedmod.DOCS_DATA_SOURCE)
        system = fields.get("billing_system_type", fields.get("billing-system-type"))
        _add_data_sources(store, [ds_uuid], system or "Custom")
        ext = fields.get("external_id", f"sandbox_{cid}")
        label = fields.get("company") or fields.get("name")
        ds = store.data_sources.get(ds_uuid) if isinstance(ds_uuid, str) else None
        doc = new_customer(cid, uuid, ds or {"uuid": ds_uuid, "system": system or "Custom"}, ext, label)
        doc["status"] = "New Lead"
        doc["address"] = {"address_zip": None, "city": None, "state": None, "country": None}
        _apply_fields(store, doc, fields)
        if "external_id" in fields and "external_ids" not in fields:
            doc["external_ids"] = [doc["external_id"]]
        if "data_source_uuid" in fields and "data_source_uuids" not in fields:
            doc["data_source_uuids"] = [doc["data_source_uuid"]]
        store.put(doc, new=True)
        return doc


def admin_modify(store: Store, uuid: str, fields: dict) -> dict:
    """Customer `uuid` with `fields` set as given (id and uuid stay)."""
    with store.lock:
        doc = store.doc(store.id_for(uuid))
        _apply_fields(store, doc, fields)
        store.put(doc, new=False)
        return doc


def admin_merge(store: Store, from_uuid: Any, into_uuid: Any) -> dict:
    """ChartMogul's merge: customer `from_uuid` goes; `into_uuid` gains its data sources and external ids
    (after its own), the sum of both MRRs and ARRs, and the `merged-customer` tag. The merged customer."""
    with store.lock:
        for name, value in (("from", from_uuid), ("into", into_uuid)):
            if not isinstance(value, str) or not store.has_uuid(value):
                raise bad_param(f"{name!r} must be the uuid of a customer, got {value!r}", name)
        if from_uuid == into_uuid:
            raise bad_param(f"cannot merge customer {from_uuid} into itself", "into")
        absorbed = store.doc(store.id_for(from_uuid))
        doc = store.doc(store.id_for(into_uuid))
        seedmod.merge_record(doc, absorbed.get("data_source_uuids") or [], absorbed.get("external_ids") or [])
        for key in ("mrr", "arr"):
            doc[key] = (doc.get(key) or 0) + (absorbed.get(key) or 0)
        store.delete(from_uuid)
        store.put(doc, new=False)
        return doc


def _add_data_sources(store: Store, uuids: list, system: str) -> None:
    """Create the data sources of `uuids` the account does not have (named by their uuid, of `system`)."""
    for ds in uuids:
        if isinstance(ds, str) and ds not in store.data_sources:
            created = format_timestamp(store.now())
            store.add_data_source(seedmod.data_source_record(ds, ds, system, created))


def _apply_fields(store: Store, doc: dict, fields: dict) -> None:
    attributes = doc.setdefault("attributes", {"tags": [], "custom": {}, "stripe": {}})
    for key, value in fields.items():
        key = ALIASES.get(key, key)
        if key in ("id", "uuid"):
            continue
        if key in ("tags", "custom", "stripe"):
            attributes[key] = value
        elif key == "attributes":
            attributes.update(value)
        elif key == "status" and isinstance(value, str):
            doc["status"] = value.replace("_", " ")
        elif key == "address":
            doc["address"] = {**(doc.get("address") or {}), **value}
        else:
            doc[key] = value
    store.define({key: type_of(value) for key, value in (attributes.get("custom") or {}).items()})
    if isinstance(doc.get("data_source_uuids"), list):
        _add_data_sources(store, doc["data_source_uuids"], "Custom")
    if "mrr" in fields and "arr" not in fields:
        doc["arr"] = (doc.get("mrr") or 0) * 12
