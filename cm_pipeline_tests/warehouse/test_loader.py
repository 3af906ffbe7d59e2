"""Staging, checkpoints, resume bookkeeping and the one-transaction publish, against a real Postgres."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg2
import pytest
import sqlalchemy as sa

from cm_pipeline.warehouse.loader import (
    FETCH_CLOCK,
    DeletionCheck,
    FetchClock,
    StagingWriter,
    add_partition,
    ensure_tables,
    open_pass,
    publish,
)
from cm_pipeline.warehouse.locks import AdvisoryLock, RefreshAlreadyRunning
from cm_pipeline_tests.reference_examples import LIST_EXAMPLE, RETRIEVE_EXAMPLE, TRICKY_STRINGS

PARTS = ["Active", "Cancelled"]


@pytest.fixture
def db(fresh_db):
    eng = sa.create_engine(fresh_db, future=True)
    ensure_tables(eng)
    yield eng
    eng.dispose()


def customer(uuid: str, **fields) -> dict:
    return {**LIST_EXAMPLE, "uuid": uuid, "id": abs(hash(uuid)) % 10**6, **fields}


def load(engine, pages_by_partition: dict[str, list[list[dict]]], checks=(), **open_kw):
    """Run one pass over hand-made pages and publish it."""
    p = open_pass(engine, filters={}, partitions=list(pages_by_partition), per_page=200, **open_kw)
    for partition, pages in pages_by_partition.items():
        with StagingWriter(engine, p.pass_id, partition) as w:
            for i, page in enumerate(pages):
                more = i < len(pages) - 1
                w.write_page(page, f"{partition}-c{i + 1}" if more else None, more)
    return p, publish(engine, p.pass_id, checks)


def table(engine) -> dict[str, dict]:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT *, xmin::text AS _xmin FROM chartmogul.customers")).mappings().all()
    return {r["uuid"]: dict(r) for r in rows}


def test_tricky_strings_round_trip_exactly(db):
    entries = []
    for i, s in enumerate(TRICKY_STRINGS):
        entries.append(
            customer(
                f"cus_tricky_{i}",
                name=s,
                company=s,
                attributes={"tags": [s, "x"], "custom": {s or "empty": s, "n": i}, "stripe": {}},
            )
        )
    _, result = load(db, {"Active": [entries]})
    assert result.inserted == len(TRICKY_STRINGS)
    got = table(db)
    for i, s in enumerate(TRICKY_STRINGS):
        row = got[f"cus_tricky_{i}"]
        assert row["name"] == s and row["company"] == s
        assert row["tags"] == [s, "x"]
        assert row["custom_attributes"] == {s or "empty": s, "n": i}
        assert row["raw"] == entries[i]


def test_counts_and_unchanged_rows_are_not_rewritten(db):
    a, b, c = customer("cus_a"), customer("cus_b"), customer("cus_c")
    _, first = load(db, {"Active": [[a, b], [c]], "Cancelled": [[]]})
    assert (first.inserted, first.updated, first.unchanged, first.seen) == (3, 0, 0, 3)
    before = table(db)

    changed = {**b, "mrr": 4200}
    new = customer("cus_d")
    _, second = load(db, {"Active": [[a, changed, c, new]], "Cancelled": [[]]})
    assert (second.inserted, second.updated, second.unchanged) == (1, 1, 2)
    after = table(db)
    for uuid in ("cus_a", "cus_c"):  # same tuple version: not rewritten
        assert after[uuid]["_xmin"] == before[uuid]["_xmin"]
        assert after[uuid]["synced_at"] == before[uuid]["synced_at"]
    assert after["cus_b"]["mrr"] == 4200 and after["cus_b"]["synced_at"] > before["cus_b"]["synced_at"]
    assert after["cus_b"]["first_seen_at"] == before["cus_b"]["first_seen_at"]
    assert second.row_count == 4 and second.total_mrr_cents == 3000 * 3 + 4200


def test_a_customer_seen_in_two_partitions_is_stored_once_with_the_latest_fetch(db):
    old = customer("cus_moved", status="Active", mrr=3000)
    newer = customer("cus_moved", status="Cancelled", mrr=0)
    p = open_pass(db, filters={}, partitions=PARTS, per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([old], None, False)
    with StagingWriter(db, p.pass_id, "Cancelled") as w:
        w.write_page([newer], None, False)
    result = publish(db, p.pass_id)
    assert result.seen == 1 and result.inserted == 1
    row = table(db)["cus_moved"]
    assert (row["status"], row["mrr"]) == ("Cancelled", 0)


def test_only_a_verified_404_marks_deleted_and_a_reappearing_customer_is_undeleted(db):
    load(db, {"Active": [[customer("cus_gone"), customer("cus_flaky"), customer("cus_stays")]]})
    checks = [
        DeletionCheck("cus_gone", "deleted", 404, "Customer not found"),
        DeletionCheck("cus_flaky", "error", 500, "Internal Server Error"),
    ]
    _, result = load(db, {"Active": [[customer("cus_stays")]]}, checks=checks)
    assert result.deleted == 1
    rows = table(db)
    assert rows["cus_gone"]["deleted_at"] is not None
    assert rows["cus_flaky"]["deleted_at"] is None
    assert rows["cus_gone"]["raw"] == customer("cus_gone")  # the row is kept, only flagged
    with db.connect() as c:
        audit = c.execute(
            sa.text("SELECT uuid, http_status, outcome FROM chartmogul.deletion_checks ORDER BY uuid")
        ).all()
    assert [tuple(r) for r in audit] == [("cus_flaky", 500, "error"), ("cus_gone", 404, "deleted")]

    _, back = load(db, {"Active": [[customer("cus_gone"), customer("cus_flaky"), customer("cus_stays")]]})
    assert back.undeleted == 1 and back.updated == 1
    assert table(db)["cus_gone"]["deleted_at"] is None


def test_a_failed_publish_leaves_the_table_exactly_as_it_was(db):
    load(db, {"Active": [[customer("cus_1"), customer("cus_2")]]})
    before = table(db)
    p = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([customer("cus_1", mrr=1), customer("cus_3")], None, False)
    # The audit insert violates its CHECK after the upsert ran inside the transaction.
    with pytest.raises(psycopg2.IntegrityError):
        publish(db, p.pass_id, [DeletionCheck("cus_2", "bogus-outcome", 404)])
    assert table(db) == before
    with db.connect() as c:
        assert (
            c.execute(
                sa.text("SELECT state FROM chartmogul._extract_passes WHERE pass_id = :p"), {"p": p.pass_id}
            ).scalar()
            == "running"
        )


def test_checkpoints_advance_with_their_page_and_a_pass_resumes(db):
    p = open_pass(db, filters={"system": None}, partitions=PARTS, per_page=50)
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([customer("cus_p1")], "cur-1", True)
        w.write_page([customer("cus_p2")], "cur-2", True)
    again = open_pass(db, filters={"system": None}, partitions=PARTS, per_page=50)
    assert again.resumed and again.pass_id == p.pass_id
    cp = again.checkpoints["Active"]
    assert (cp.cursor, cp.pages, cp.customers, cp.done) == ("cur-2", 2, 2, False)
    assert not again.checkpoints["Cancelled"].done

    other = open_pass(db, filters={"system": "Stripe"}, partitions=PARTS, per_page=50)
    assert not other.resumed and other.pass_id != p.pass_id and "other filters" in other.note
    with db.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM chartmogul._customers_staging")).scalar() == 0
        states = dict(c.execute(sa.text("SELECT pass_id, state FROM chartmogul._extract_passes")).all())
    assert states == {p.pass_id: "abandoned", other.pass_id: "running"}

    full = open_pass(db, filters={"system": "Stripe"}, partitions=PARTS, per_page=50, full_refresh=True)
    assert not full.resumed and "full refresh" in full.note
    stale = open_pass(
        db, filters={"system": "Stripe"}, partitions=PARTS, per_page=50, resume_max_age=timedelta(0)
    )
    assert not stale.resumed and "resume window" in stale.note


def test_an_unstorable_entry_is_rejected_and_recorded_without_sinking_the_page(db):
    p = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:
        outcome = w.write_page([customer("cus_ok"), {"name": "no uuid"}, "not an object"], None, False)
    assert outcome.staged == 1 and len(outcome.rejected) == 2
    publish(db, p.pass_id)
    assert set(table(db)) == {"cus_ok"}
    with db.connect() as c:
        rejects = c.execute(sa.text("SELECT error, entry FROM chartmogul._extract_rejects")).all()
    assert len(rejects) == 2 and json.loads(rejects[0][1]) == {"name": "no uuid"}


def test_a_value_postgres_refuses_sinks_only_its_row(db):
    # Simulate a column Postgres is stricter about than the mapping: mrr as a 32-bit integer in staging.
    with db.begin() as c:
        c.execute(sa.text("ALTER TABLE chartmogul._customers_staging ALTER COLUMN mrr TYPE integer"))
    p = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:
        outcome = w.write_page(
            [customer("cus_small"), customer("cus_huge", mrr=2**40), customer("cus_x")], "c", True
        )
    assert outcome.staged == 2 and "cus_huge" in outcome.rejected[0] and "out of range" in outcome.rejected[0]
    with db.connect() as c:
        cp = c.execute(sa.text("SELECT pages, customers, cursor FROM chartmogul._extract_checkpoints")).one()
    assert tuple(cp) == (1, 2, "c")


def test_the_advisory_lock_blocks_a_second_holder(db):
    with AdvisoryLock(db) as first:
        assert first.held
        with pytest.raises(RefreshAlreadyRunning, match="pid \\d+ holds advisory lock"):
            AdvisoryLock(db).acquire()
    with AdvisoryLock(db) as again:  # released on exit
        assert again.held


# The column list, pinned here (not read from schema.py): name, Postgres type, nullable.
AGREED_COLUMNS = [
    ("uuid", "text", "NO"),
    ("id", "bigint", "YES"),
    ("external_id", "text", "YES"),
    ("external_ids", "jsonb", "YES"),
    ("data_source_uuid", "text", "YES"),
    ("data_source_uuids", "jsonb", "YES"),
    ("name", "text", "YES"),
    ("email", "text", "YES"),
    ("company", "text", "YES"),
    ("status", "text", "YES"),
    ("customer_since", "timestamp with time zone", "YES"),
    ("lead_created_at", "timestamp with time zone", "YES"),
    ("free_trial_started_at", "timestamp with time zone", "YES"),
    ("country", "text", "YES"),
    ("state", "text", "YES"),
    ("city", "text", "YES"),
    ("zip", "text", "YES"),
    ("address", "jsonb", "YES"),
    ("tags", "jsonb", "YES"),
    ("custom_attributes", "jsonb", "YES"),
    ("stripe", "jsonb", "YES"),
    ("mrr", "bigint", "YES"),
    ("arr", "bigint", "YES"),
    ("currency", "text", "YES"),
    ("currency_sign", "text", "YES"),
    ("billing_system_type", "text", "YES"),
    ("billing_system_url", "text", "YES"),
    ("chartmogul_url", "text", "YES"),
    ("owner", "text", "YES"),
    ("website_url", "text", "YES"),
    ("raw", "jsonb", "NO"),
    ("first_seen_at", "timestamp with time zone", "NO"),
    ("synced_at", "timestamp with time zone", "NO"),
    ("deleted_at", "timestamp with time zone", "YES"),
]


def test_table_columns_and_types_are_the_agreed_ones(db):
    with db.connect() as c:
        cols = c.execute(
            sa.text(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                " WHERE table_schema = 'chartmogul' AND table_name = 'customers' ORDER BY ordinal_position"
            )
        ).all()
        pk = (
            c.execute(
                sa.text(
                    "SELECT k.column_name FROM information_schema.table_constraints t"
                    " JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name)"
                    " WHERE t.table_schema = 'chartmogul' AND t.table_name = 'customers'"
                    " AND t.constraint_type = 'PRIMARY KEY'"
                )
            )
            .scalars()
            .all()
        )
    assert [tuple(c) for c in cols] == AGREED_COLUMNS
    assert pk == ["uuid"]


def test_the_latest_fetch_wins_whatever_order_the_pages_were_written_in(db):
    """Two workers: the page fetched first (old data) is written last; publish keeps the later fetch."""
    p = open_pass(db, filters={}, partitions=["New_Lead", "Cancelled"], per_page=200)
    early = FETCH_CLOCK.reserve(1)  # New Lead's page arrives first...
    late = FETCH_CLOCK.reserve(1)  # ...then Cancelled's, after the customer changed status
    assert late > early
    old, new = (
        customer("cus_moved", status="New Lead", mrr=10),
        customer("cus_moved", status="Cancelled", mrr=0),
    )
    with StagingWriter(db, p.pass_id, "Cancelled") as w:
        w.write_page([new], None, False, fetched=late)
    with StagingWriter(db, p.pass_id, "New_Lead") as w:  # written last, fetched first
        w.write_page([old], None, False, fetched=early)
    result = publish(db, p.pass_id)
    row = table(db)["cus_moved"]
    assert (result.seen, result.inserted) == (1, 1)
    assert (row["status"], row["mrr"], row["raw"]) == ("Cancelled", 0, new)


def test_fetch_clock_is_strictly_increasing_across_threads_and_reservations():
    import threading

    clock, got, lock = FetchClock(), [], threading.Lock()

    def take():
        for n in (1, 3, 200) * 50:
            first = clock.reserve(n)
            with lock:
                got.extend(range(first, first + n))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 4 * 50 * 204  # every value used once
    clock.advance_past(got[-1] + 10**15)  # e.g. a pass staged by a process whose clock ran ahead
    assert clock.reserve(1) > got[-1] + 10**15


def test_a_resumed_pass_orders_its_fetches_after_the_ones_already_staged(db):
    p = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    ahead = FETCH_CLOCK.reserve(1) + 10**15  # staged by an earlier run whose clock was ahead of ours
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([customer("cus_r", mrr=1)], "c1", True, fetched=ahead)
    again = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    assert again.resumed and again.pass_id == p.pass_id
    with StagingWriter(db, p.pass_id, "Active") as w:  # this run fetches the customer again, changed
        w.write_page([customer("cus_r", mrr=2)], None, False)
    publish(db, p.pass_id)
    assert table(db)["cus_r"]["mrr"] == 2


def test_a_partition_name_with_copy_metacharacters_is_staged_escaped(db):
    p = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    odd = "Active@ds_a\\tb\tc\nd\\."  # backslashes, a tab, a newline: all COPY metacharacters
    add_partition(db, p.pass_id, odd)
    with StagingWriter(db, p.pass_id, odd) as w:
        outcome = w.write_page([customer("cus_p1"), customer("cus_p2")], None, False)
    assert outcome.staged == 2 and not outcome.rejected
    with db.connect() as c:
        staged = c.execute(
            sa.text("SELECT DISTINCT partition FROM chartmogul._customers_staging WHERE pass_id = :p"),
            {"p": p.pass_id},
        ).all()
    assert staged == [(odd,)]


def mapping_corpus() -> list[dict]:
    """Entries that exercise every mapping rule: the pages' examples, seeded data, odd and bad values."""
    from cm_pipeline.sandbox.seed import generate

    corpus = [dict(LIST_EXAMPLE), {**RETRIEVE_EXAMPLE, "uuid": "cus_retrieve"}, {"uuid": "cus_bare"}]
    corpus += [{**d, "uuid": f"cus_seed_{i}"} for i, d in enumerate(generate(150, 5))]
    for i, s in enumerate(TRICKY_STRINGS):
        corpus.append(customer(f"cus_tricky_{i}", name=s, attributes={"tags": [s], "custom": {s or "k": s}}))
    bad = [
        {"mrr": "lots"}, {"mrr": 10.5}, {"arr": True}, {"id": 2**70}, {"mrr": "36000"}, {"mrr": 4100.0},
        {"customer-since": "yesterday"}, {"lead_created_at": 1234}, {"name": {"first": "x"}}, {"zip": 12345},
        {"name": 1.5}, {"company": True}, {"external_ids": "34916129"}, {"address": ["x"]},
        {"attributes": {"tags": "vip"}}, {"attributes": ["x"]}, {"attributes": {"custom": ["x"]}},
        {"customer_since": "2024-01-01T00:00:00Z", "billing_system_type": "Custom", "currency_sign": "€"},
        {"name": "a\x00b", "attributes": {"tags": ["x\ud800y"], "custom": {"k\x00": "v"}}},
        {"brand_new_field": {"nested": [1, 2]}, "owner": "Gabi", "website_url": "https://x.example"},
    ]  # fmt: skip
    corpus += [{**LIST_EXAMPLE, **b, "uuid": f"cus_bad_{i}"} for i, b in enumerate(bad)]
    return corpus


