"""The one-transaction publish of chartmogul.customers, the table's agreed shape, and its one mapping."""

from __future__ import annotations

import json

import psycopg2
import pytest
import sqlalchemy as sa

from cm_pipeline.warehouse.passes import open_pass
from cm_pipeline.warehouse.publish import DeletionCheck, publish
from cm_pipeline.warehouse.staging import FETCH_CLOCK, StagedPage, StagingWriter
from cm_pipeline_tests.reference_examples import LIST_EXAMPLE, TRICKY_STRINGS
from cm_pipeline_tests.warehouse.conftest import (
    customer,
    edit_as_cm_pipeline,
    hashes,
    load,
    mapping_corpus,
    table,
)


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
            sa.text("SELECT uuid, http_status, outcome FROM cm_pipeline.deletion_checks ORDER BY uuid")
        ).all()
    assert [tuple(r) for r in audit] == [("cus_flaky", 500, "error"), ("cus_gone", 404, "deleted")]

    _, back = load(db, {"Active": [[customer("cus_gone"), customer("cus_flaky"), customer("cus_stays")]]})
    assert back.undeleted == 1 and back.updated == 1
    assert table(db)["cus_gone"]["deleted_at"] is None


def test_a_failed_publish_leaves_the_table_exactly_as_it_was(db):
    load(db, {"Active": [[customer("cus_1"), customer("cus_2")]]})
    before = table(db)
    p = open_pass(db, filters={}, plan=["Active"], per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([customer("cus_1", mrr=1), customer("cus_3")], None, False)
    # The audit insert violates its CHECK after the upsert ran inside the transaction.
    with pytest.raises(psycopg2.IntegrityError):
        publish(db, p.pass_id, [DeletionCheck("cus_2", "bogus-outcome", 404)])
    assert table(db) == before
    with db.connect() as c:
        assert (
            c.execute(
                sa.text("SELECT state FROM cm_pipeline.extract_passes WHERE pass_id = :p"), {"p": p.pass_id}
            ).scalar()
            == "running"
        )


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


def test_the_write_back_stores_exactly_what_the_publish_stores(db):
    """The publish and the push's write-back are the two writers of the table: one mapping, same rows."""
    from cm_pipeline.warehouse.customers import write_entries
    from cm_pipeline.warehouse.schema import CUSTOMER_DATA_COLUMNS

    corpus = mapping_corpus()
    load(db, {"Active": [corpus[i : i + 50] for i in range(0, len(corpus), 50)]})
    published = table(db)
    assert len(published) == len(corpus)
    with db.begin() as c:
        c.execute(sa.text("TRUNCATE chartmogul.customers"))
    write_entries(db, corpus)
    written = table(db)
    for entry in corpus:
        for column in CUSTOMER_DATA_COLUMNS:
            assert written[entry["uuid"]][column] == published[entry["uuid"]][column], (entry["uuid"], column)


def test_after_a_mapping_change_every_mapped_column_is_compared_once(db):
    entries = [customer("cus_m1"), customer("cus_m2")]
    load(db, {"Active": [entries]})
    # A row an older mapping wrote: raw is the same, a derived column differs (and the versions record
    # that row version as cm_pipeline's own write, so it is not a row edited outside).
    edit_as_cm_pipeline(db, "UPDATE chartmogul.customers SET name = 'old mapping' WHERE uuid = 'cus_m1'")
    _, same_version = load(db, {"Active": [entries]})
    assert (same_version.updated, same_version.unchanged) == (0, 2)  # raw unchanged: not rewritten

    with db.begin() as c:
        c.execute(sa.text("UPDATE cm_pipeline.publish_log SET mapping_version = 'older'"))
    _, remapped = load(db, {"Active": [entries]})
    assert (remapped.updated, remapped.unchanged) == (1, 1)
    assert table(db)["cus_m1"]["name"] == LIST_EXAMPLE["name"]


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
    p = open_pass(db, filters={}, plan=["Active"], per_page=200)
    odd = customer("cus_h4", name='Zoë \\ "q" \t')
    with StagingWriter(db, p.pass_id, "Active") as w:  # as a refresh stages it, then as a first load does
        w.write_pages([StagedPage("Active", [odd], None, False, FETCH_CLOCK.reserve(1))], unmapped=True)
        w.write_page([{**odd, "uuid": "cus_h5"}], None, False)
    with db.connect() as c:  # text (unmapped) or jsonb parsed by the COPY, with the md5 of the same text
        staged = c.execute(
            sa.text(
                "SELECT uuid, raw_json IS NULL, raw_md5 = md5(coalesce(raw, raw_json::text)), raw_md5 = md5(raw)"
                " FROM cm_pipeline.customers_staging WHERE uuid IN ('cus_h4', 'cus_h5') ORDER BY uuid"
            )
        ).all()
    assert [tuple(r) for r in staged] == [("cus_h4", True, True, True), ("cus_h5", False, False, None)]


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
        c.execute(sa.text("TRUNCATE cm_pipeline.customer_versions"))
    _, result = load(db, {"Active": [entries]})
    assert (result.updated, result.unchanged) == (0, 2)
    assert {u: r["_xmin"] for u, r in table(db).items()} == {u: r["_xmin"] for u, r in before.items()}
    assert set(hashes(db)) == {"cus_l1", "cus_l2"}


def test_a_staged_text_postgres_cannot_parse_is_set_aside_not_sinking_the_publish(db):
    load(db, {"Active": [[customer("cus_j1"), customer("cus_j2")]]})
    p = open_pass(db, filters={}, plan=["Active"], per_page=200)
    entries = [customer("cus_j1", mrr=1), customer("cus_j2", mrr=2), customer("cus_j3")]
    with StagingWriter(db, p.pass_id) as w:  # staged as text, as a refresh does
        w.write_pages([StagedPage("Active", entries, None, False, FETCH_CLOCK.reserve(3))], unmapped=True)
    with db.begin() as c:  # cannot come from the stager; the guard must hold anyway
        c.execute(
            sa.text(
                'UPDATE cm_pipeline.customers_staging SET raw = \'{"uuid": "cus_j2", "bad\\u0000"\' || raw'
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
        ((uuid, error),) = c.execute(sa.text("SELECT uuid, error FROM cm_pipeline.extract_rejects")).all()
    assert uuid == "cus_j2" and "not valid JSON" in error


def test_undeleted_counts_only_rows_the_publish_brought_back(db):
    """A deleted customer whose staged text is set aside (unparsable) stays deleted and is not counted."""
    load(db, {"Active": [[customer("cus_u1"), customer("cus_u2"), customer("cus_u3")]]})
    _, gone = load(
        db,
        {"Active": [[customer("cus_u3")]]},
        checks=[DeletionCheck("cus_u1", "deleted", 404), DeletionCheck("cus_u2", "deleted", 404)],
    )
    assert gone.deleted == 2
    p = open_pass(db, filters={}, plan=["Active"], per_page=200)
    entries = [customer("cus_u1"), customer("cus_u2"), customer("cus_u3")]
    with StagingWriter(db, p.pass_id) as w:  # both come back; one's text cannot be parsed
        w.write_pages([StagedPage("Active", entries, None, False, FETCH_CLOCK.reserve(3))], unmapped=True)
    with db.begin() as c:
        c.execute(
            sa.text(
                'UPDATE cm_pipeline.customers_staging SET raw = \'{"uuid": "cus_u2", "bad\\u0000"\' || raw'
                " WHERE uuid = 'cus_u2'"
            )
        )
    result = publish(db, p.pass_id)
    rows = table(db)
    assert (result.undeleted, result.rejected) == (1, 1)
    assert rows["cus_u1"]["deleted_at"] is None and rows["cus_u2"]["deleted_at"] is not None
    with db.connect() as c:
        logged = c.execute(
            sa.text("SELECT undeleted FROM cm_pipeline.publish_log WHERE pass_id = :p"), {"p": p.pass_id}
        ).scalar()
    assert logged == 1
