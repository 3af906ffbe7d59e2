"""Push kinds by_email and creates against the sandbox."""

from __future__ import annotations

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.push.kinds import BY_EMAIL, CREATES
from cm_pipeline.push.run import push
from cm_pipeline.sandbox.seed import DOCS_DATA_SOURCE
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.push.conftest import (
    BY_EMAIL_DDL,
    CREATES_DDL,
    log_rows,
    make_relation,
    sync_warehouse,
    writes_at_sandbox,
)

BY_EMAIL_REL = "reverse_etl.chartmogul_by_email"
CREATES_REL = "reverse_etl.chartmogul_creates"


def test_by_email_sets_every_customer_of_the_email_and_then_skips(ctl, client, wh):
    a = ctl.insert_customer(email="team@example.com", tags=["keep"], custom={"CAC": 1})
    b = ctl.insert_customer(email="Team@Example.com", custom={})
    other = ctl.insert_customer(email="other@example.com", custom={})
    sync_warehouse(wh, client)
    make_relation(
        wh,
        BY_EMAIL_REL,
        BY_EMAIL_DDL,
        [
            {"email": "team@example.com", "key": "seats", "type": "Integer", "value": "12", "source": "dbt"},
            {"email": "team@example.com", "key": "plan_tier", "type": "String", "value": "gold"},
            {"email": "team@example.com", "key": "renewal", "type": "Timestamp", "value": "not a date"},
            {"email": "ghost@example.com", "key": "seats", "type": "Integer", "value": 1},
        ],
    )
    ctl.reset_stats()
    result = push(wh, client, "run-1", BY_EMAIL)
    assert result["applied"] == 1 and result["rejected"] == 2
    # the search first (exactly the warehouse's two customers), then the one POST
    assert ctl.stats()["by_route"] == {
        "GET /v1/customers/search": 1,
        "POST /v1/customers/attributes/custom": 1,
    }
    for uuid in (a["uuid"], b["uuid"]):
        custom = ctl.customer(uuid)["attributes"]["custom"]
        assert custom["seats"] == 12 and custom["plan_tier"] == "gold"
    assert ctl.customer(a["uuid"])["attributes"]["custom"]["CAC"] == 1
    assert ctl.customer(a["uuid"])["attributes"]["tags"] == ["keep"]
    assert "seats" not in ctl.customer(other["uuid"])["attributes"]["custom"]
    errors = " | ".join(r["error"] for r in log_rows(wh, "run-1") if r["outcome"] == "rejected")
    assert "'renewal'" in errors and "'not a date'" in errors and "ghost@example.com" in errors

    ctl.reset_stats()
    again = push(wh, client, "run-2", BY_EMAIL)
    assert again["unchanged"] == 1 and ctl.stats()["requests"] == 0  # written back: no second call


def test_by_email_dry_run_calls_nothing(ctl, client, wh):
    ctl.insert_customer(email="solo@example.com", custom={})
    sync_warehouse(wh, client)
    make_relation(
        wh,
        BY_EMAIL_REL,
        BY_EMAIL_DDL,
        [{"email": "solo@example.com", "key": "seats", "type": "Integer", "value": 3}],
    )
    ctl.reset_stats()
    result = push(wh, client, "dry", BY_EMAIL, dry_run=True)
    assert result["dry_run"] == 1 and ctl.stats()["requests"] == 0
    assert log_rows(wh, "dry")[0]["payload"] == {
        "email": "solo@example.com",
        "custom": [{"type": "Integer", "key": "seats", "value": 3}],
    }


def _lead(external_id: str, **extra) -> dict:
    return {
        "data_source_uuid": DOCS_DATA_SOURCE,
        "external_id": external_id,
        "name": f"Lead {external_id}",
        "email": f"{external_id}@example.com",
        "lead_created_at": "2024-01-02T03:04:05+00:00",
        "tags": ["lead"],
        "custom": [{"type": "Integer", "key": "age", "value": "18"}],
        **extra,
    }


