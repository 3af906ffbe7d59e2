"""Settle the writes earlier runs left 'pending': a crash between a write and its outcome, or an answer
lost for good. Run first by every push of the kind, under its lock (so no pending write of the kind is
still in flight).

For each one the kind reads ChartMogul (`kind.resolve`: the customer, the email's customers, the
external id) and says whether what was sent is there: 'applied' when it is (the write landed; what was
read is written back to the warehouse), 'failed' when it is not (its row is pushed again by this very
run, if it still needs to be). A read that fails leaves it pending for the next run; 401/403 or an
unreachable API stop the run (failures.classify).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import ChartMogulError, NotFoundError
from cm_pipeline.push.failures import classify
from cm_pipeline.push.merge import values_equal
from cm_pipeline.push.push_log import pending_intents, resolve_intent
from cm_pipeline.warehouse.customers import write_entries


def resolve_pending(engine: Engine, client, run_id: str, kind) -> Counter:
    """Settle every pending write of `kind`; how many became applied, failed, or stay pending."""
    counts: Counter = Counter()
    for intent in pending_intents(engine, kind.name):
        try:
            landed, customers = kind.resolve(client, intent)
        except ChartMogulError as err:
            classify(err)  # raises FatalPushError when no call can get through
            counts["pending"] += 1
            continue
        if customers:
            write_entries(engine, customers)
        outcome = "applied" if landed else "failed"
        why = (
            "ChartMogul holds what was sent: the write landed"
            if landed
            else "ChartMogul does not hold what was sent: the write did not land; its row is pushed again"
        )
        resolve_intent(engine, intent["id"], outcome, f"resolved by run {run_id}: {why}")
        counts[outcome] += 1
    return counts


def holds_entries(customer: Any, entries: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a customer holds every {key, type, value} of an add-custom-attributes `custom` list."""
    attributes = customer.get("attributes") if isinstance(customer, dict) else None
    custom = attributes.get("custom") if isinstance(attributes, dict) else None
    if not isinstance(custom, dict):
        return False
    return all(
        e.get("key") in custom and values_equal(custom[e["key"]], e.get("value"), e.get("type"))
        for e in entries
    )


def read_customer(client, uuid: str) -> dict | None:
    """The customer, or None when ChartMogul has no such customer."""
    try:
        return client.retrieve_customer(uuid)
    except NotFoundError:
        return None


def resolve_email_post(client, intent: dict) -> tuple[bool, list[dict]]:
    """An add-by-email POST landed when every customer the email search finds holds its values (for
    the updates kind: the intent's target customer among them)."""
    payload = intent["payload"] or {}
    found = client.search_customers(payload.get("email") or "")
    mine = [c for c in found if c.get("uuid") == intent["target"]] or found
    return bool(mine) and all(holds_entries(c, payload.get("custom") or []) for c in mine), found
