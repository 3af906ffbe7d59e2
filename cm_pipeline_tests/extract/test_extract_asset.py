"""chartmogul_customers end to end: Dagster runs against the sandbox over real sockets, into real Postgres."""

from __future__ import annotations

import threading

import dagster as dg
import sqlalchemy as sa
from dagster._serdes import serialize_value

from cm_pipeline.sandbox import SandboxServer
from cm_pipeline.warehouse.locks import AdvisoryLock
from cm_pipeline.warehouse.schema import CUSTOMER_DATA_COLUMNS
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.extract.conftest import (
    check_results,
    exact_table,
    materialization_metadata,
    query,
    refresh,
    snapshot,
)
from cm_pipeline_tests.reference_examples import (
    LIST_EXAMPLE,
    RETRIEVE_EXAMPLE,
    TRICKY_STRINGS,
    expected_columns,
)


def row_by_uuid(db_url: str, uuid: str) -> dict:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return dict(
                conn.execute(sa.text("SELECT * FROM chartmogul.customers WHERE uuid = :u"), {"u": uuid})
                .mappings()
                .one()
            )
    finally:
        engine.dispose()


def test_reference_examples_land_field_by_field(sandbox, fresh_db):
    ctl = sandbox.control
    ctl.insert_customer(**LIST_EXAMPLE)
    retrieve = {**RETRIEVE_EXAMPLE, "uuid": "cus_retrieve_example", "id": 25648, "external_id": "34916130"}
    retrieve["external_ids"] = ["34916130"]
    ctl.insert_customer(**retrieve)

    result = refresh(sandbox.base_url, fresh_db)
    assert result.success

    for uuid, source in ((LIST_EXAMPLE["uuid"], LIST_EXAMPLE), ("cus_retrieve_example", retrieve)):
        served = ctl.customer(uuid)
        for key, value in source.items():  # the sandbox serves the page's example as given
            assert served[key] == value, key
        row = row_by_uuid(fresh_db, uuid)
        want = {
            **expected_columns(served),
            "uuid": uuid,
            "id": source["id"],
            "external_id": source["external_id"],
        }
        want["external_ids"] = source["external_ids"]
        for column in CUSTOMER_DATA_COLUMNS:
            assert row[column] == want[column], column
        assert row["deleted_at"] is None and row["first_seen_at"] == row["synced_at"]

    meta = materialization_metadata(result)
    assert meta["dagster/row_count"] == 302 and meta["inserted"] == 302
    assert meta["updated"] == meta["unchanged"] == meta["deleted"] == 0
    assert isinstance(meta["total_mrr"], float)
    mrr_cents = query(fresh_db, "SELECT sum(mrr) FROM chartmogul.customers")[0][0]
    assert meta["total_mrr"] == int(mrr_cents) / 100
    schema = meta["dagster/column_schema"]
    assert [c.name for c in schema.columns][:3] == ["uuid", "id", "external_id"]
    assert meta["status_mismatches"] == 0 and meta["rejected_entries"] == 0
    assert all(check_results(result).values()), check_results(result)


def test_unicode_quotes_and_sql_metacharacters_round_trip(sandbox, fresh_db):
    ctl = sandbox.control
    uuids = []
    for i, s in enumerate(TRICKY_STRINGS):
        doc = ctl.insert_customer(
            name=s,
            company=s,
            email=f"{i}@ex.com",
            status="Active",
            tags=[s, "plain"],
            custom={"note": s, s or "k": i},
        )
        uuids.append(doc["uuid"])
    assert refresh(sandbox.base_url, fresh_db).success
    for uuid, s in zip(uuids, TRICKY_STRINGS, strict=True):
        served, row = ctl.customer(uuid), row_by_uuid(fresh_db, uuid)
        assert (row["name"], row["company"]) == (s, s)
        assert row["tags"] == [s, "plain"] and row["custom_attributes"] == {
            "note": s,
            s or "k": served["attributes"]["custom"][s or "k"],
        }
        assert row["raw"] == served


