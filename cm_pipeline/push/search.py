"""Search before every add-by-email POST: it goes out only when ChartMogul's customers with that email
are exactly the ones the warehouse expects.

The POST writes to every customer with the email (add-custom-attributes-by-email.txt), and the
reference's own Ruby and PHP examples search by email first. The warehouse count is the cheap first
filter (decided in the plan, no call); this search closes the gap a stale warehouse leaves (a customer
created in ChartMogul since the last refresh). What stays open is the moment between the search and
the POST: the POST's answer names every customer it reached, and a row whose answer names more is
recorded 'failed' with their uuids.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def mismatch_reason(email: str, found: list[str], expected: Collection[str]) -> str:
    """Why a POST was not sent: the email's customers in ChartMogul are not the ones expected (pure)."""
    return (
        f"email {email!r}: ChartMogul's search finds {len(found)} customer(s) ({', '.join(found) or 'none'}) "
        f"where the warehouse expects {', '.join(sorted(expected))}; the add-by-email POST would write to "
        "every customer with that email, so it was not sent (tried again once the warehouse is refreshed)"
    )


def confirm_email_holders(
    row, email: str, expected: Collection[str], payload: Any = None, outcome: str = "rejected"
) -> list[dict]:
    """The customers ChartMogul has with `email` when they are exactly `expected` (uuids); otherwise
    the row is recorded `outcome`, naming the uuids found, and stopped."""
    found, status = row.call(row.client.search_customers, email, what="email search", payload=payload)
    uuids = sorted(str(c.get("uuid")) for c in found if isinstance(c, dict))
    if set(uuids) != set(expected) or len(uuids) != len(found):
        row.stop(outcome, payload=payload, http_status=status, error=mismatch_reason(email, uuids, expected))
    return found


def reached_beyond(entries: list[dict], searched: Collection[str]) -> list[str]:
    """uuids an add-by-email POST answered that the search before it did not find (pure)."""
    return sorted(str(e.get("uuid")) for e in entries if e.get("uuid") not in set(searched))
