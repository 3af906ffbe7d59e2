"""Staging, checkpoints, fetch order, resume bookkeeping and the refresh lock, against a real Postgres."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from cm_pipeline.warehouse.locks import AdvisoryLock, RefreshAlreadyRunning
from cm_pipeline.warehouse.passes import open_pass
from cm_pipeline.warehouse.publish import publish
from cm_pipeline.warehouse.staging import FETCH_CLOCK, FetchClock, StagingWriter
from cm_pipeline_tests.warehouse.conftest import PARTS, customer, table


def test_a_customer_seen_in_two_partitions_is_stored_once_with_the_latest_fetch(db):
    old = customer("cus_moved", status="Active", mrr=3000)
    newer = customer("cus_moved", status="Cancelled", mrr=0)
    p = open_pass(db, filters={}, plan=PARTS, per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([old], None, False)
    with StagingWriter(db, p.pass_id, "Cancelled") as w:
        w.write_page([newer], None, False)
    result = publish(db, p.pass_id)
    assert result.seen == 1 and result.inserted == 1
    row = table(db)["cus_moved"]
    assert (row["status"], row["mrr"]) == ("Cancelled", 0)


def test_checkpoints_advance_with_their_page_and_a_pass_resumes(db):
    p = open_pass(db, filters={"system": None}, plan=PARTS, per_page=50)
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([customer("cus_p1")], "cur-1", True)
        w.write_page([customer("cus_p2")], "cur-2", True)
    again = open_pass(db, filters={"system": None}, plan=PARTS, per_page=50)
    assert again.resumed and again.pass_id == p.pass_id
    cp = again.checkpoints["Active"]
    assert (cp.cursor, cp.pages, cp.customers, cp.done) == ("cur-2", 2, 2, False)
    assert not again.checkpoints["Cancelled"].done

    other = open_pass(db, filters={"system": "Stripe"}, plan=PARTS, per_page=50)
    assert not other.resumed and other.pass_id != p.pass_id and "other filters" in other.note
    with db.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM cm_pipeline.customers_staging")).scalar() == 0
        states = dict(c.execute(sa.text("SELECT pass_id, state FROM cm_pipeline.extract_passes")).all())
    assert states == {p.pass_id: "abandoned", other.pass_id: "running"}

    full = open_pass(db, filters={"system": "Stripe"}, plan=PARTS, per_page=50, full_refresh=True)
    assert not full.resumed and "full refresh" in full.note
    stale = open_pass(db, filters={"system": "Stripe"}, plan=PARTS, per_page=50, resume_max_age=timedelta(0))
    assert not stale.resumed and "resume window" in stale.note


def test_an_unstorable_entry_is_rejected_and_recorded_without_sinking_the_page(db):
    p = open_pass(db, filters={}, plan=["Active"], per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:
        outcome = w.write_page([customer("cus_ok"), {"name": "no uuid"}, "not an object"], None, False)
    assert outcome.staged == 1 and len(outcome.rejected) == 2
    publish(db, p.pass_id)
    assert set(table(db)) == {"cus_ok"}
    with db.connect() as c:
        rejects = c.execute(sa.text("SELECT error, entry FROM cm_pipeline.extract_rejects")).all()
    assert len(rejects) == 2 and json.loads(rejects[0][1]) == {"name": "no uuid"}


def test_a_value_postgres_refuses_sinks_only_its_row(db):
    # Simulate a column Postgres is stricter about than the mapping: mrr as a 32-bit integer in staging.
    with db.begin() as c:
        c.execute(sa.text("ALTER TABLE cm_pipeline.customers_staging ALTER COLUMN mrr TYPE integer"))
    p = open_pass(db, filters={}, plan=["Active"], per_page=200)
    with StagingWriter(db, p.pass_id, "Active") as w:
        outcome = w.write_page(
            [customer("cus_small"), customer("cus_huge", mrr=2**40), customer("cus_x")], "c", True
        )
    assert outcome.staged == 2 and "cus_huge" in outcome.rejected[0] and "out of range" in outcome.rejected[0]
    with db.connect() as c:
        cp = c.execute(sa.text("SELECT pages, customers, cursor FROM cm_pipeline.extract_checkpoints")).one()
    assert tuple(cp) == (1, 2, "c")


def test_the_advisory_lock_blocks_a_second_holder(db):
    with AdvisoryLock(db) as first:
        assert first.held
        with pytest.raises(
            RefreshAlreadyRunning,
            match="cm_pipeline warehouse refresh \\(Postgres backend pid \\d+\\) holds advisory lock",
        ):
            AdvisoryLock(db).acquire()
    with AdvisoryLock(db) as again:  # released on exit
        assert again.held


def test_the_lock_error_names_the_holder_in_this_database_only(db, engine):
    """Advisory locks are per database: the same key held in another database is neither a conflict nor
    named as the holder (two warehouses on one server, or parallel test workers)."""
    with AdvisoryLock(engine, holder="other database's refresh"), AdvisoryLock(db, holder="this one"):
        with pytest.raises(RefreshAlreadyRunning, match="this one") as raised:
            AdvisoryLock(db).acquire()
    assert "other database" not in str(raised.value)


def test_the_latest_fetch_wins_whatever_order_the_pages_were_written_in(db):
    """Two workers: the page fetched first (old data) is written last; publish keeps the later fetch."""
    p = open_pass(db, filters={}, plan=["New_Lead", "Cancelled"], per_page=200)
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


def test_a_resumed_pass_orders_its_fetches_after_the_ones_already_staged(db, monkeypatch):
    # The resume moves this process's clock 10**15 ns ahead: put it back afterwards, or every later test
    # in this process would fetch "after" the pages a child process (a killed run) stages meanwhile.
    monkeypatch.setattr(FETCH_CLOCK, "_last", FETCH_CLOCK._last)
    p = open_pass(db, filters={}, plan=["Active"], per_page=200)
    ahead = FETCH_CLOCK.reserve(1) + 10**15  # staged by an earlier run whose clock was ahead of ours
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([customer("cus_r", mrr=1)], "c1", True, fetched=ahead)
    again = open_pass(db, filters={}, plan=["Active"], per_page=200)
    assert again.resumed and again.pass_id == p.pass_id
    with StagingWriter(db, p.pass_id, "Active") as w:  # this run fetches the customer again, changed
        w.write_page([customer("cus_r", mrr=2)], None, False)
    publish(db, p.pass_id)
    assert table(db)["cus_r"]["mrr"] == 2


def test_a_partition_name_with_copy_metacharacters_is_staged_escaped(db):
    odd = "Active@ds_a\\tb\tc\nd\\."  # backslashes, a tab, a newline: all COPY metacharacters
    p = open_pass(db, filters={}, plan=["Active", odd], per_page=200)
    with StagingWriter(db, p.pass_id, odd) as w:
        outcome = w.write_page([customer("cus_p1"), customer("cus_p2")], None, False)
    assert outcome.staged == 2 and not outcome.rejected
    with db.connect() as c:
        staged = c.execute(
            sa.text("SELECT DISTINCT partition FROM cm_pipeline.customers_staging WHERE pass_id = :p"),
            {"p": p.pass_id},
        ).all()
    assert staged == [(odd,)]


def test_a_pass_whose_checkpoints_were_lost_starts_over(db):
    """A Postgres crash empties the unlogged staging and checkpoint tables together; the pass restarts."""
    p = open_pass(db, filters={}, plan=PARTS, per_page=50)
    with StagingWriter(db, p.pass_id, "Active") as w:
        w.write_page([customer("cus_c1")], "cur-1", True)
    with db.begin() as c:  # what crash recovery does to unlogged tables
        c.execute(sa.text("TRUNCATE cm_pipeline.extract_checkpoints, cm_pipeline.customers_staging"))
    again = open_pass(db, filters={}, plan=PARTS, per_page=50)
    assert not again.resumed and "lost its checkpoints" in again.note
    with db.connect() as c:
        kinds = dict(
            c.execute(
                sa.text(
                    "SELECT relname, relpersistence FROM pg_class WHERE relname IN"
                    " ('extract_checkpoints', 'customers_staging', 'customers', 'extract_passes')"
                )
            ).all()
        )
    assert kinds == {
        "extract_checkpoints": "u",
        "customers_staging": "u",
        "customers": "p",
        "extract_passes": "p",
    }