def test_second_run_rewrites_nothing_and_counts_unchanged(sandbox, fresh_db):
    assert refresh(sandbox.base_url, fresh_db).success
    before = exact_table(fresh_db)
    again = refresh(sandbox.base_url, fresh_db)
    meta = materialization_metadata(again)
    assert (meta["inserted"], meta["updated"], meta["unchanged"]) == (0, 0, 300)
    assert exact_table(fresh_db) == before  # same row versions: nothing rewritten

    ctl = sandbox.control
    changed = ctl.customers()[5]["uuid"]
    ctl.modify_customer(changed, mrr=123456)
    meta = materialization_metadata(refresh(sandbox.base_url, fresh_db))
    assert (meta["inserted"], meta["updated"], meta["unchanged"]) == (0, 1, 299)
    assert row_by_uuid(fresh_db, changed)["mrr"] == 123456


def test_with_ten_percent_faults_the_table_equals_a_clean_run(fresh_db, other_db):
    with SandboxServer(customers=400, seed=11) as clean:
        assert refresh(clean.base_url, fresh_db).success
    with SandboxServer(customers=400, seed=11, fault_rate=0.1, fault_seed=3) as faulty:
        result = refresh(faulty.base_url, other_db)
        faults = faulty.control.stats()["faults"]
    meta = materialization_metadata(result)
    assert faults > 0 and meta["http_retries"] >= faults
    assert snapshot(other_db) == snapshot(fresh_db)
    assert len(snapshot(fresh_db)) == 400


def test_a_verified_404_marks_deleted_and_a_reappearance_clears_it(sandbox, fresh_db):
    assert refresh(sandbox.base_url, fresh_db).success
    ctl = sandbox.control
    gone = ctl.customers()[10]
    ctl.delete_customer(gone["uuid"])
    result = refresh(sandbox.base_url, fresh_db)
    meta = materialization_metadata(result)
    assert (meta["deleted"], meta["deletion_candidates"], meta["dagster/row_count"]) == (1, 1, 300)
    row = row_by_uuid(fresh_db, gone["uuid"])
    assert row["deleted_at"] is not None and row["raw"] == gone  # kept, flagged
    assert query(fresh_db, "SELECT outcome, http_status FROM chartmogul.deletion_checks")[0] == (
        "deleted",
        404,
    )
    assert all(check_results(result).values())

    ctl.insert_customer(**gone)  # the customer comes back
    meta = materialization_metadata(refresh(sandbox.base_url, fresh_db))
    assert meta["undeleted"] == 1 and row_by_uuid(fresh_db, gone["uuid"])["deleted_at"] is None


def test_a_failed_run_leaves_the_table_exactly_as_it_was_and_marks_nothing_deleted(sandbox, fresh_db):
    assert refresh(sandbox.base_url, fresh_db).success
    ctl = sandbox.control
    ctl.delete_customer(ctl.customers()[0]["uuid"])
    ctl.modify_customer(ctl.customers()[1]["uuid"], mrr=1)
    before = exact_table(fresh_db)
    ctl.configure(fault_rate=0.3, fault_kinds=["500"], fault_seed=5)
    failed = refresh(
        sandbox.base_url, fresh_db, raise_on_error=False, client={"max_retry_seconds": 0.0, "max_attempts": 1}
    )
    assert not failed.success
    assert exact_table(fresh_db) == before
    assert query(fresh_db, "SELECT count(*) FROM chartmogul.deletion_checks")[0][0] == 0


def test_a_status_change_during_the_pass_is_stored_once_with_its_latest_data(sandbox, fresh_db):
    ctl = sandbox.control
    assert refresh(sandbox.base_url, fresh_db).success
    by_status = {}
    for c in ctl.customers():
        by_status.setdefault(c["status"], []).append(c["uuid"])
    up_early = by_status["Cancelled"][0]  # will move into a partition already walked -> verified, alive
    moves_late = by_status["New Lead"][0]  # walked as a lead, then seen again as Cancelled
    ctl.configure(latency_ms=15)

    moved = threading.Event()

    start_seq = max((r["seq"] for r in ctl.requests()), default=0)

    def mover():
        seen = start_seq
        while not moved.is_set():
            for r in ctl.requests(since=seen):
                seen = max(seen, r["seq"])
                if "status=Active" in (r.get("query") or ""):
                    ctl.modify_customer(up_early, status="New Lead", mrr=0)
                    ctl.modify_customer(moves_late, status="Cancelled", mrr=0)
                    moved.set()
                    return

    thread = threading.Thread(target=mover, daemon=True)
    thread.start()
    result = refresh(
        sandbox.base_url, fresh_db, max_workers=1
    )  # partitions in order: leads first, Active later
    moved.set()
    thread.join(5)
    meta = materialization_metadata(result)
    assert meta["verified_alive"] == 1 and meta["deleted"] == 0
    assert row_by_uuid(fresh_db, up_early)["status"] == "New Lead"
    late = row_by_uuid(fresh_db, moves_late)
    assert late["status"] == "Cancelled" and late["raw"] == ctl.customer(moves_late)
    assert (
        query(
            fresh_db,
            "SELECT count(*) FROM chartmogul.customers WHERE uuid IN (:a, :b)",
            a=up_early,
            b=moves_late,
        )[0][0]
        == 2
    )
    lists = [r for r in ctl.requests(since=start_seq) if r["path"] == "/v1/customers"]
    assert lists, "the pass listed customers"
    ctl.configure(latency_ms=0)
    fresh_run = refresh(sandbox.base_url, fresh_db)  # a clean run afterwards agrees with what was stored
    assert materialization_metadata(fresh_run)["updated"] == 0


