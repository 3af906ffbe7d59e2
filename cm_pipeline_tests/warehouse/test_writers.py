"""The two writers of chartmogul.customers agree on which state is newer (latest answer wins), and rows
edited outside cm_pipeline are found and repaired."""

from __future__ import annotations

import sqlalchemy as sa

from cm_pipeline.extract.checks import customers_match_their_last_write
from cm_pipeline.warehouse.customers import write_attributes, write_entries
from cm_pipeline.warehouse.passes import open_pass
from cm_pipeline.warehouse.publish import publish
from cm_pipeline.warehouse.staging import FETCH_CLOCK, StagedPage, StagingWriter
from cm_pipeline_tests.warehouse.conftest import customer, edit_as_cm_pipeline, load, table


def stage(db, entries, fetched: int):
    """A running pass with `entries` staged as fetched at `fetched` (not published yet)."""
    p = open_pass(db, filters={}, plan=["Active"], per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page(entries, None, False, fetched=fetched)
    return p


def test_a_write_back_after_the_page_was_fetched_is_not_reverted_by_the_publish(db):
    load(db, {"Active": [[customer("cus_w1", mrr=100), customer("cus_w2", mrr=100)]]})
    fetched = FETCH_CLOCK.reserve(2)  # the pass fetches both (old state)...
    p = stage(db, [customer("cus_w1", mrr=100), customer("cus_w2", mrr=100)], fetched)
    pushed = customer("cus_w1", mrr=100, attributes={"tags": ["pushed"], "custom": {}, "stripe": {}})
    write_entries(db, [pushed])  # ...then a push writes back what the API answered later
    result = publish(db, p.pass_id)
    rows = table(db)
    assert rows["cus_w1"]["tags"] == ["pushed"] and rows["cus_w1"]["raw"] == pushed
    assert (result.kept_newer, result.updated) == (1, 0)


def test_a_page_fetched_after_the_write_back_wins(db):
    load(db, {"Active": [[customer("cus_w3", mrr=100)]]})
    write_entries(
        db, [customer("cus_w3", mrr=100, attributes={"tags": ["pushed"], "custom": {}, "stripe": {}})]
    )
    later = customer(
        "cus_w3", mrr=100, attributes={"tags": ["changed in ChartMogul"], "custom": {}, "stripe": {}}
    )
    p = stage(db, [later], FETCH_CLOCK.reserve(1))  # fetched after the write-back
    result = publish(db, p.pass_id)
    assert table(db)["cus_w3"]["tags"] == ["changed in ChartMogul"] and result.updated == 1


def test_an_older_answer_never_overwrites_a_newer_row(db):
    load(db, {"Active": [[customer("cus_w4", mrr=500)]]})
    newest = table(db)["cus_w4"]
    write_entries(db, [customer("cus_w4", mrr=1)], fetched_ns=1)  # answered long before the publish's fetch
    write_attributes(db, {"uuid": "cus_w4", "attributes": {"tags": ["stale"]}}, fetched_ns=1)
    assert table(db)["cus_w4"] == newest


def test_hand_edits_are_found_by_the_check_and_repaired_by_the_next_refresh(db, warehouse_for):
    entries = [customer(f"cus_h{i}", mrr=1000 + i) for i in range(25)]
    load(db, {"Active": [entries]})
    assert customers_match_their_last_write(warehouse=warehouse_for(db)).passed
    with db.begin() as c:
        c.execute(
            sa.text(
                "UPDATE chartmogul.customers SET mrr = 1, status = 'Hand Edited', tags = '[\"x\"]'::jsonb"
                " WHERE uuid IN (SELECT uuid FROM chartmogul.customers ORDER BY uuid LIMIT 20)"
            )
        )
    drift = customers_match_their_last_write(warehouse=warehouse_for(db))
    assert not drift.passed and drift.metadata["rows_changed_outside"].value == 20
    _, result = load(db, {"Active": [entries]})  # an ordinary refresh: raw is unchanged, the rows are not
    assert (result.updated, result.unchanged) == (20, 5)
    rows = table(db)
    assert all(rows[e["uuid"]]["mrr"] == e["mrr"] and rows[e["uuid"]]["status"] == "Active" for e in entries)
    assert customers_match_their_last_write(warehouse=warehouse_for(db)).passed


def test_a_full_refresh_repairs_whatever_the_versions_say(db):
    entries = [customer(f"cus_f{i}", mrr=2000 + i) for i in range(5)]
    load(db, {"Active": [entries]})
    edit_as_cm_pipeline(db, "UPDATE chartmogul.customers SET mrr = 1 WHERE uuid IN ('cus_f1', 'cus_f3')")
    _, ordinary = load(db, {"Active": [entries]})
    assert ordinary.updated == 0  # the versions say these rows are as written: nothing to compare
    _, full = load(db, {"Active": [entries]}, compare_all=True)
    assert (full.updated, full.unchanged) == (2, 3)
    assert {u: r["mrr"] for u, r in table(db).items()} == {e["uuid"]: e["mrr"] for e in entries}


def test_entries_staged_unmapped_are_mapped_when_the_publish_has_to_write_them(db):
    """A refresh stages its entries without mapping them; a row edited outside since its last write is
    still repaired, with the typed values mapped at publish."""
    entries = [customer(f"cus_u{i}", mrr=3000 + i) for i in range(6)]
    load(db, {"Active": [entries]})
    published = table(db)
    with db.begin() as c:
        c.execute(
            sa.text(
                "UPDATE chartmogul.customers SET mrr = 1, customer_since = NULL, id = NULL"
                " WHERE uuid IN ('cus_u1', 'cus_u4')"
            )
        )
    p = open_pass(db, filters={}, plan=["Active"], per_page=200)
    page = StagedPage("Active", entries, None, False, FETCH_CLOCK.reserve(len(entries)))
    with StagingWriter(db, p.pass_id) as w:
        w.write_pages([page], unmapped=True)
    with db.connect() as c:
        unmapped = c.execute(
            sa.text("SELECT count(*) FROM cm_pipeline.customers_staging WHERE NOT prepared AND mrr IS NULL")
        ).scalar()
    assert unmapped == 6  # a refresh maps nothing while staging
    result = publish(db, p.pass_id)
    assert (result.updated, result.unchanged) == (2, 4)
    typed = ("id", "mrr", "customer_since", "raw")
    assert {u: [r[k] for k in typed] for u, r in table(db).items()} == {
        u: [r[k] for k in typed] for u, r in published.items()
    }


def test_a_refresh_maps_new_and_changed_entries_at_publish_and_reports_their_problems(db):
    """The publish maps the unmapped entries it writes: a new customer and a changed one get their typed
    columns, a bad value is stored NULL (raw keeps it) and reported; an entry that needs cleaning (NUL)
    is mapped as it is staged."""
    load(db, {"Active": [[customer("cus_m1", mrr=100), customer("cus_m2", mrr=200)]]})
    bad = customer("cus_m2", mrr="lots", **{"customer-since": "2024-02-30"})
    new = customer("cus_m3", mrr=300, **{"customer-since": "2023-01-02T03:04:05Z"})
    nul = customer("cus_m4", name="a\u0000b", mrr=400)
    p = open_pass(db, filters={}, plan=["Active"], per_page=200)
    entries = [customer("cus_m1", mrr=100), bad, new, nul]
    with StagingWriter(db, p.pass_id) as w:
        [outcome] = w.write_pages(
            [StagedPage("Active", entries, None, False, FETCH_CLOCK.reserve(4))], unmapped=True
        )
    assert [str(x.field) for x in outcome.problems] == ["name"]  # met while staging
    result = publish(db, p.pass_id)
    assert (result.inserted, result.updated, result.unchanged) == (2, 1, 1)
    assert result.field_problems == 2
    assert sorted((x.uuid, x.field) for x in result.problems) == [
        ("cus_m2", "customer-since"),
        ("cus_m2", "mrr"),
    ]
    rows = table(db)
    assert rows["cus_m2"]["mrr"] is None and rows["cus_m2"]["customer_since"] is None
    assert rows["cus_m2"]["raw"]["mrr"] == "lots"
    assert (
        rows["cus_m3"]["mrr"] == 300
        and rows["cus_m3"]["customer_since"].isoformat() == "2023-01-02T03:04:05+00:00"
    )
    assert rows["cus_m4"]["mrr"] == 400 and rows["cus_m4"]["name"] == "a\ufffdb"