def test_the_bulk_sql_mapping_equals_the_single_row_mapping(db):
    """Extraction maps in SQL, single-row writers use map_customer: both must give identical rows."""
    from cm_pipeline.warehouse.mapping import map_customer
    from cm_pipeline.warehouse.schema import CUSTOMER_DATA_COLUMNS

    corpus = mapping_corpus()
    load(db, {"Active": [corpus[i : i + 50] for i in range(0, len(corpus), 50)]})
    rows = table(db)
    json_cols = {"external_ids", "data_source_uuids", "address", "tags", "custom_attributes", "stripe", "raw"}
    assert len(rows) == len(corpus)
    for entry in corpus:
        want, _ = map_customer(entry)
        got = rows[entry["uuid"]]
        for column in CUSTOMER_DATA_COLUMNS:
            expected = (
                json.loads(want[column]) if column in json_cols and want[column] is not None else want[column]
            )
            assert got[column] == expected, (entry["uuid"], column)


def test_a_pass_whose_checkpoints_were_lost_starts_over(db):
    """A Postgres crash empties the unlogged staging and checkpoint tables together; the pass restarts."""
    p = open_pass(db, filters={}, partitions=PARTS, per_page=50)
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([customer("cus_c1")], "cur-1", True)
    with db.begin() as c:  # what crash recovery does to unlogged tables
        c.execute(sa.text("TRUNCATE chartmogul._extract_checkpoints, chartmogul._customers_staging"))
    again = open_pass(db, filters={}, partitions=PARTS, per_page=50)
    assert not again.resumed and "lost its checkpoints" in again.note
    with db.connect() as c:
        kinds = dict(
            c.execute(
                sa.text(
                    "SELECT relname, relpersistence FROM pg_class WHERE relname IN"
                    " ('_extract_checkpoints', '_customers_staging', 'customers', '_extract_passes')"
                )
            ).all()
        )
    assert kinds == {
        "_extract_checkpoints": "u",
        "_customers_staging": "u",
        "customers": "p",
        "_extract_passes": "p",
    }