def test_the_api_key_appears_nowhere_in_the_event_log(sandbox, fresh_db):
    sandbox.control.configure(fault_rate=0.2, fault_kinds=["500", "html500", "503"], fault_seed=9)
    with dg.instance_for_test() as instance:
        ok = refresh(sandbox.base_url, fresh_db, instance=instance)
        wrong_key = "wrong-key-91d2c"
        bad = refresh(sandbox.base_url, fresh_db, instance=instance, api_key=wrong_key, raise_on_error=False)
        assert ok.success and not bad.success
        texts = []
        for run in (ok, bad):
            for record in instance.all_logs(run.run_id):
                texts.append(serialize_value(record))
        blob = "\n".join(texts)
    assert "AuthenticationError" in blob and "401" in blob  # the failure is explained...
    assert "extract: published pass" in blob
    assert TEST_API_KEY not in blob and wrong_key not in blob  # ...and neither key is anywhere


def test_the_advisory_lock_blocks_a_second_refresh(sandbox, fresh_db, engine):
    import sqlalchemy as sa

    eng = sa.create_engine(fresh_db)
    try:
        with AdvisoryLock(eng):
            blocked = refresh(sandbox.base_url, fresh_db, raise_on_error=False)
    finally:
        eng.dispose()
    assert not blocked.success
    failure = next(e for e in blocked.all_events if e.event_type_value == "STEP_FAILURE")
    assert "another warehouse refresh is running" in failure.event_specific_data.error.to_string()
    assert refresh(sandbox.base_url, fresh_db).success  # and runs once the lock is free


def test_partitioned_pass_covers_everyone_and_filters_scope_deletions(sandbox, fresh_db, other_db):
    assert refresh(sandbox.base_url, fresh_db).success
    single = refresh(sandbox.base_url, other_db, partition_by_status=False)
    assert set(materialization_metadata(single)["partitions"]) == {"all"}
    assert snapshot(other_db) == snapshot(fresh_db)

    systems = {c["billing-system-type"] for c in sandbox.control.customers()}
    system = sorted(systems)[0]
    scoped = refresh(sandbox.base_url, fresh_db, system=system)
    meta = materialization_metadata(scoped)
    expected = sum(1 for c in sandbox.control.customers() if c["billing-system-type"] == system)
    assert meta["customers_fetched"] == expected and 0 < expected < 300
    assert meta["deleted"] == 0 and meta["deletion_candidates"] == 0 and meta["unchanged"] == expected


def test_bad_values_are_reported_and_do_not_sink_the_run(sandbox, fresh_db):
    ctl = sandbox.control
    odd = ctl.insert_customer(
        status="Active",
        mrr="lots",
        arr=0,
        company="Odd Co",
        name="a\u0000b",
        **{"customer-since": "not a date"},
    )
    with dg.instance_for_test() as instance:
        result = refresh(sandbox.base_url, fresh_db, instance=instance)
        messages = [r.user_message for r in instance.all_logs(result.run_id)]
    meta = materialization_metadata(result)
    assert meta["field_problems"] == 3 and meta["inserted"] == 301
    row = row_by_uuid(fresh_db, odd["uuid"])
    assert row["mrr"] is None and row["customer_since"] is None and row["name"] == "a\ufffdb"
    assert row["raw"]["mrr"] == "lots" and row["raw"]["customer-since"] == "not a date"
    for field in ("'mrr'", "'customer-since'", "'name'"):
        assert any(odd["uuid"] in m and field in m for m in messages), field
