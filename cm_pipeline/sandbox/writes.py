"""The API's writes with their rules: POST /v1/customers, PATCH /v1/customers/{uuid} and
POST /v1/customers/attributes/custom. Each checks the whole request before it changes anything, so a
rejected write stores nothing (the choices are listed in the package docstring)."""

from __future__ import annotations

from typing import Any

from cm_pipeline.sandbox import attributes as attrs
from cm_pipeline.sandbox import validation as v
from cm_pipeline.sandbox.responses import (
    bad_param,
    data_source_not_found,
    duplicate_external_id,
    field_errors,
    missing,
    no_customer_with_email,
    not_a_custom_data_source,
)
from cm_pipeline.sandbox.store import Store, new_customer

# Keys of an add-custom-attributes-by-email entry (add-custom-attributes-by-email.txt).
EMAIL_ENTRY_KEYS = (
    "id", "uuid", "external_id", "email", "name", "mrr", "arr", "status", "customer-since",
    "billing-system-url", "chartmogul-url", "billing-system-type", "currency", "currency-sign",
)  # fmt: skip


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise bad_param("Request body must be a JSON object", None)
    return body


def _attributes_object(value: Any) -> dict:
    if not isinstance(value, dict):
        raise bad_param('Parameter "attributes" must be an object', "attributes")
    return value


def _required_string(body: dict, field: str) -> str:
    if body.get(field) in (None, ""):
        raise missing(field)
    if not isinstance(body[field], str):
        raise field_errors([(field, f"{field} must be a string")])
    return body[field]


# ---------------------------------------------------------------- create


def create_customer(store: Store, body: Any) -> dict:
    """POST /v1/customers: a new customer in a Custom data source."""
    body = _object(body)
    for field in ("data_source_uuid", "external_id"):
        _required_string(body, field)
    v.check_string_fields(body)
    attributes = _attributes_object(body.get("attributes") or {})
    tags = attrs.validate_tags(attributes.get("tags", []))
    items = attrs.validate_custom_items(attributes.get("custom", []), "attributes.custom")
    with store.lock:
        times = v.validate_lead_and_trial(body, store.now())
        ds = store.data_sources.get(body["data_source_uuid"])
        if ds is None:
            raise data_source_not_found()
        if ds["system"] != "Custom":
            raise not_a_custom_data_source(ds["uuid"], ds["system"])
        if store.find_external(ds["uuid"], body["external_id"]) is not None:
            raise duplicate_external_id()
        attrs.check_type_conflicts(items, store.definitions)
        store.define({key: attr_type for key, attr_type, _ in items})
        cid = store.next_id
        doc = new_customer(
            cid, store.new_uuid(), ds, body["external_id"], body.get("company") or body.get("name")
        )
        doc.update(_created_fields(body, times))
        doc["attributes"] = {"tags": tags, "custom": {k: val for k, _, val in items}, "stripe": {}}
        store.put(doc, new=True)
        store.writes_applied += 1
        return doc


def _created_fields(body: dict, times: dict[str, str | None]) -> dict[str, Any]:
    """A created customer's fields taken from the request (normalised)."""
    state = v.normalise_state(body.get("state"))
    country = body.get("country")
    return {
        "name": body.get("name") or "",
        "email": body.get("email") or "",
        "company": body.get("company") or "",
        "status": "Active",  # as create-customer.txt's example response shows
        "lead_created_at": times.get("lead_created_at"),
        "free_trial_started_at": times.get("free_trial_started_at"),
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
        "owner": body.get("owner"),
        "website_url": v.normalise_website(body.get("website_url")),
    }


# ---------------------------------------------------------------- update


def update_customer(store: Store, uuid: str, body: Any) -> dict:
    """PATCH /v1/customers/{uuid}: the fields sent; an `attributes` object replaces tags and custom."""
    body = _object(body)
    v.check_string_fields(body)
    with store.lock:
        cid = store.id_for(uuid)
        doc = store.doc(cid)
        changes: dict[str, Any] = dict(v.validate_lead_and_trial(body, store.now(), current=doc))
        if "status" in body:
            changes["status"] = v.lead_status(body["status"])
        if "attributes" in body:
            changes["attributes"] = _replaced_attributes(body["attributes"], doc, store.definitions)
        for field in ("name", "email", "company", "owner"):
            if field in body:
                changes[field] = body[field] if body[field] is not None or field == "owner" else ""
        if "website_url" in body:
            changes["website_url"] = v.normalise_website(body["website_url"])
        changes.update(_place_changes(body, doc))
        doc.update(changes)
        store.put(doc, new=False)
        store.writes_applied += 1
        return doc


def _replaced_attributes(value: Any, doc: dict, definitions: dict[str, str]) -> dict:
    """update-customer.txt: the attributes object overwrites tags AND custom attributes; whichever of the
    two it leaves out is deleted. Custom keys must already be defined."""
    sent = _attributes_object(value)
    return {
        "tags": attrs.validate_tags(sent["tags"]) if "tags" in sent else [],
        "custom": attrs.validate_custom_patch(sent.get("custom", {}), definitions),
        "stripe": doc["attributes"].get("stripe", {}),
    }


def _place_changes(body: dict, doc: dict) -> dict[str, Any]:
    """zip, city, country, state and the address they make, for the ones `body` sends."""
    changes: dict[str, Any] = {}
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
    return changes


# ---------------------------------------------------------------- add custom attributes by email


def add_custom_by_email(store: Store, body: Any) -> list[dict]:
    """POST /v1/customers/attributes/custom: the keys on every customer with that email (any case)."""
    body = _object(body)
    email = _required_string(body, "email")
    if "custom" not in body:
        raise missing("custom")
    items = attrs.validate_custom_items(body["custom"])
    if not items:
        raise bad_param('Parameter "custom" must contain at least one custom attribute', "custom")
    with store.lock:
        attrs.check_type_conflicts(items, store.definitions)
        ids = store.ids_with_email(email)
        if not ids:
            raise no_customer_with_email(email)
        store.define({key: attr_type for key, attr_type, _ in items})
        entries = [_add_custom(store, cid, items) for cid in ids]
        store.writes_applied += 1
        return entries


def _add_custom(store: Store, cid: int, items: list[attrs.Item]) -> dict:
    """Set `items` on customer `cid`; its entry in the answer."""
    doc = store.doc(cid)
    attributes = doc.get("attributes")
    if not isinstance(attributes, dict):
        attributes = doc["attributes"] = {"tags": [], "custom": {}, "stripe": {}}
    # A customer whose `custom` was nulled (admin API) has no attributes yet: start from {}.
    custom = attributes.get("custom")
    if not isinstance(custom, dict):
        custom = attributes["custom"] = {}
    for key, _, value in items:
        custom[key] = value
    store.put(doc, new=False)
    entry = {k: doc.get(k) for k in EMAIL_ENTRY_KEYS}
    entry["attributes"] = {
        "tags": attributes.get("tags", []),
        "stripe": attributes.get("stripe", {}),
        "clearbit": {},
        "custom": custom,
    }
    return entry