def test_after_a_mapping_change_every_mapped_column_is_compared_once(db):
    entries = [customer("cus_m1"), customer("cus_m2")]
    load(db, {"Active": [entries]})
    with db.begin() as c:  # a row mapped by an older mapping: raw is the same, a derived column differs
        c.execute(sa.text("UPDATE chartmogul.customers SET name = 'old mapping' WHERE uuid = 'cus_m1'"))
    _, same_version = load(db, {"Active": [entries]})
    assert (same_version.updated, same_version.unchanged) == (0, 2)  # raw unchanged: not rewritten

    with db.begin() as c:
        c.execute(sa.text("UPDATE chartmogul.publish_log SET mapping_version = 'older'"))
    _, remapped = load(db, {"Active": [entries]})
    assert (remapped.updated, remapped.unchanged) == (1, 1)
    assert table(db)["cus_m1"]["name"] == LIST_EXAMPLE["name"]


def hashes(engine) -> dict[str, str]:
    with engine.connect() as c:
        return dict(c.execute(sa.text("SELECT uuid, raw_md5 FROM chartmogul._customer_hashes")).all())


def test_a_refresh_parses_only_new_or_changed_entries_and_key_order_alone_is_unchanged(db):
    a, b = customer("cus_h1"), customer("cus_h2")
    load(db, {"Active": [[a, b]]})
    first = hashes(db)
    assert set(first) == {"cus_h1", "cus_h2"}
    before = table(db)
    reordered = dict(reversed(list(b.items())))  # same JSON, other text: a candidate, compared, not rewritten
    _, result = load(db, {"Active": [[a, reordered, customer("cus_h3")]]})
    assert (result.inserted, result.updated, result.unchanged, result.seen) == (1, 0, 2, 3)
    after, now = table(db), hashes(db)
    assert after["cus_h2"]["_xmin"] == before["cus_h2"]["_xmin"]
    assert now["cus_h1"] == first["cus_h1"] and now["cus_h2"] != first["cus_h2"] and "cus_h3" in now
    p = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([customer("cus_h4", name='Zoë \\ "q" \t')], None, False)
    with db.connect() as c:  # staged as text, with the md5 of that text (computed in Python)
        kind, same = c.execute(
            sa.text(
                "SELECT pg_typeof(raw)::text, raw_md5 = md5(raw) FROM chartmogul._customers_staging"
                " WHERE uuid = 'cus_h4'"
            )
        ).one()
    assert (kind, same) == ("text", True)


