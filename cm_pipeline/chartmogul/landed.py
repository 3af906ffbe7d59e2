"""Whether a write the client sent already landed: the check made before resending a PATCH whose answer
was lost (client.update_customer's default; the push passes a typed one of its own)."""

from __future__ import annotations

from typing import Any


def holds_fields(customer: Any, body: dict) -> bool:
    """Whether `customer` already holds every field of a PATCH `body`: tags as a set, custom attributes
    and other fields exactly (a value the API stored in another form counts as not held)."""
    if not isinstance(customer, dict):
        return False
    for field, sent in body.items():
        if field != "attributes":
            if customer.get(field) != sent:
                return False
            continue
        have = customer.get("attributes")
        if not isinstance(have, dict) or not isinstance(sent, dict):
            return False
        if set(have.get("tags") or []) != set(sent.get("tags") or []):
            return False
        if (have.get("custom") or {}) != (sent.get("custom") or {}):
            return False
    return True
