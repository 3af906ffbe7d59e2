"""Push kind updates against the sandbox: merge safety, zero-call skips, new keys, rejections, faults."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.push.kinds import UPDATES
from cm_pipeline.push.run import push
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.push.conftest import (
    UPDATES_DDL,
    log_rows,
    make_relation,
    sync_warehouse,
    wh_customer,
    writes_at_sandbox,
)

REL = "reverse_etl.chartmogul_updates"


def seed(ctl, n: int = 3) -> list[dict]:
    return [
        ctl.insert_customer(
            name=f"C{i}",
            email=f"c{i}@example.com",
            tags=["a", "b"],
            custom={"channel": "Facebook", "CAC": 25, "vip_since": "2023-01-01T00:00:00.000Z"},
        )
        for i in range(n)
    ]


def test_push_keeps_unmentioned_tags_and_attributes(ctl, client, wh):
    a, b, _ = seed(ctl)
    sync_warehouse(wh, client)
    make_relation(
        wh,
        REL,
        UPDATES_DDL,
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
    a, b, c = seed(ctl)
    sync_warehouse(wh, client)
    make_relation(
        wh,
        REL,
        UPDATES_DDL,
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
    make_relation(wh, REL, UPDATES_DDL, [{"customer_uuid": a["uuid"], "add_tags": ["new"]}])
    assert push(wh, client, "run-2", UPDATES)["applied"] == 1
    ctl.reset_stats()
    again = push(wh, client, "run-3", UPDATES)
    assert again["unchanged"] == 1 and ctl.stats()["requests"] == 0


def test_stale_warehouse_already_matching_live_is_not_patched(ctl, client, wh):
    (a,) = seed(ctl, 1)
    sync_warehouse(wh, client)
    ctl.modify_customer(a["uuid"], tags=["a", "b", "vip"])  # someone tagged it in ChartMogul meanwhile
    make_relation(wh, REL, UPDATES_DDL, [{"customer_uuid": a["uuid"], "add_tags": ["vip"]}])
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["unchanged"] == 1 and writes_at_sandbox(ctl) == 0
    assert "vip" in wh_customer(wh, a["uuid"])["tags"]  # warehouse refreshed from the GET


def test_new_key_created_by_email_then_merged(ctl, client, wh):
    a, b, _ = seed(ctl)
    sync_warehouse(wh, client)
    make_relation(
        wh,
        REL,
        UPDATES_DDL,
        [
            {
                "customer_uuid": a["uuid"],
                "add_tags": ["scored"],
                "custom_attributes": {"health_score": "87", "CAC": 40},
                "attribute_types": {"health_score": "Integer"},
            }
        ],
    )
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["applied"] == 2 and result["failed"] == result["rejected"] == 0  # the POST and the PATCH
    assert ctl.custom_attribute_definitions()["health_score"] == "Integer"
    live = ctl.customer(a["uuid"])["attributes"]
    assert live["custom"]["health_score"] == 87 and live["custom"]["CAC"] == 40
    assert live["custom"]["channel"] == "Facebook" and sorted(live["tags"]) == ["a", "b", "scored"]
    assert "health_score" not in ctl.customer(b["uuid"])["attributes"]["custom"]
    routes = ctl.stats()["by_route"]
    assert (
        routes.get("POST /v1/customers/attributes/custom") == 1
        and routes.get("PATCH /v1/customers/{uuid}") == 1
    )
    posted = [r for r in log_rows(wh, "run-1") if r["payload"] and "email" in r["payload"]]
    assert posted[0]["payload"]["custom"] == [{"type": "Integer", "key": "health_score", "value": 87}]


def test_new_key_on_shared_email_is_rejected(ctl, client, wh):
    a = ctl.insert_customer(email="shared@example.com", tags=["x"], custom={"CAC": 1})
    ctl.insert_customer(email="shared@example.com", tags=[], custom={})
    sync_warehouse(wh, client)
    make_relation(
        wh, REL, UPDATES_DDL, [{"customer_uuid": a["uuid"], "custom_attributes": {"brand_new": "yes"}}]
    )
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert (
        result["rejected"] == 1 and ctl.stats()["requests"] == 0
    )  # decided from the warehouse: not even a GET
    (row,) = log_rows(wh, "run-1")
    assert (
        "brand_new" in row["error"] and "shared@example.com" in row["error"] and "2 customers" in row["error"]
    )
    assert "brand_new" not in ctl.custom_attribute_definitions()


def test_every_class_of_bad_value_rejects_only_its_row(ctl, client, wh):
    customers = seed(ctl, 8)
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
    make_relation(wh, REL, UPDATES_DDL, rows)
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["applied"] == 1 and result["rejected"] == len(bad) + 1 and result["failed"] == 0
    errors = {r["target"]: r["error"] for r in log_rows(wh, "run-1") if r["outcome"] == "rejected"}
    for uuid, (_, _, fragment) in zip(u, bad, strict=False):
        assert fragment in errors[uuid]
    assert "not in warehouse" in errors["cus_does-not-exist"]
    assert ctl.stats()["by_route"].get("PATCH /v1/customers/{uuid}") == 1  # only the good row was sent


def test_api_rejection_is_not_resent_until_the_row_changes(ctl, client, wh):
    (a,) = seed(ctl, 1)
    sync_warehouse(wh, client)
    # CAC is an Integer in the account; the row declares String, so only the API can refuse it.
    make_relation(
        wh,
        REL,
        UPDATES_DDL,
        [
            {
                "customer_uuid": a["uuid"],
                "custom_attributes": {"CAC": "lots"},
                "attribute_types": {"CAC": "String"},
            }
        ],
    )
    first = push(wh, client, "run-1", UPDATES)
    assert first["rejected"] == 1
    (row,) = log_rows(wh, "run-1")
    assert row["http_status"] == 422 and "CAC" in row["error"]

    ctl.reset_stats()
    second = push(wh, client, "run-2", UPDATES)
    assert second["rejected"] == 1 and ctl.stats()["requests"] == 0
    assert "not resent" in log_rows(wh, "run-2")[0]["error"]

    make_relation(wh, REL, UPDATES_DDL, [{"customer_uuid": a["uuid"], "custom_attributes": {"CAC": 99}}])
    assert push(wh, client, "run-3", UPDATES)["applied"] == 1
    assert ctl.customer(a["uuid"])["attributes"]["custom"]["CAC"] == 99


def test_dry_run_calls_no_writes(ctl, client, wh):
    a, b, _ = seed(ctl)
    sync_warehouse(wh, client)
    make_relation(
        wh,
        REL,
        UPDATES_DDL,
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


def test_faults_and_rate_limit_every_update_applied_exactly_once(sandbox, ctl, client, wh):
    customers = seed(ctl, 30)
    sync_warehouse(wh, client)
    make_relation(
        wh,
        REL,
        UPDATES_DDL,
        [
            {"customer_uuid": c["uuid"], "add_tags": [f"t{i}"], "custom_attributes": {"CAC": i}}
            for i, c in enumerate(customers)
        ],
    )
    ctl.configure(fault_rate=0.1, fault_phase="after", rate_limit_rps=20, retry_after=None, fault_seed=7)
    ctl.reset_stats()
    # The client is set above the sandbox's limit on purpose, so 429s happen and must be retried away.
    with ChartMogulClient(
        TEST_API_KEY,
        sandbox.base_url,
        max_requests_per_second=30,
        max_connections=8,
        read_timeout=5,
        max_attempts=12,
        backoff_base=0.1,
        backoff_max=1.0,
    ) as limited:
        result = push(wh, limited, "run-1", UPDATES, max_workers=8)
    stats = ctl.stats()
    assert stats["faults"] > 0 and stats["rate_limited"] > 0  # the run really went through both
    assert result["applied"] == 30 and result["failed"] == 0 and result["rejected"] == 0
    applied = [r["target"] for r in log_rows(wh, "run-1") if r["outcome"] == "applied"]
    assert sorted(applied) == sorted(c["uuid"] for c in customers)  # exactly one 'applied' per row
    # At the sandbox: each customer's PATCH was applied once. A PATCH may be received twice only
    # when its first answer was lost after it was applied ("after" faults) and the client resent it.
    patches: dict[str, list[dict]] = {}
    for req in ctl.requests():
        if req["method"] == "PATCH":
            patches.setdefault(req["path"].rsplit("/", 1)[-1], []).append(req)
    assert set(patches) == {c["uuid"] for c in customers}
    for uuid, received in patches.items():
        answered = [r for r in received if r["fault"] is None and r["status"] == 200]
        assert len(answered) == 1, (uuid, received)  # one PATCH answered: no second write was needed
        assert all(r["fault"] is not None or r["status"] == 429 for r in received if r not in answered)
    for i, c in enumerate(customers):
        attrs = ctl.customer(c["uuid"])["attributes"]
        assert sorted(attrs["tags"]) == sorted(["a", "b", f"t{i}"]) and attrs["custom"]["CAC"] == i
        assert attrs["custom"]["channel"] == "Facebook"
    ctl.configure(fault_rate=0.0, rate_limit_rps=None)
    ctl.reset_stats()
    assert push(wh, client, "run-2", UPDATES)["unchanged"] == 30 and ctl.stats()["requests"] == 0


def test_api_key_never_stored(ctl, client, wh):
    (a,) = seed(ctl, 1)
    sync_warehouse(wh, client)
    make_relation(
        wh,
        REL,
        UPDATES_DDL,
        [{"customer_uuid": a["uuid"], "add_tags": ["vip"]}, {"customer_uuid": "nope", "add_tags": ["x"]}],
    )
    ctl.configure(fault_rate=0.5, fault_seed=3)
    push(wh, client, "run-1", UPDATES)
    with wh.connect() as conn:
        text = conn.execute(sa.text("SELECT string_agg(t::text, '\n') FROM cm_pipeline.push_log t")).scalar()
        plan = conn.execute(sa.text("SELECT count(*) FROM cm_pipeline.push_plan")).scalar()
    assert text and TEST_API_KEY not in text
    assert plan == 0  # the run's plan is dropped when it ends


def test_malformed_get_answer_is_failed_and_nothing_is_patched(ctl, client, wh):
    a, b = seed(ctl, 2)
    sync_warehouse(wh, client)
    # The sandbox now answers GET with `custom: null` for a, and `tags: null` for b.
    ctl.modify_customer(a["uuid"], custom=None)
    ctl.modify_customer(b["uuid"], tags=None)
    make_relation(
        wh,
        REL,
        UPDATES_DDL,
        [
            {"customer_uuid": a["uuid"], "add_tags": ["vip"]},
            {"customer_uuid": b["uuid"], "custom_attributes": {"CAC": 30}},
        ],
    )
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["failed"] == 2 and result["applied"] == 0
    assert writes_at_sandbox(ctl) == 0  # no PATCH: nothing can have been wiped
    errors = {r["target"]: r for r in log_rows(wh, "run-1")}
    assert "attributes.custom is None" in errors[a["uuid"]]["error"]
    assert "attributes.tags is None" in errors[b["uuid"]]["error"]
    assert {r["http_status"] for r in errors.values()} == {200}  # what the GET answered
    assert sorted(wh_customer(wh, a["uuid"])["tags"]) == ["a", "b"]  # not overwritten from the bad answer

    # Once the API answers a real customer again, the failed rows are retried and merged safely.
    ctl.modify_customer(a["uuid"], custom={"channel": "Facebook"})
    ctl.modify_customer(b["uuid"], tags=["a"])
    again = push(wh, client, "run-2", UPDATES)
    assert again["applied"] == 2
    assert ctl.customer(a["uuid"])["attributes"]["custom"] == {"channel": "Facebook"}
    assert sorted(ctl.customer(a["uuid"])["attributes"]["tags"]) == ["a", "b", "vip"]
    assert ctl.customer(b["uuid"])["attributes"]["tags"] == ["a"]


def test_applied_rows_record_the_status_the_api_answered(ctl, client, wh):
    (a,) = seed(ctl, 1)
    sync_warehouse(wh, client)
    make_relation(wh, REL, UPDATES_DDL, [{"customer_uuid": a["uuid"], "add_tags": ["vip"]}])
    push(wh, client, "run-1", UPDATES)
    (row,) = log_rows(wh, "run-1")
    assert row["outcome"] == "applied" and row["http_status"] == 200
    statuses = [r["status"] for r in ctl.requests() if r["method"] == "PATCH"]
    assert statuses == [row["http_status"]]


def test_failed_row_is_retried_and_applied_on_the_next_run(sandbox, ctl, client, wh):
    a, b = seed(ctl, 2)
    sync_warehouse(wh, client)
    make_relation(
        wh,
        REL,
        UPDATES_DDL,
        [
            {"customer_uuid": a["uuid"], "add_tags": ["vip"]},
            {"customer_uuid": b["uuid"], "custom_attributes": {"CAC": 7}},
        ],
    )
    ctl.configure(fault_rate=1.0, fault_kinds=["503"], fault_seed=1)
    with ChartMogulClient(
        TEST_API_KEY,
        sandbox.base_url,
        read_timeout=5,
        max_retry_seconds=0.3,
        backoff_base=0.02,
        backoff_max=0.05,
    ) as impatient:
        first = push(wh, impatient, "run-1", UPDATES)
    assert first["failed"] == 2 and first["applied"] == 0
    assert {r["http_status"] for r in log_rows(wh, "run-1")} == {503}
    assert ctl.customer(a["uuid"])["attributes"]["tags"] == ["a", "b"]

    ctl.configure(fault_rate=0.0)
    second = push(wh, client, "run-2", UPDATES)
    assert second["applied"] == 2 and second["failed"] == 0
    assert sorted(ctl.customer(a["uuid"])["attributes"]["tags"]) == ["a", "b", "vip"]
    assert ctl.customer(b["uuid"])["attributes"]["custom"]["CAC"] == 7
    assert ctl.customer(b["uuid"])["attributes"]["custom"]["channel"] == "Facebook"


def test_string_attribute_changing_only_its_date_form_is_pushed(ctl, client, wh):
    (a,) = seed(ctl, 1)
    ctl.modify_customer(a["uuid"], custom={"channel": "Facebook", "label": "2024-01-01"})  # a String key
    sync_warehouse(wh, client)
    make_relation(
        wh,
        REL,
        UPDATES_DDL,
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


def _new_key_row(uuid: str) -> dict:
    return {
        "customer_uuid": uuid,
        "custom_attributes": {"health_score": 87},
        "attribute_types": {"health_score": "Integer"},
    }


def test_email_shared_in_chartmogul_but_unique_in_warehouse_is_failed_with_the_known_risk(ctl, client, wh):
    (a,) = seed(ctl, 1)
    sync_warehouse(wh, client)
    twin = ctl.insert_customer(email="c0@example.com", tags=["t"], custom={})  # not in the warehouse yet
    make_relation(wh, REL, UPDATES_DDL, [_new_key_row(a["uuid"])])
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["failed"] == 1 and result["applied"] == 0
    assert ctl.stats()["by_route"].get("PATCH /v1/customers/{uuid}") is None
    (row,) = log_rows(wh, "run-1")
    assert twin["uuid"] in row["error"] and "matched 2 customers" in row["error"]
    assert "checked only in the warehouse" in row["error"] and "known risk" in row["error"]
    assert row["http_status"] == 200


def test_malformed_add_by_email_entry_is_failed_and_nothing_is_patched(ctl, client, wh):
    (a,) = seed(ctl, 1)
    sync_warehouse(wh, client)
    ctl.insert_customer(email="c0@example.com", tags=None, custom={})  # its POST entry has `tags: null`
    make_relation(wh, REL, UPDATES_DDL, [_new_key_row(a["uuid"])])
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["failed"] == 1
    assert ctl.stats()["by_route"].get("PATCH /v1/customers/{uuid}") is None
    (row,) = log_rows(wh, "run-1")
    assert "add-by-email POST entry" in row["error"] and "attributes.tags is None" in row["error"]
    assert sorted(ctl.customer(a["uuid"])["attributes"]["tags"]) == ["a", "b"]


@pytest.mark.parametrize("kind", ["empty_body", "empty_object"])
def test_empty_200_get_answer_is_failed_and_sends_no_patch(ctl, client, wh, kind):
    """GET /customers/{uuid} answering 200 with an empty body or `{}`: nothing to merge onto, so no PATCH
    (which would replace every tag and attribute with the row's few) and the customer is untouched."""
    a, b = seed(ctl, 2)
    sync_warehouse(wh, client)
    before = {c["uuid"]: ctl.customer(c["uuid"])["attributes"] for c in (a, b)}
    make_relation(
        wh,
        REL,
        UPDATES_DDL,
        [
            {"customer_uuid": a["uuid"], "add_tags": ["vip"]},
            {"customer_uuid": b["uuid"], "custom_attributes": {"CAC": 30}},
        ],
    )
    log = ctl.requests()
    start = log[-1]["seq"] if log else 0
    ctl.configure(fault_rate=1.0, fault_kinds=[kind], fault_methods=["GET"])
    result = push(wh, client, "run-1", UPDATES)
    assert result["failed"] == 2 and result["applied"] == 0
    api = [r for r in ctl.requests(since=start) if r["path"].startswith("/v1/")]
    assert [r["method"] for r in api if r["method"] == "PATCH"] == []
    gets = [r for r in api if r["method"] == "GET"]
    assert len(gets) == 2 and {(r["fault"], r["status"]) for r in gets} == {(kind, 200)}
    for target in (a["uuid"], b["uuid"]):
        (row,) = [r for r in log_rows(wh, "run-1") if r["target"] == target]
        assert row["outcome"] == "failed" and row["http_status"] == 200
        assert f"GET /customers/{target}: the answer is empty (no customer object)" in row["error"]
        assert "nothing was merged or sent" in row["error"]
        assert ctl.customer(target)["attributes"] == before[target]  # tags and custom untouched
    assert sorted(wh_customer(wh, a["uuid"])["tags"]) == ["a", "b"]

    ctl.configure(fault_rate=0.0)  # a real answer again: the failed rows go through on the next run
    again = push(wh, client, "run-2", UPDATES)
    assert again["applied"] == 2
    assert sorted(ctl.customer(a["uuid"])["attributes"]["tags"]) == ["a", "b", "vip"]
    assert ctl.customer(b["uuid"])["attributes"]["custom"]["CAC"] == 30
    assert ctl.customer(b["uuid"])["attributes"]["custom"]["channel"] == "Facebook"