def test_a_row_rewritten_by_another_writer_is_compared_again(db):
    """E.g. a reverse-ETL write-back then reverted in ChartMogul: the same text as last publish must win."""
    entry = customer("cus_wb", mrr=100)
    load(db, {"Active": [[entry]]})
    with db.begin() as c:
        c.execute(
            sa.text("UPDATE chartmogul.customers SET raw = :r, mrr = 999 WHERE uuid = 'cus_wb'"),
            {"r": json.dumps({**entry, "mrr": 999})},
        )
    _, result = load(db, {"Active": [[entry]]})  # its md5 equals the side table's, the row does not
    assert (result.updated, result.unchanged) == (1, 0)
    row = table(db)["cus_wb"]
    assert row["mrr"] == 100 and row["raw"] == entry
    _, again = load(db, {"Active": [[entry]]})
    assert (again.updated, again.unchanged) == (0, 1)


def test_lost_hashes_only_make_every_entry_compared_once(db):
    entries = [customer("cus_l1"), customer("cus_l2")]
    load(db, {"Active": [entries]})
    before = table(db)
    with db.begin() as c:  # what crash recovery does to the unlogged side table
        c.execute(sa.text("TRUNCATE chartmogul._customer_hashes"))
    _, result = load(db, {"Active": [entries]})
    assert (result.updated, result.unchanged) == (0, 2)
    assert {u: r["_xmin"] for u, r in table(db).items()} == {u: r["_xmin"] for u, r in before.items()}
    assert set(hashes(db)) == {"cus_l1", "cus_l2"}


