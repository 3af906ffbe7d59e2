"""Push kind `by_email` (reverse_etl.chartmogul_by_email): one add-by-email POST per email.

The POST applies to every customer with that email (that is what the relation asks for). Plan
(decide.decide_by_email): an email with no customer in the warehouse is rejected; an email whose
customers all hold the values already is skipped with no call. Apply: the POST, its answer written
back to chartmogul.customers.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from cm_pipeline.push.decide import ByEmailKnown, decide_by_email, parse_by_email
from cm_pipeline.push.engine import PushKind, RowRun
from cm_pipeline.push.push_log import api_rejections
from cm_pipeline.push.rows import EmailGroup
from cm_pipeline.warehouse.customers import customers_by_email, write_attributes

NAME = "by_email"


def known(engine: Engine, groups: list[EmailGroup]) -> ByEmailKnown:
    """The warehouse's customers of each email, and the emails the API rejected before."""
    holders = customers_by_email(engine, [g.email.lower() for g in groups])
    return ByEmailKnown(holders=holders, remembered=api_rejections(engine, NAME))


def apply(group: EmailGroup, row: RowRun, known: ByEmailKnown) -> None:
    """POST the email's attributes; every customer the API answers is written back."""
    payload = group.payload()
    sent = row.write(row.client.add_custom_attributes, group.email, payload["custom"], payload=payload)
    if sent is None:
        return
    entries, status = sent
    for got in entries:
        write_attributes(row.engine, got, row.answered_ns)
    if not entries:
        row.stop(
            "failed", payload=payload, http_status=status, error="the API matched no customer with this email"
        )
    row.log("applied", payload=payload, http_status=status)


KIND = PushKind(
    name=NAME,
    required_columns=("email", "key", "type", "value"),
    parse=parse_by_email,
    known=known,
    decide=decide_by_email,
    apply=apply,
)