def test_creates_are_idempotent(ctl, client, wh):
    existing = ctl.insert_customer(
        data_source_uuid=DOCS_DATA_SOURCE, external_id="ext_known", email="k@example.com"
    )
    sync_warehouse(wh, client)
    make_relation(
        wh,
        CREATES_REL,
        CREATES_DDL,
        [
            _lead("ext_known"),
            _lead("ext_new1"),
            _lead("ext_new2", company="ACME", primary_contact={"first_name": "Ada"}),
            _lead("ext_bad", lead_created_at="2999-01-01T00:00:00Z"),
            {"data_source_uuid": DOCS_DATA_SOURCE, "external_id": None, "name": "no id"},
        ],
    )
    ctl.reset_stats()
    result = push(wh, client, "run-1", CREATES)
    assert result["applied"] == 2 and result["unchanged"] == 1 and result["rejected"] == 2
    assert ctl.stats()["by_route"] == {"POST /v1/customers": 2}
    by_ext = {}
    for c in ctl.customers():
        by_ext.setdefault(c["external_id"], []).append(c)
    assert len(by_ext["ext_known"]) == 1 and by_ext["ext_known"][0]["uuid"] == existing["uuid"]
    assert len(by_ext["ext_new1"]) == 1 and by_ext["ext_new1"][0]["attributes"]["custom"]["age"] == 18
    assert by_ext["ext_new2"][0]["company"] == "ACME"
    statuses = {r["target"]: r["http_status"] for r in log_rows(wh, "run-1")}
    assert statuses["ext_new1"] == statuses["ext_new2"] == 201  # what the sandbox answered the POSTs

    ctl.reset_stats()
    again = push(wh, client, "run-2", CREATES)
    assert again["unchanged"] == 3 and again["applied"] == 0 and ctl.stats()["requests"] == 0


def test_create_retried_after_lost_response_is_not_duplicated(sandbox, ctl, wh):
    make_relation(wh, CREATES_REL, CREATES_DDL, [_lead(f"ext_{i}") for i in range(12)])
    # half the POSTs are applied and then their response is lost: the client retries and meets the 422
    ctl.configure(
        fault_rate=0.5, fault_phase="after", fault_methods=["POST"], fault_kinds=["502", "drop"], fault_seed=5
    )
    with ChartMogulClient(
        TEST_API_KEY,
        sandbox.base_url,
        max_requests_per_second=100,
        read_timeout=5,
        backoff_base=0.02,
        backoff_max=0.1,
        max_attempts=10,
    ) as client:
        result = push(wh, client, "run-1", CREATES)
    assert ctl.stats()["faults"] > 0
    assert result["failed"] == 0 and result["applied"] + result["unchanged"] == 12
    externals = [c["external_id"] for c in ctl.customers()]
    assert sorted(externals) == sorted(f"ext_{i}" for i in range(12))  # one customer each, never two
    # Issue 14 item 7: each of the 12 was created by this run, so each is 'applied', also the ones whose
    # answer was lost and whose retry met the duplicate (before: logged 'unchanged').
    assert result["applied"] == 12 and result["unchanged"] == 0
    lost = [r for r in log_rows(wh, "run-1") if r["error"] and "answer was lost" in r["error"]]
    assert lost and {r["outcome"] for r in lost} == {"applied"}
    assert {r["http_status"] for r in lost} == {422}  # the status of the POST that met the duplicate


def test_identical_duplicate_create_rows_make_one_create_and_one_skip_row_each(ctl, client, wh):
    make_relation(wh, CREATES_REL, CREATES_DDL, [_lead("ext_twice"), _lead("ext_twice"), _lead("ext_twice")])
    ctl.reset_stats()
    result = push(wh, client, "run-1", CREATES)
    assert result["applied"] == 1 and result["unchanged"] == 2
    assert ctl.stats()["by_route"] == {"POST /v1/customers": 1}
    skips = [r for r in log_rows(wh, "run-1") if r["outcome"] == "unchanged"]
    assert len(skips) == 2 and all("duplicate of another row in this run" in r["error"] for r in skips)
    assert [c["external_id"] for c in ctl.customers()] == ["ext_twice"]


def test_create_dry_run_calls_no_writes(ctl, client, wh):
    ctl.insert_customer(data_source_uuid=DOCS_DATA_SOURCE, external_id="ext_cm_only")  # not in the warehouse
    make_relation(wh, CREATES_REL, CREATES_DDL, [_lead("ext_cm_only"), _lead("ext_fresh")])
    ctl.reset_stats()
    result = push(wh, client, "dry", CREATES, dry_run=True)
    assert writes_at_sandbox(ctl) == 0
    assert result["dry_run"] == 1 and result["unchanged"] == 1
    (dry,) = [r for r in log_rows(wh, "dry") if r["outcome"] == "dry_run"]
    assert dry["payload"]["external_id"] == "ext_fresh" and dry["payload"]["attributes"]["tags"] == ["lead"]