def test_a_staged_text_postgres_cannot_parse_is_set_aside_not_sinking_the_publish(db):
    load(db, {"Active": [[customer("cus_j1"), customer("cus_j2")]]})
    p = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([customer("cus_j1", mrr=1), customer("cus_j2", mrr=2), customer("cus_j3")], None, False)
    with db.begin() as c:  # cannot come from prepare_entry; the guard must hold anyway
        c.execute(
            sa.text(
                'UPDATE chartmogul._customers_staging SET raw = \'{"uuid": "cus_j2", "bad\\u0000"\' || raw'
                " WHERE uuid = 'cus_j2'"
            )
        )
    result = publish(db, p.pass_id)
    assert (result.seen, result.inserted, result.updated, result.rejected, result.unchanged) == (
        3,
        1,
        1,
        1,
        0,
    )
    rows = table(db)
    assert rows["cus_j1"]["mrr"] == 1 and rows["cus_j2"]["mrr"] == 3000  # left as it was
    with db.connect() as c:
        ((uuid, error),) = c.execute(sa.text("SELECT uuid, error FROM chartmogul._extract_rejects")).all()
    assert uuid == "cus_j2" and "not valid JSON" in error


def test_ensure_tables_replaces_an_old_staging_layout_and_abandons_the_running_pass(db):
    p = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    with db.begin() as c:  # the layout before raw was staged as text
        c.execute(sa.text("DROP TABLE chartmogul._customers_staging"))
        c.execute(sa.text("CREATE SEQUENCE chartmogul._customers_staging_fetch_seq"))
        c.execute(
            sa.text(
                "CREATE UNLOGGED TABLE chartmogul._customers_staging (fetch_seq bigint NOT NULL"
                " DEFAULT nextval('chartmogul._customers_staging_fetch_seq'), pass_id bigint NOT NULL,"
                " partition text NOT NULL, uuid text NOT NULL, id bigint, mrr bigint, arr bigint,"
                " customer_since timestamptz, lead_created_at timestamptz, free_trial_started_at timestamptz,"
                " raw jsonb NOT NULL)"
            )
        )
    note = ensure_tables(db)
    assert note and f"abandoned running pass {p.pass_id}" in note
    assert ensure_tables(db) is None  # the new layout stays
    with db.connect() as c:
        kind = c.execute(
            sa.text(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = 'chartmogul'"
                " AND table_name = '_customers_staging' AND column_name = 'raw'"
            )
        ).scalar()
        state = c.execute(
            sa.text("SELECT state FROM chartmogul._extract_passes WHERE pass_id = :p"), {"p": p.pass_id}
        ).scalar()
    assert (kind, state) == ("text", "abandoned")
    again = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    assert not again.resumed
    _, result = load(db, {"Active": [[customer("cus_after")]]})
    assert result.inserted == 1


