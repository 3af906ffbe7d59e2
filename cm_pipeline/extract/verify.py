"""Deletion checks: GET each published customer a complete pass did not see; only the API's JSON 404
marks one deleted, a 200 must be the customer asked for to count as alive, anything else is an error
that leaves the row untouched. Customers still alive are staged, so the publish refreshes them."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import ChartMogulError, NotFoundError
from cm_pipeline.extract.options import ExtractOptions
from cm_pipeline.extract.progress import Heartbeat, Log
from cm_pipeline.warehouse.publish import DeletionCheck
from cm_pipeline.warehouse.staging import FETCH_CLOCK, VERIFY_PARTITION, StagingWriter


def deletion_outcome(exc: ChartMogulError) -> str:
    """'deleted' only for the API's own not-found answer: a 404 with a JSON error body.

    A 404 whose body is HTML, empty or not JSON comes from a gateway or proxy in front of the API (or a
    wrong base URL): it proves nothing about the customer, so it is an 'error', as is any other answer.
    """
    if not isinstance(exc, NotFoundError) or exc.status != 404:
        return "error"
    return "deleted" if isinstance(exc.details, dict) and exc.details else "error"


def check_customer(client, uuid: str) -> tuple[DeletionCheck, dict | None, int]:
    """(the check, the entry when alive, its fetch order) for one unseen customer."""
    try:
        entry = client.retrieve_customer(uuid)
    except ChartMogulError as exc:
        if deletion_outcome(exc) == "deleted":
            return DeletionCheck(uuid, "deleted", 404, exc.message), None, 0
        why = f"{type(exc).__name__}: {exc.message}"
        if isinstance(exc, NotFoundError):
            why = f"404 without the API's JSON error body (a gateway or proxy?): {exc.message}"
        return DeletionCheck(uuid, "error", exc.status, why[:500]), None, 0
    fetched = FETCH_CLOCK.reserve(1)  # as the answer arrived
    if not isinstance(entry, dict) or entry.get("uuid") != uuid:
        got = entry.get("uuid") if isinstance(entry, dict) else type(entry).__name__
        return DeletionCheck(uuid, "error", 200, f"answer is not this customer (got {got!r})"[:500]), None, 0
    return DeletionCheck(uuid, "alive", 200, None), entry, fetched


def verify(
    client, engine: Engine, pass_id: int, uuids: list[str], options: ExtractOptions, log: Log
) -> list[DeletionCheck]:
    """Check every uuid concurrently (through the client's limiter); stage the ones still alive."""
    checks: list[DeletionCheck] = []
    alive: list[dict] = []
    fetched_at: list[int] = []
    started = time.monotonic()

    def line() -> str:
        elapsed = time.monotonic() - started
        return f"extract: verifying unseen customers: {len(checks)}/{len(uuids)} checked, {elapsed:.0f} s elapsed"

    with (
        Heartbeat(log, options.progress_interval, line),
        ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="cm-verify") as pool,
        StagingWriter(engine, pass_id, VERIFY_PARTITION) as writer,
    ):
        for result, entry, fetched in pool.map(lambda uuid: check_customer(client, uuid), uuids):
            checks.append(result)
            if entry is not None:
                alive.append(entry)
                fetched_at.append(fetched)
                if len(alive) >= options.per_page:
                    writer.stage_entries(alive, fetched_at)
                    alive, fetched_at = [], []
            if result.outcome == "error":
                log.warning(f"extract: could not verify {result.uuid} ({result.message}); left untouched")
        if alive:
            writer.stage_entries(alive, fetched_at)
    counts = {o: sum(1 for c in checks if c.outcome == o) for o in ("deleted", "alive", "error")}
    log.info(
        f"extract: verification: {counts['deleted']} answered 404 (deleted), {counts['alive']} still exist "
        f"(refreshed), {counts['error']} could not be checked (untouched)"
    )
    return checks
