"""Push kind `by_email` (reverse_etl.chartmogul_by_email): one add-by-email POST per email.

The POST applies to every customer with that email (that is what the relation asks for). Plan
(decide.decide_by_email): an email with no customer in the warehouse is rejected; an email whose
customers all hold the values already is skipped with no call. Apply: search the email (search.py) and
send the POST only when ChartMogul's customers with it are exactly the warehouse's (otherwise rejected,
naming the uuids found); its answer is written back to chartmogul.customers. A dry run makes no call.
"""

from __future__ import annotations

from functools import partial

from sqlalchemy.engine import Engine

from cm_pipeline.push.decide import ByEmailKnown, decide_by_email, parse_by_email
from cm_pipeline.push.engine import PushKind, RowRun
from cm_pipeline.push.pending import resolve_email_post
from cm_pipeline.push.preview import entries_changes
from cm_pipeline.push.push_log import api_rejections
from cm_pipeline.push.rows import EmailGroup
from cm_pipeline.push.search import confirm_email_holders, reached_beyond
from cm_pipeline.warehouse.customers import customers_by_email, last_changed_by_email, write_attributes

NAME = "by_email"


def known(engine: Engine, groups: list[EmailGroup]) -> ByEmailKnown:
    """The warehouse's customers of each email, the emails the API rejected before, and when each
    email's rows last changed."""
    emails = [g.email.lower() for g in groups]
    return ByEmailKnown(
        holders=customers_by_email(engine, emails),
        remembered=api_rejections(engine, NAME),
        changed=last_changed_by_email(engine, emails),
    )


def apply(group: EmailGroup, row: RowRun, known: ByEmailKnown) -> None:
    """Search the email, POST its attributes when ChartMogul's customers with it are the warehouse's;
    every customer the API answers is written back."""
    payload = group.payload()
    holders = known.holders.get(group.email.lower(), [])
    expected = [h["uuid"] for h in holders]
    if not row.dry_run:
        confirm_email_holders(row, group.email, expected, payload)
    add = partial(row.client.add_custom_attributes, group.email, payload["custom"])
    sent = row.write(add, payload=payload, preview=entries_changes(holders, payload["custom"]))
    if sent is None:
        return
    entries, status = sent
    for got in entries:
        write_attributes(row.engine, got, row.answered_ns)
    if not entries:
        row.stop(
            "failed", payload=payload, http_status=status, error="the API matched no customer with this email"
        )
    if others := reached_beyond(entries, expected):
        row.stop(
            "failed",
            payload=payload,
            http_status=status,
            error=(
                f"the POST also reached {', '.join(others)}, which the search just before it did not find: a "
                "customer with that email was created in between (the known risk left: the moment between "
                "the search and the POST); the values stay on it; row left for the next run"
            ),
        )
    row.log("applied", payload=payload, http_status=status)


KIND = PushKind(
    name=NAME,
    required_columns=("email", "key", "type", "value"),
    parse=parse_by_email,
    known=known,
    decide=decide_by_email,
    apply=apply,
    resolve=resolve_email_post,
)
