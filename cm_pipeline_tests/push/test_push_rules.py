"""The pure rules of the push's health, audit and self-healing, tested with no network and no database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cm_pipeline.chartmogul.errors import (
    AuthenticationError,
    RateLimitError,
    ServerError,
    TransportError,
    UnprocessableEntityError,
)
from cm_pipeline.push.decide import Rejection, is_missing_attribute, remembered_rejection
from cm_pipeline.push.failures import FatalPushError, classify, outcome_unknown
from cm_pipeline.push.health import THRESHOLD_FROM_ROWS, assess, check_share, failure_message, reason_of
from cm_pipeline.push.preview import entries_changes, markdown_table, state_changes
from cm_pipeline.push.search import mismatch_reason, reached_beyond

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_reasons_are_counted_by_shape():
    a = reason_of("customer cus_1a2b-3c not in warehouse (unknown or deleted)")
    b = reason_of("customer cus_9f9f_x not in warehouse (unknown or deleted)")
    assert a == b == "customer cus_… not in warehouse (unknown or deleted)"
    assert reason_of("email 'x@y.com' belongs to 2 customers") == "email '…' belongs to N customers"
    assert reason_of(None) == "no error text" and len(reason_of("x" * 500)) == 160


@pytest.mark.parametrize(
    ("rows", "bad", "over"),
    [
        (THRESHOLD_FROM_ROWS - 1, THRESHOLD_FROM_ROWS - 1, False),
        (20, 1, False),
        (20, 2, True),
        (100, 5, False),
        (100, 6, True),
    ],
)
def test_the_threshold_counts_rows_from_twenty_up(rows, bad, over):
    final = [("rejected", "bad row")] * bad + [("applied", None)] * (rows - bad)
    assert assess(final, 0.05).over is over


def test_the_failure_message_names_counts_reasons_and_query():
    final = [("rejected", f"customer cus_{i} not in warehouse") for i in range(3)]
    final += [("failed", "HTTP 503 on GET")] * 2
    final += [("rejected", "value 'x' is not an Integer")] + [("failed", "odd")] + [("applied", None)] * 13
    health = assess(final, 0.05)
    assert (health.rows, health.rejected, health.failed, health.over) == (20, 4, 3, True)
    message = failure_message("updates", "run-1", health)
    assert "7 of 20 rows rejected or failed (4 rejected, 3 failed, 35.0%)" in message
    assert message.index("3 × customer cus_…") < message.index("2 × HTTP N on GET") < message.index("1 × ")
    assert message.count(" × ") == 3  # the top three only
    assert "WHERE run_id = 'run-1' AND kind = 'updates'" in message


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.05", True])
def test_a_bad_share_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="max_rejected_share"):
        check_share(bad)


def test_the_dry_run_table_shows_the_first_twenty_rows_field_by_field():
    previews = [
        (i, f"cus_{i}", state_changes(["a"], {"CAC": i}, ["a", "vip"], {"CAC": i + 1})) for i in range(25)
    ]
    lines = markdown_table(previews).splitlines()
    assert len(lines) == 2 + 20 * 2
    assert "| 1 | cus_0 | tags | a | a, vip |" in lines and "| 1 | cus_0 | custom.CAC | 0 | 1 |" in lines
    assert not any("cus_20" in line for line in lines)
    assert markdown_table([]) == "No change planned."
    escaped = markdown_table([(0, "x", [("custom.k", "a|b", "c\nd")])])
    assert "a\\|b" in escaped and "c d" in escaped
    assert entries_changes([{"custom_attributes": {"seats": 1}}, {"custom_attributes": {}}],
                           [{"key": "seats", "value": 4}]) == [("custom.seats", "1 / —", 4)]  # fmt: skip


def test_a_remembered_rejection_waits_for_what_it_depended_on():
    class Item:
        target, fingerprint = "cus_1", "fp"

    remembered = {("cus_1", "fp"): Rejection(422, "CAC: not an Integer", T0)}
    assert remembered_rejection(Item, remembered).outcome == "rejected"
    assert remembered_rejection(Item, remembered, T0 - timedelta(seconds=1)) is not None
    assert remembered_rejection(Item, remembered, T0 + timedelta(seconds=1)) is None  # refreshed since
    missing = {("cus_1", "fp"): Rejection(422, "Custom attribute 'k' does not exist in this account", T0)}
    assert remembered_rejection(Item, missing) is None  # never held back: the key gets created
    assert is_missing_attribute("custom attribute does not exist") and not is_missing_attribute("CAC is bad")


def test_a_write_whose_answer_was_lost_has_an_unknown_outcome():
    assert outcome_unknown(TransportError("dropped")) and outcome_unknown(ServerError("x", status=502))
    assert not outcome_unknown(TransportError("refused", reached=False))
    assert not outcome_unknown(RateLimitError("slow down", status=429))
    earlier = RateLimitError("slow down", status=429)
    earlier.after_lost_answer = True
    assert outcome_unknown(earlier)  # an earlier attempt's answer was lost
    assert classify(UnprocessableEntityError("bad", status=422)) == "rejected"
    with pytest.raises(FatalPushError, match="refused the credentials"):
        classify(AuthenticationError("No valid API key provided", status=401))


def test_search_mismatches_name_the_uuids():
    text = mismatch_reason("a@x.com", ["cus_1", "cus_2"], ["cus_1"])
    assert "finds 2 customer(s) (cus_1, cus_2) where the warehouse expects cus_1" in text
    assert reached_beyond([{"uuid": "cus_1"}, {"uuid": "cus_9"}], ["cus_1"]) == ["cus_9"]
