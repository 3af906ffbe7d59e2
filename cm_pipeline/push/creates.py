"""Push kind `creates` (reverse_etl.chartmogul_creates): idempotent creates.

An existing (data_source_uuid, external_id) — in the warehouse (decide.decide_create, no call), or
found by the client after a 422 duplicate on the first attempt — is recorded 'unchanged' and never
duplicated. A 422 duplicate met on a retry, after an attempt whose answer was lost, is this run's own
create: 'applied'. A dry run looks each customer up instead.
"""

from __future__ import annotations

from functools import partial

from sqlalchemy.engine import Engine

from cm_pipeline.push.decide import CreatesKnown, decide_create, parse_creates
from cm_pipeline.push.engine import PushKind, RowRun
from cm_pipeline.push.preview import create_changes
from cm_pipeline.push.push_log import api_rejections
from cm_pipeline.push.rows import NewCustomer
from cm_pipeline.warehouse.customers import existing_external_ids, write_entries

NAME = "creates"


def known(engine: Engine, news: list[NewCustomer]) -> CreatesKnown:
    """The customers the warehouse has already, and the creates the API rejected before."""
    existing = existing_external_ids(engine, [(n.data_source_uuid, n.external_id) for n in news])
    return CreatesKnown(existing=existing, remembered=api_rejections(engine, NAME))


def apply(new: NewCustomer, row: RowRun, known: CreatesKnown) -> None:
    """Create the customer; a duplicate resolves to the existing one, recorded 'unchanged'."""
    if row.dry_run:
        find = partial(
            row.client.find_customers, external_id=new.external_id, data_source_uuid=new.data_source_uuid
        )
        found, status = row.call(find, payload=new.body)
        if found:
            row.log(
                "unchanged",
                http_status=status,
                error=f"exists already as customer {found[0].get('uuid')} (ChartMogul)",
            )
        else:
            row.write(
                row.client.create_customer, new.body, payload=new.body, preview=create_changes(new.body)
            )
        return
    result, _ = row.write(row.client.create_customer, new.body, payload=new.body)
    write_entries(row.engine, [result.customer], row.answered_ns)
    if result.created:
        row.log("applied", payload=new.body, http_status=result.status)
    elif result.after_lost_answer:
        error = (
            f"created as customer {result.customer.get('uuid')} by an earlier attempt whose answer was lost "
            "(the retry met the duplicate; found by lookup)"
        )
        row.log("applied", payload=new.body, http_status=result.status, error=error)
    else:  # the POST answered "external_id already exists" (its status is kept), then a lookup found it
        error = f"exists already as customer {result.customer.get('uuid')} (ChartMogul answered duplicate)"
        row.log("unchanged", payload=new.body, http_status=result.status, error=error)


def resolve(client, intent: dict) -> tuple[bool, list[dict]]:
    """A pending create landed when a lookup finds its (data_source_uuid, external_id)."""
    body = intent["payload"] or {}
    found = client.find_customers(
        external_id=body.get("external_id") or intent["target"], data_source_uuid=body.get("data_source_uuid")
    )
    return bool(found), found[:1]


KIND = PushKind(
    name=NAME,
    required_columns=("data_source_uuid", "external_id"),
    parse=parse_creates,
    known=known,
    decide=decide_create,
    apply=apply,
    resolve=resolve,
)
