"""Progress of a run: per-partition counters the workers update, and the lines the main thread logs."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

MAX_PROBLEMS_LOGGED = 20


class Log(Protocol):
    def info(self, msg: str) -> Any: ...
    def warning(self, msg: str) -> Any: ...


@dataclass
class PartitionProgress:
    partition: str
    state: str = "waiting"  # waiting | running | done | split (a first load's status) | failed | stopped
    pages: int = 0  # pages staged by this run
    customers: int = 0  # entries staged by this run
    resumed_pages: int = 0  # pages staged by earlier runs of this pass
    resumed_customers: int = 0
    status_mismatches: int = 0  # entries whose status is not the partition's


class Heartbeat:
    """Logs `line()` every `interval` seconds from a daemon thread until the block ends.

    For the phases that wait on one long call (deletion checks, the publish transaction): the run log
    keeps moving. Dagster's log manager accepts records from any thread.
    """

    def __init__(self, log: Log, interval: float, line):
        self.log, self.interval, self.line = log, interval, line
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cm-extract-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a progress line must never break the run
                self.log.info(self.line())

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Progress:
    """Shared counters, updated by workers; only the main thread logs."""

    def __init__(self, partitions: list[str]):
        self.lock = threading.Lock()
        self.parts = {p: PartitionProgress(p) for p in partitions}
        self.split: list[str] = []  # statuses a first load split over the data sources as it walked
        self.messages: list[str] = []  # rejected rows and field problems, the first MAX_PROBLEMS_LOGGED
        self.notes: list[str] = []  # events a worker met that must always be logged (e.g. a restart)
        self.rejected_count = 0
        self.problem_count = 0
        self.logged = 0  # how many messages were logged already
        self.started = time.monotonic()

    def totals(self) -> tuple[int, int]:
        with self.lock:
            return sum(p.pages for p in self.parts.values()), sum(p.customers for p in self.parts.values())

    def line(self, client=None) -> str:
        pages, customers = self.totals()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        with self.lock:
            parts = ", ".join(
                f"{p.partition} {p.state} {p.pages + p.resumed_pages}p/{p.customers + p.resumed_customers}c"
                for p in self.parts.values()
            )
        http = ""
        if client is not None:
            stats = client.stats
            http = f"; HTTP {stats['requests']} requests, {stats['retries']} retries, {stats['rate_limited']} x 429"
        return (
            f"extract: {pages} pages, {customers} customers in {elapsed:.1f} s "
            f"({customers / elapsed:.0f} customers/s, {pages / elapsed:.1f} pages/s){http} | {parts}"
        )

    def count_problems(self, rejected: Sequence[str], problems: Sequence, met: int | None = None) -> None:
        """Count rejected entries and field problems (`met`: how many problems there were, when only the
        first are given), keeping the first MAX_PROBLEMS_LOGGED messages. The caller holds `lock`."""
        self.rejected_count += len(rejected)
        self.problem_count += len(problems) if met is None else met
        room = MAX_PROBLEMS_LOGGED - len(self.messages)
        if room > 0 and (rejected or problems):
            self.messages.extend([*rejected, *(str(p) for p in problems)][:room])

    def log_problems(self, log: Log) -> None:
        """Log the workers' notes and the (bounded) rejected rows and field problems not logged yet."""
        with self.lock:
            lines, self.logged = self.messages[self.logged :], len(self.messages)
            notes, self.notes = self.notes, []
        for line in [*notes, *lines]:
            log.warning(f"extract: {line}")
