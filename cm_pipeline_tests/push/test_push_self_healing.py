"""Self-healing (issue 12 item 2): keys judged from what the account has now, a 422 for a missing key
repaired in the same run, and rejections tried again once what they depended on changed."""

from __future__ import annotations

import sqlalchemy as sa

from cm_pipeline.push.kinds import BY_EMAIL, UPDATES
from cm_pipeline.push.push_log import LogEntry, record
from cm_pipeline.push.rows import update_fingerprint
from cm_pipeline.push.run import push
from cm_pipeline_tests.push.conftest import (
    BY_EMAIL_DDL,
    log_rows,
    make_relation,
    make_updates,
    seed_customers,
    sync_warehouse,
    type_conflict_row,
)


def _claim_key(wh, uuid: str, key: str) -> None:
    """Make the warehouse row of `uuid` hold `key` although the account lacks it (a stale warehouse:
    the key was deleted in ChartMogul since the refresh)."""
    with wh.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE chartmogul.customers SET custom_attributes = custom_attributes || "
                "jsonb_build_object(CAST(:k AS text), 1) WHERE uuid = :u"
            ),
            {"k": key, "u": uuid},
        )


def _ghost_row(uuid: str) -> dict:
    """A row setting `ghost_key` and adding a tag: after the POST creates the key, a PATCH remains."""
    return {
        "customer_uuid": uuid,
        "add_tags": ["healed"],
        "custom_attributes": {"ghost_key": 5},
        "attribute_types": {"ghost_key": "Integer"},
    }


def test_a_patch_refused_for_a_missing_key_creates_it_and_goes_through(ctl, client, wh):
    a, b = seed_customers(ctl, 2)
    sync_warehouse(wh, client)
    _claim_key(wh, b["uuid"], "ghost_key")  # the warehouse says the account has it; it does not
    make_updates(wh, [_ghost_row(a["uuid"])])
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert ctl.customer(a["uuid"])["attributes"]["custom"]["ghost_key"] == 5
    assert ctl.custom_attribute_definitions()["ghost_key"] == "Integer"
    assert sorted(ctl.customer(a["uuid"])["attributes"]["tags"]) == ["a", "b", "healed"]  # merged
    log = log_rows(wh, "run-1")
    assert [r["outcome"] for r in log] == ["failed", "applied", "applied"]  # PATCH 422, POST, PATCH
    assert log[0]["http_status"] == 422 and "does not exist" in log[0]["error"]
    assert result["rejected"] == 0  # never a permanent rejection
    routes = ctl.stats()["by_route"]
    assert routes["PATCH /v1/customers/{uuid}"] == 2 and routes["GET /v1/customers/search"] == 1


def test_a_missing_key_that_cannot_be_created_safely_is_failed_not_rejected(ctl, client, wh):
    a, b = seed_customers(ctl, 2)
    sync_warehouse(wh, client)
    _claim_key(wh, b["uuid"], "ghost_key")
    twin = ctl.insert_customer(email="c0@example.com", custom={})  # only in ChartMogul
    make_updates(wh, [_ghost_row(a["uuid"])])
    result = push(wh, client, "run-1", UPDATES)
    assert result["failed"] == 2 and result["rejected"] == 0 and result["applied"] == 0
    last = log_rows(wh, "run-1")[-1]
    assert last["outcome"] == "failed" and twin["uuid"] in last["error"]  # named, and tried again next run
    assert "ghost_key" not in ctl.custom_attribute_definitions()

    ctl.reset_stats()
    push(wh, client, "run-2", UPDATES)  # failed rows are not remembered: it is tried again
    assert ctl.stats()["by_route"]["PATCH /v1/customers/{uuid}"] == 1


def test_a_rejection_is_resent_once_the_customer_is_refreshed(ctl, client, wh):
    (a,) = seed_customers(ctl, 1)
    sync_warehouse(wh, client)
    make_updates(wh, [type_conflict_row(a["uuid"])])
    assert push(wh, client, "run-1", UPDATES)["rejected"] == 1
    ctl.reset_stats()
    assert push(wh, client, "run-2", UPDATES)["rejected"] == 1 and ctl.stats()["requests"] == 0
    assert "or refresh the customer to try again" in log_rows(wh, "run-2")[0]["error"]

    ctl.modify_customer(a["uuid"], name="Renamed")  # changed in ChartMogul, then refreshed
    sync_warehouse(wh, client)
    ctl.reset_stats()
    assert push(wh, client, "run-3", UPDATES)["rejected"] == 1
    assert ctl.stats()["by_route"]["PATCH /v1/customers/{uuid}"] == 1  # what it depended on changed: resent


def test_a_logged_missing_key_rejection_never_holds_a_row_back(ctl, client, wh):
    (a,) = seed_customers(ctl, 1)
    sync_warehouse(wh, client)
    row = _ghost_row(a["uuid"])
    make_updates(wh, [row])
    # What the old pusher logged on a second `make demo`: a remembered 422 for a missing key.
    error = "PATCH failed: HTTP 422 on PATCH /customers/x: Custom attribute 'ghost_key' does not exist"
    record(
        wh,
        "old-run",
        [LogEntry(UPDATES, a["uuid"], "rejected", update_fingerprint(row), http_status=422, error=error)],
    )
    result = push(wh, client, "run-1", UPDATES)
    assert result["applied"] == 2  # not "not resent": the key is created (POST) and the row pushed (PATCH)
    assert ctl.customer(a["uuid"])["attributes"]["custom"]["ghost_key"] == 5


def test_by_email_posts_only_to_the_customers_the_warehouse_expects(ctl, client, wh):
    a = ctl.insert_customer(email="team@example.com", custom={})
    sync_warehouse(wh, client)
    twin = ctl.insert_customer(email="TEAM@example.com", custom={})  # created in ChartMogul since the refresh
    make_relation(
        wh,
        "reverse_etl.chartmogul_by_email",
        BY_EMAIL_DDL,
        [{"email": "team@example.com", "key": "seats", "type": "Integer", "value": 3}],
    )
    ctl.reset_stats()
    first = push(wh, client, "run-1", BY_EMAIL)
    assert first["rejected"] == 1 and "POST /v1/customers/attributes/custom" not in ctl.stats()["by_route"]
    (row,) = log_rows(wh, "run-1")
    assert twin["uuid"] in row["error"] and a["uuid"] in row["error"] and row["http_status"] == 200
    assert "seats" not in ctl.customer(a["uuid"])["attributes"]["custom"]

    sync_warehouse(wh, client)  # the refresh brings the twin in: the rejection is tried again, and passes
    second = push(wh, client, "run-2", BY_EMAIL)
    assert second["applied"] == 1
    assert all(ctl.customer(c["uuid"])["attributes"]["custom"]["seats"] == 3 for c in (a, twin))
