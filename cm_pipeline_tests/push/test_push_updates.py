"""Push kind updates against the sandbox: merge safety, zero-call skips, validation, dry run, what is logged."""

from __future__ import annotations

import sqlalchemy as sa

from cm_pipeline.push.kinds import UPDATES
from cm_pipeline.push.run import push
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.push.conftest import (
    log_rows,
    make_updates,
    seed_customers,
    sync_warehouse,
    wh_customer,
    writes_at_sandbox,
)


def test_push_keeps_unmentioned_tags_and_attributes(ctl, client, wh):
    a, b, _ = seed_customers(ctl)
    sync_warehouse(wh, client)
    make_updates(
        wh,
        [
            {
                "customer_uuid": a["uuid"],
                "add_tags": ["vip"],
                "remove_tags": ["a"],
                "custom_attributes": {"CAC": "30"},
                "attribute_types": {"CAC": "Integer"},
            },
            {
                "customer_uuid": b["uuid"],
                "add_tags": [],
                "remove_tags": [],
                "custom_attributes": {"channel": None},
            },
        ],
    )
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["applied"] == 2 and result["rejected"] == result["failed"] == 0

    live_a = ctl.customer(a["uuid"])["attributes"]
    assert sorted(live_a["tags"]) == ["b", "vip"]
    assert live_a["custom"]["CAC"] == 30
    assert live_a["custom"]["channel"] == "Facebook"  # not mentioned: survives
    assert live_a["custom"]["vip_since"].startswith("2023-01-01")
    live_b = ctl.customer(b["uuid"])["attributes"]
    assert (
        "channel" not in live_b["custom"]
        and live_b["custom"]["CAC"] == 25
        and sorted(live_b["tags"]) == ["a", "b"]
    )

    # the PATCH response was written back into the warehouse
    row = wh_customer(wh, a["uuid"])
    assert sorted(row["tags"]) == ["b", "vip"] and row["custom_attributes"]["CAC"] == 30
    # each PATCH carried the whole merged state
    patches = [r for r in log_rows(wh, "run-1") if r["outcome"] == "applied"]
    sent = {r["target"]: r["payload"]["attributes"] for r in patches}
    assert set(sent[a["uuid"]]["custom"]) == {"channel", "CAC", "vip_since"}


def test_unchanged_rows_make_zero_calls(ctl, client, wh):
    a, b, c = seed_customers(ctl)
    sync_warehouse(wh, client)
    make_updates(
        wh,
        [
            {"customer_uuid": a["uuid"], "add_tags": ["b", "a"], "custom_attributes": {"CAC": 25.0}},
            {"customer_uuid": b["uuid"], "remove_tags": ["zzz"], "custom_attributes": {"gone": None}},
            {
                "customer_uuid": c["uuid"],
                "custom_attributes": {"vip_since": "2023-01-01"},
                "attribute_types": {"vip_since": "Timestamp"},
            },
        ],
    )
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["unchanged"] == 3 and result["calls"] == 0
    assert ctl.stats()["requests"] == 0

    # a real change, pushed once; the rerun then makes no call at all
    make_updates(wh, [{"customer_uuid": a["uuid"], "add_tags": ["new"]}])
    assert push(wh, client, "run-2", UPDATES)["applied"] == 1
    ctl.reset_stats()
    again = push(wh, client, "run-3", UPDATES)
    assert again["unchanged"] == 1 and ctl.stats()["requests"] == 0


def test_stale_warehouse_already_matching_live_is_not_patched(ctl, client, wh):
    (a,) = seed_customers(ctl, 1)
    sync_warehouse(wh, client)
    ctl.modify_customer(a["uuid"], tags=["a", "b", "vip"])  # someone tagged it in ChartMogul meanwhile
    make_updates(wh, [{"customer_uuid": a["uuid"], "add_tags": ["vip"]}])
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["unchanged"] == 1 and writes_at_sandbox(ctl) == 0
    assert "vip" in wh_customer(wh, a["uuid"])["tags"]  # warehouse refreshed from the GET


def test_string_attribute_changing_only_its_date_form_is_pushed(ctl, client, wh):
    (a,) = seed_customers(ctl, 1)
    ctl.modify_customer(a["uuid"], custom={"channel": "Facebook", "label": "2024-01-01"})  # a String key
    sync_warehouse(wh, client)
    make_updates(
        wh,
        [
            {
                "customer_uuid": a["uuid"],
                "custom_attributes": {"label": "2024-01-01T00:00:00Z"},
                "attribute_types": {"label": "String"},
            }
        ],
    )
    result = push(wh, client, "run-1", UPDATES)
    assert result["applied"] == 1
    assert ctl.customer(a["uuid"])["attributes"]["custom"]["label"] == "2024-01-01T00:00:00Z"


