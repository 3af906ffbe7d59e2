"""Shared pieces of the three pushers: op names, summaries, error classification and a log sink."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import (
    AuthenticationError,
    ChartMogulError,
    ForbiddenError,
    TransportError,
    is_retriable,
)
from cm_pipeline.push.push_log import LogEntry, record
from cm_pipeline.push.rows import RowRejected

T = TypeVar("T")

OP_UPDATES = "push_customer_updates"
OP_BY_EMAIL = "push_custom_attributes"
OP_CREATES = "create_customers"


@dataclass
class StepSummary:
    """What one step (diff or apply) did: outcome counts and, for apply, the calls it made."""

    counts: Counter = field(default_factory=Counter)
    pending: int = 0  # rows the diff leaves to the apply step
    calls: int = 0

    def as_dict(self) -> dict:
        out = {
            k: int(self.counts.get(k, 0)) for k in ("applied", "unchanged", "rejected", "failed", "dry_run")
        }
        out["pending"] = self.pending
        out["calls"] = self.calls
        return out


class LogSink:
    """Writes push_log rows as soon as each call returns (thread-safe) and counts outcomes."""

    def __init__(self, engine: Engine, run_id: str, on_entry: Callable[[LogEntry], None] | None = None):
        self.engine, self.run_id = engine, run_id
        self.counts: Counter = Counter()
        self._lock = threading.Lock()
        self._on_entry = on_entry

    def write(self, entries: Iterable[LogEntry]) -> None:
        entries = list(entries)
        record(self.engine, self.run_id, entries)
        with self._lock:
            for entry in entries:
                self.counts[entry.outcome] += 1
        if self._on_entry:
            for entry in entries:
                self._on_entry(entry)


class FatalPushError(RuntimeError):
    """A failure no row can get past (bad credentials, account blocked): the run stops."""


def classify(err: ChartMogulError) -> str:
    """'failed' (transient, try again next run) or 'rejected' (the API refused these values).

    Raises FatalPushError for 401/403: every further call would fail the same way.
    """
    if isinstance(err, (AuthenticationError, ForbiddenError)):
        raise FatalPushError(f"ChartMogul refused the credentials: {err}") from None
    if isinstance(err, TransportError) or is_retriable(err) or err.status is None:
        return "failed"
    if 400 <= err.status < 500:
        return "rejected"
    return "failed"


@contextlib.contextmanager
def push_lock(engine: Engine, op: str):
    """Hold a Postgres advisory lock for `op`: two pushes of the same relation never interleave writes."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": f"cm_pipeline.push:{op}"})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": f"cm_pipeline.push:{op}"})
            conn.commit()


def run_pool(work: Callable, items: list, max_workers: int) -> None:
    """Run `work(item)` for every item on a thread pool; the first exception cancels what has not started."""
    pool = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="push")
    try:
        for future in [pool.submit(work, item) for item in items]:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def parse_each(
    rows: list[tuple[int, dict]],
    op: str,
    parse: Callable[[dict], T],
    target_field: str,
    fingerprint: Callable[[dict], Any],
) -> tuple[list[tuple[int, T]], list[LogEntry]]:
    """Parse every (seq, row); a row that fails validation becomes a 'rejected' entry naming why."""
    valid: list[tuple[int, T]] = []
    rejected: list[LogEntry] = []
    for seq, row in rows:
        try:
            valid.append((seq, parse(row)))
        except RowRejected as exc:
            rejected.append(
                LogEntry(
                    op, str(row.get(target_field)), "rejected", fingerprint(row), payload=row, error=str(exc)
                )
            )
    return valid, rejected