def test_ensure_tables_drops_the_old_write_time_sequence_and_keeps_the_running_pass(db):
    """Same layout, but fetch_seq defaulting to a sequence (taken at write time): only the default goes."""
    p = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([customer("cus_o1")], "c1", True)
    with db.begin() as c:
        c.execute(sa.text("CREATE SEQUENCE chartmogul._customers_staging_fetch_seq"))
        c.execute(
            sa.text(
                "ALTER TABLE chartmogul._customers_staging ALTER COLUMN fetch_seq"
                " SET DEFAULT nextval('chartmogul._customers_staging_fetch_seq')"
            )
        )
    assert ensure_tables(db) is None  # not a layout change: the running pass stays
    with db.connect() as c:
        default = c.execute(
            sa.text(
                "SELECT column_default FROM information_schema.columns WHERE table_schema = 'chartmogul'"
                " AND table_name = '_customers_staging' AND column_name = 'fetch_seq'"
            )
        ).scalar()
        seq = c.execute(sa.text("SELECT to_regclass('chartmogul._customers_staging_fetch_seq')")).scalar()
    assert (default, seq) == (None, None)
    again = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    assert again.resumed
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([customer("cus_o2")], None, False)
    assert publish(db, p.pass_id).inserted == 2


def test_undeleted_counts_only_rows_the_publish_brought_back(db):
    """A deleted customer whose staged text is set aside (unparsable) stays deleted and is not counted."""
    load(db, {"Active": [[customer("cus_u1"), customer("cus_u2"), customer("cus_u3")]]})
    _, gone = load(
        db,
        {"Active": [[customer("cus_u3")]]},
        checks=[DeletionCheck("cus_u1", "deleted", 404), DeletionCheck("cus_u2", "deleted", 404)],
    )
    assert gone.deleted == 2
    p = open_pass(db, filters={}, partitions=["Active"], per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:  # both come back; one's text cannot be parsed
        w.write_page([customer("cus_u1"), customer("cus_u2"), customer("cus_u3")], None, False)
    with db.begin() as c:
        c.execute(
            sa.text(
                'UPDATE chartmogul._customers_staging SET raw = \'{"uuid": "cus_u2", "bad\\u0000"\' || raw'
                " WHERE uuid = 'cus_u2'"
            )
        )
    result = publish(db, p.pass_id)
    rows = table(db)
    assert (result.undeleted, result.rejected) == (1, 1)
    assert rows["cus_u1"]["deleted_at"] is None and rows["cus_u2"]["deleted_at"] is not None
    with db.connect() as c:
        logged = c.execute(
            sa.text("SELECT undeleted FROM chartmogul.publish_log WHERE pass_id = :p"), {"p": p.pass_id}
        ).scalar()
    assert logged == 1
