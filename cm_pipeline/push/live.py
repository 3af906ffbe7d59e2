"""Check that an API answer is a well-formed customer before anything is merged onto it (pure).

PATCH replaces all tags and all custom attributes, so merging onto an answer that lacks them (an
empty 2xx body, which the client returns as {}, a body for another customer, `custom: null`...) would
send "no tags, no attributes" and delete them all. Every customer the retrieve-customer and
update-customer pages show, and every entry of the add-custom-attributes-by-email answer, carries
its `uuid` and an `attributes` object holding a `tags` array and a `custom` object: anything else is
refused here, and the caller records the row `failed` and sends nothing.
"""

from __future__ import annotations

from typing import Any


class MalformedCustomer(ValueError):
    """An API answer that is not the customer it should be; the message says what is wrong."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def live_state(answer: Any, uuid: str | None, what: str) -> tuple[list[str], dict[str, Any]]:
    """(tags, custom attributes) of a customer answer; MalformedCustomer unless it is well-formed.

    `uuid`: the customer asked for (None to accept any non-empty uuid, e.g. another customer of an
    add-by-email answer). `what` names the answer in the message, e.g. "GET /customers/{uuid}".
    """
    if not isinstance(answer, dict):
        raise MalformedCustomer(f"{what}: the answer is {type(answer).__name__}, not a customer object")
    if not answer:
        raise MalformedCustomer(f"{what}: the answer is empty (no customer object)")
    got = answer.get("uuid")
    if not isinstance(got, str) or not got:
        raise MalformedCustomer(f"{what}: the answer has no customer uuid (uuid = {_show(got)})")
    if uuid is not None and got != uuid:
        raise MalformedCustomer(f"{what}: the answer is for customer {got}, not {uuid}")
    attributes = answer.get("attributes")
    if not isinstance(attributes, dict):
        raise MalformedCustomer(f"{what}: attributes is {_show(attributes)}, not an object")
    tags = attributes.get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise MalformedCustomer(f"{what}: attributes.tags is {_show(tags)}, not an array of strings")
    custom = attributes.get("custom")
    if not isinstance(custom, dict):
        raise MalformedCustomer(f"{what}: attributes.custom is {_show(custom)}, not an object")
    return list(tags), dict(custom)
