"""An honest audit (issue 14 item 7): a write that may have reached ChartMogul is always in push_log,
'pending' until its answer says how it went; a later run reads whether a pending write landed; a PATCH
whose answer was lost is not sent again when the customer already holds it."""

from __future__ import annotations

import pytest

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.push.kinds import BY_EMAIL, UPDATES
from cm_pipeline.push.run import push
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.push.conftest import (
    BY_EMAIL_DDL,
    log_rows,
    make_relation,
    make_updates,
    seed_customers,
    sync_warehouse,
    wh_customer,
)


def _one_attempt(sandbox) -> ChartMogulClient:
    """A client that never retries: an answer lost is lost for good."""
    return ChartMogulClient(TEST_API_KEY, sandbox.base_url, max_attempts=1, read_timeout=5)


def _routes(ctl) -> dict:
    return ctl.stats()["by_route"]


def test_every_lost_patch_answer_is_read_back_instead_of_resent(sandbox, ctl, client, wh):
    customers = seed_customers(ctl, 6)
    sync_warehouse(wh, client)
    make_updates(wh, [{"customer_uuid": c["uuid"], "add_tags": ["ü-vip"]} for c in customers])
    ctl.configure(fault_rate=1.0, fault_phase="after", fault_methods=["PATCH"], fault_kinds=["drop", "502"])
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["applied"] == 6 and result["failed"] == result["pending"] == 0
    assert _routes(ctl)["PATCH /v1/customers/{uuid}"] == 6  # each sent once (before: up to 8 times)
    assert _routes(ctl)["GET /v1/customers/{uuid}"] == 12  # the row's GET, and the read after the lost answer


@pytest.mark.parametrize(("phase", "landed"), [("after", True), ("before", False)])
def test_a_patch_whose_answer_is_lost_for_good_is_pending_then_settled(
    sandbox, ctl, client, wh, phase, landed
):
    (a,) = seed_customers(ctl, 1)
    sync_warehouse(wh, client)
    make_updates(wh, [{"customer_uuid": a["uuid"], "add_tags": ["vip"]}])
    ctl.configure(fault_rate=1.0, fault_phase=phase, fault_methods=["PATCH"], fault_kinds=["drop"])
    with _one_attempt(sandbox) as once:
        first = push(wh, once, "run-1", UPDATES)
    assert first["pending"] == 1 and first["failed"] == first["applied"] == 0  # unknown, not failed
    (intent,) = log_rows(wh, "run-1")
    assert intent["outcome"] == "pending" and "answer was lost" in intent["error"]
    assert intent["payload"]["attributes"]["tags"] == ["a", "b", "vip"]  # what was sent, logged before

    ctl.configure(fault_rate=0.0)
    ctl.reset_stats()
    second = push(wh, client, "run-2", UPDATES)
    (settled,) = log_rows(wh, "run-1")
    if landed:  # the read finds it there: applied, written back, and not sent again
        assert settled["outcome"] == "applied" and "the write landed" in settled["error"]
        assert second["unchanged"] == 1 and "PATCH /v1/customers/{uuid}" not in _routes(ctl)
    else:  # not there: failed, and this run sends it
        assert settled["outcome"] == "failed" and "did not land" in settled["error"]
        assert second["applied"] == 1 and _routes(ctl)["PATCH /v1/customers/{uuid}"] == 1
    assert sorted(wh_customer(wh, a["uuid"])["tags"]) == ["a", "b", "vip"]
    assert sorted(ctl.customer(a["uuid"])["attributes"]["tags"]) == ["a", "b", "vip"]


def test_a_by_email_post_whose_answer_is_lost_is_settled_without_a_second_post(sandbox, ctl, client, wh):
    ctl.insert_customer(email="team@example.com", custom={})
    sync_warehouse(wh, client)
    make_relation(
        wh,
        "reverse_etl.chartmogul_by_email",
        BY_EMAIL_DDL,
        [{"email": "team@example.com", "key": "seats", "type": "Integer", "value": 9}],
    )
    ctl.configure(fault_rate=1.0, fault_phase="after", fault_methods=["POST"], fault_kinds=["504"])
    with _one_attempt(sandbox) as once:
        assert push(wh, once, "run-1", BY_EMAIL)["pending"] == 1
    ctl.configure(fault_rate=0.0)
    ctl.reset_stats()
    second = push(wh, client, "run-2", BY_EMAIL)
    assert log_rows(wh, "run-1")[0]["outcome"] == "applied"
    assert second["unchanged"] == 1 and "POST /v1/customers/attributes/custom" not in _routes(ctl)
    assert _routes(ctl) == {"GET /v1/customers/search": 1}  # the one read that settled it
