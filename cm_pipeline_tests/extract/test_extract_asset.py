"""chartmogul_customers end to end: Dagster runs against the sandbox over real sockets, into real Postgres."""

from __future__ import annotations

import threading

import dagster as dg
import sqlalchemy as sa
from dagster._serdes import serialize_value

from cm_pipeline.chartmogul.vocabulary import STATUS_FILTERS
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
    row_by_uuid,
    snapshot,
)
from cm_pipeline_tests.reference_examples import (
    LIST_EXAMPLE,
    RETRIEVE_EXAMPLE,
    TRICKY_STRINGS,
    expected_columns,
)


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
    """From a published warehouse, with customers deleted since: 10% faults of every kind the sandbox has
    (JSON and HTML 5xx, dropped connections, before and after the work is done) and 429s with and
    without Retry-After, during the walk and the deletion checks alike."""
    results = {}
    for db, faulty in ((fresh_db, False), (other_db, True)):
        with SandboxServer(customers=300, seed=11) as srv:
            ctl = srv.control
            assert refresh(srv.base_url, db).success
            gone = [c["uuid"] for c in ctl.customers()[::60]]  # the same five in both runs
            for uuid in gone:
                ctl.delete_customer(uuid)
            ctl.modify_customer(ctl.customers()[7]["uuid"], mrr=4242, status="Past Due")
            stop = threading.Event()
            if faulty:
                ctl.configure(
                    fault_rate=0.1,
                    fault_kinds=["500", "502", "503", "504", "520", "524", "html500", "drop"],
                    fault_seed=34,  # its first draws give five kinds, drops and an HTML 500 among them
                    rate_limit_rps=25,
                )

                def vary(ctl=ctl, stop=stop):  # alternate fault phases and Retry-After while the run goes on
                    for i in range(400):
                        ctl.configure(
                            fault_phase=("before", "after")[i % 2], retry_after=(None, 0.05)[(i // 2) % 2]
                        )
                        if stop.wait(0.03):
                            return

                varying = threading.Thread(target=vary, daemon=True)
                varying.start()
            try:
                result = refresh(srv.base_url, db, max_workers=4, per_page=10)
            finally:
                stop.set()
            stats = ctl.stats()
            kinds = {r["fault"] for r in ctl.requests() if r["fault"]}
            results[faulty] = (result, stats, gone, kinds)
    result, stats, gone, kinds = results[True]
    meta = materialization_metadata(result)
    assert stats["faults"] > 0 and stats["rate_limited"] > 0, stats
    assert {"drop", "html500"} <= kinds and len(kinds) >= 4, kinds
    assert meta["http_retries"] >= stats["faults"]
    assert snapshot(other_db) == snapshot(fresh_db)
    assert len(snapshot(other_db)) == 300
    for db in (fresh_db, other_db):
        deleted = dict(
            query(db, "SELECT uuid, deleted_at FROM chartmogul.customers WHERE deleted_at IS NOT NULL")
        )
        assert set(deleted) == set(gone)
        marked_by = query(
            db,
            "SELECT uuid, http_status, checked_at FROM cm_pipeline.deletion_checks WHERE outcome = 'deleted'",
        )
        assert {(u, s) for u, s, _ in marked_by} == {(u, 404) for u in gone}  # only a 404 marked them
        assert all(deleted[u] == at for u, _, at in marked_by)
    assert all(check_results(result).values()), check_results(result)


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
    assert query(fresh_db, "SELECT outcome, http_status FROM cm_pipeline.deletion_checks")[0] == (
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
    assert query(fresh_db, "SELECT count(*) FROM cm_pipeline.deletion_checks")[0][0] == 0


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


def test_a_data_source_filter_stages_only_that_source_and_verifies_only_its_customers(sandbox, fresh_db):
    ctl = sandbox.control
    assert refresh(sandbox.base_url, fresh_db).success
    by_source: dict[str, list[dict]] = {}
    for c in ctl.customers():
        by_source.setdefault(c["data_source_uuid"], []).append(c)
    source, other = sorted(by_source, key=lambda ds: len(by_source[ds]))[:2]
    mine, theirs = by_source[source], by_source[other]
    assert all(c["data_source_uuids"] == [c["data_source_uuid"]] for c in mine + theirs)
    ctl.delete_customer(mine[0]["uuid"])
    ctl.delete_customer(theirs[0]["uuid"])
    ctl.modify_customer(mine[1]["uuid"], mrr=111)
    ctl.modify_customer(theirs[1]["uuid"], mrr=222)
    before = {r[0]: r for r in exact_table(fresh_db)}
    start_seq = max(r["seq"] for r in ctl.requests())

    result = refresh(sandbox.base_url, fresh_db, data_source_uuid=source)
    meta = materialization_metadata(result)
    live_mine = len(mine) - 1
    assert meta["customers_fetched"] == live_mine  # staged: this source's customers, and only them
    assert (meta["updated"], meta["unchanged"], meta["inserted"]) == (1, live_mine - 1, 0)
    assert (meta["deletion_candidates"], meta["deleted"]) == (1, 1)
    assert set(materialization_metadata(result)["partitions"]) == set(STATUS_FILTERS)  # never split
    after = {r[0]: r for r in exact_table(fresh_db)}
    assert row_by_uuid(fresh_db, mine[1]["uuid"])["mrr"] == 111
    assert row_by_uuid(fresh_db, mine[0]["uuid"])["deleted_at"] is not None
    # The other source is neither published nor verified: its rows are physically as they were.
    for c in theirs:
        assert after[c["uuid"]] == before[c["uuid"]]
    checked = query(fresh_db, "SELECT uuid, outcome, http_status FROM cm_pipeline.deletion_checks")
    assert checked == [(mine[0]["uuid"], "deleted", 404)]
    lists = [r["query"] for r in ctl.requests(since=start_seq) if r["path"] == "/v1/customers"]
    assert len(lists) >= len(STATUS_FILTERS) and all(f"data_source_uuid={source}" in q for q in lists)


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


def test_bad_values_of_a_refresh_are_reported_by_the_publish_that_maps_them(sandbox, fresh_db):
    refresh(sandbox.base_url, fresh_db)
    late = sandbox.control.insert_customer(status="Active", mrr="lots", arr=0, company="Late Co")
    with dg.instance_for_test() as instance:
        result = refresh(sandbox.base_url, fresh_db, instance=instance)
        messages = [r.user_message for r in instance.all_logs(result.run_id)]
    meta = materialization_metadata(result)
    assert meta["field_problems"] == 1 and meta["inserted"] == 1
    assert row_by_uuid(fresh_db, late["uuid"])["mrr"] is None
    assert any(late["uuid"] in m and "'mrr'" in m for m in messages)