def test_every_class_of_bad_value_rejects_only_its_row(ctl, client, wh):
    customers = seed_customers(ctl, 8)
    sync_warehouse(wh, client)
    u = [c["uuid"] for c in customers]
    bad = [
        ({"channel": "x" * 256}, {}, "256 characters"),
        ({"CAC": "many"}, {"CAC": "Integer"}, "'many'"),
        ({"CAC": "1,5"}, {"CAC": "Decimal"}, "'1,5'"),
        ({"vip_since": "last tuesday"}, {"vip_since": "Timestamp"}, "'last tuesday'"),
        ({"flag": "yes"}, {"flag": "Boolean"}, "'yes'"),
        ({"CAC": 1}, {"CAC": "Money"}, "'Money'"),
        ({"bad key": 1}, {}, "invalid key"),
    ]
    rows = [
        {"customer_uuid": uuid, "custom_attributes": custom, "attribute_types": types}
        for uuid, (custom, types, _) in zip(u, bad, strict=False)
    ]
    rows.append({"customer_uuid": "cus_does-not-exist", "add_tags": ["x"]})
    rows.append({"customer_uuid": u[7], "add_tags": ["good"]})
    make_updates(wh, rows)
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["applied"] == 1 and result["rejected"] == len(bad) + 1 and result["failed"] == 0
    errors = {r["target"]: r["error"] for r in log_rows(wh, "run-1") if r["outcome"] == "rejected"}
    for uuid, (_, _, fragment) in zip(u, bad, strict=False):
        assert fragment in errors[uuid]
    assert "not in warehouse" in errors["cus_does-not-exist"]
    assert ctl.stats()["by_route"].get("PATCH /v1/customers/{uuid}") == 1  # only the good row was sent


def test_dry_run_calls_no_writes(ctl, client, wh):
    a, b, _ = seed_customers(ctl)
    sync_warehouse(wh, client)
    make_updates(
        wh,
        [
            {"customer_uuid": a["uuid"], "add_tags": ["vip"]},
            {"customer_uuid": b["uuid"], "custom_attributes": {"new_key": 5}},
        ],
    )
    before = {c["uuid"]: c["attributes"] for c in ctl.customers()}
    ctl.reset_stats()
    result = push(wh, client, "dry-1", UPDATES, dry_run=True)
    assert writes_at_sandbox(ctl) == 0
    assert {c["uuid"]: c["attributes"] for c in ctl.customers()} == before
    rows = log_rows(wh, "dry-1")
    assert result["dry_run"] == 3 and {r["outcome"] for r in rows} == {"dry_run"}
    payloads = [r["payload"] for r in rows]
    assert {
        "email": "c1@example.com",
        "custom": [{"type": "Integer", "key": "new_key", "value": 5}],
    } in payloads
    assert sorted(
        next(p for p in payloads if "attributes" in p and "vip" in p["attributes"]["tags"])["attributes"][
            "tags"
        ]
    ) == ["a", "b", "vip"]


def test_applied_rows_record_the_status_the_api_answered(ctl, client, wh):
    (a,) = seed_customers(ctl, 1)
    sync_warehouse(wh, client)
    make_updates(wh, [{"customer_uuid": a["uuid"], "add_tags": ["vip"]}])
    push(wh, client, "run-1", UPDATES)
    (row,) = log_rows(wh, "run-1")
    assert row["outcome"] == "applied" and row["http_status"] == 200
    statuses = [r["status"] for r in ctl.requests() if r["method"] == "PATCH"]
    assert statuses == [row["http_status"]]


def test_api_key_never_stored(ctl, client, wh):
    (a,) = seed_customers(ctl, 1)
    sync_warehouse(wh, client)
    make_updates(
        wh,
        [{"customer_uuid": a["uuid"], "add_tags": ["vip"]}, {"customer_uuid": "nope", "add_tags": ["x"]}],
    )
    ctl.configure(fault_rate=0.5, fault_seed=3)
    push(wh, client, "run-1", UPDATES)
    with wh.connect() as conn:
        text = conn.execute(sa.text("SELECT string_agg(t::text, '\n') FROM cm_pipeline.push_log t")).scalar()
        plan = conn.execute(sa.text("SELECT count(*) FROM cm_pipeline.push_plan")).scalar()
    assert text and TEST_API_KEY not in text
    assert plan == 0  # the run's plan is dropped when it ends
