"""A customer whose status changes while a pass walks it is stored once, with the API's latest record."""

from __future__ import annotations

import threading

from cm_pipeline_tests.extract.conftest import materialization_metadata, refresh, row_by_uuid


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
    for uuid, status in ((up_early, "New Lead"), (moves_late, "Cancelled")):
        row, api = row_by_uuid(fresh_db, uuid), ctl.customer(uuid)
        assert row["status"] == api["status"] == status  # the API's final status...
        assert row["raw"] == api and row["mrr"] == 0  # ...and its latest data
    lists = [r for r in ctl.requests(since=start_seq) if r["path"] == "/v1/customers"]
    assert lists, "the pass listed customers"
    ctl.configure(latency_ms=0)
    fresh_run = refresh(sandbox.base_url, fresh_db)  # a clean run afterwards agrees with what was stored
    assert materialization_metadata(fresh_run)["updated"] == 0


def test_a_status_change_during_a_parallel_pass_keeps_the_latest_fetch(sandbox, fresh_db):
    """max_workers=2: a customer walked as New Lead moves to Cancelled before that partition reaches it, so
    two workers stage it; the row is the API's final record, whichever page was written first."""
    ctl = sandbox.control
    moved_uuid = ctl.insert_customer(status="New Lead", mrr=500, company="Mover")["uuid"]  # the largest id:
    assert refresh(sandbox.base_url, fresh_db).success  # last page of New Lead now, of Cancelled later
    ctl.configure(latency_ms=50)
    start_seq = max((r["seq"] for r in ctl.requests()), default=0)
    moved, trigger = threading.Event(), {}

    def mover():  # when Cancelled's first page has been answered, move the customer into it
        seen = start_seq
        while not moved.is_set():
            for r in ctl.requests(since=seen):
                seen = max(seen, r["seq"])
                if r["path"] == "/v1/customers" and "status=Cancelled" in (r.get("query") or ""):
                    ctl.modify_customer(moved_uuid, status="Cancelled", mrr=900, company="Mover Moved")
                    trigger["seq"] = r["seq"]
                    moved.set()
                    return

    thread = threading.Thread(target=mover, daemon=True)
    thread.start()
    # No split: partitions start in status order, two at a time, so New Lead is walked before Cancelled.
    result = refresh(sandbox.base_url, fresh_db, max_workers=2, split_large_partitions=False)
    moved.set()
    thread.join(5)
    ctl.configure(latency_ms=0)
    assert "seq" in trigger, "the pass listed Cancelled"
    lists = [r for r in ctl.requests(since=start_seq) if r["path"] == "/v1/customers"]
    lead_pages = [r["seq"] for r in lists if "status=New_Lead" in r["query"]]
    cancelled_after = [r for r in lists if "status=Cancelled" in r["query"] and r["seq"] > trigger["seq"]]
    # Seen twice: New Lead's pages (the customer on the last one) before the move, Cancelled's after it.
    assert lead_pages and max(lead_pages) < trigger["seq"] and cancelled_after
    meta = materialization_metadata(result)
    assert (meta["updated"], meta["deleted"], meta["dagster/row_count"]) == (1, 0, 301)
    row, api = row_by_uuid(fresh_db, moved_uuid), ctl.customer(moved_uuid)
    assert row["status"] == api["status"] == "Cancelled"
    assert (row["mrr"], row["company"]) == (900, "Mover Moved") and row["raw"] == api
    again = materialization_metadata(refresh(sandbox.base_url, fresh_db))  # a clean run agrees
    assert (again["updated"], again["inserted"]) == (0, 0)
