"""The loading side of the walk: pages go to staging in fetch order, and into the next table version.

- `Stager` (one thread, one connection): takes the fetched pages in the order they arrived, maps them
  (mapping.prepare_entry), and stages whatever has queued up with one COPY, committed with the
  checkpoints of their partitions: what makes a pass resumable.
- `Applier` (one thread): applies what is staged to the publish transaction (warehouse/publish.py) while
  the walk goes on, in the same order; after the last page only the finishing step is left.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.vocabulary import filter_to_status
from cm_pipeline.extract.plan import parse_partition
from cm_pipeline.extract.progress import Progress
from cm_pipeline.warehouse.publish import Publisher
from cm_pipeline.warehouse.staging import StagedPage, StagingWriter

QUEUE_PAGES = 10  # fetched pages waiting for staging at most (fetchers wait beyond it: memory stays flat)
BATCH_PAGES = 8  # pages staged by one COPY at most (a parsed page is ~0.7 MB of Python objects)
APPLY_EVERY = 0.1  # seconds between two applies, so that a batch gathers several pages
_END = object()


def last_fetch(page: StagedPage) -> int:
    """The fetch order of a page's last entry (FETCH_CLOCK reserved one value per entry, one if empty)."""
    return page.fetched + max(len(page.entries), 1) - 1


class Stager:
    """Stages queued pages in arrival order; `on_staged(fetch_seq)` follows every committed batch."""

    def __init__(
        self,
        engine: Engine,
        pass_id: int,
        progress: Progress,
        on_staged: Callable[[int], None],
        unmapped: bool = False,
    ):
        self.engine, self.pass_id, self.progress, self.on_staged = engine, pass_id, progress, on_staged
        self.unmapped = unmapped  # stage entries without mapping them: the publish maps those it writes
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_PAGES)
        self.thread = threading.Thread(target=self.run, name="cm-extract-stage", daemon=True)
        self.error: BaseException | None = None

    def put(self, page: StagedPage) -> None:
        """Queue a page (call it while holding the walk's fetch-order lock); waits while the queue is full."""
        while True:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError(
                    "extract: staging stopped before this page could be staged"
                ) from self.error
            try:
                self.queue.put(page, timeout=0.1)
                return
            except queue.Full:
                continue

    def end(self) -> None:
        """No more pages: stage what is queued, then stop."""
        while self.thread.is_alive():
            try:
                self.queue.put(_END, timeout=0.1)
                return
            except queue.Full:
                continue

    def _batch(self) -> list[StagedPage] | None:
        first = self.queue.get()
        if first is _END:
            return None
        batch = [first]
        while len(batch) < BATCH_PAGES:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is _END:
                self.queue.put(_END)  # seen again by the next call, after this batch
                break
            batch.append(item)
        return batch

    def run(self) -> None:
        try:
            with StagingWriter(self.engine, self.pass_id) as writer:
                while (batch := self._batch()) is not None:
                    outcomes = writer.write_pages(batch, unmapped=self.unmapped)
                    self._count(batch, outcomes)
                    self.on_staged(last_fetch(batch[-1]))
        except BaseException as exc:
            self.error = exc
            while True:  # unblock fetchers waiting to queue
                try:
                    self.queue.get_nowait()
                except queue.Empty:
                    break

    def _count(self, batch: list[StagedPage], outcomes) -> None:
        progress = self.progress
        with progress.lock:
            for page, outcome in zip(batch, outcomes, strict=True):
                part = progress.parts[page.partition]
                part.pages += 1
                part.customers += outcome.staged
                status = parse_partition(page.partition).status
                if status is not None:
                    expected = filter_to_status(status)
                    part.status_mismatches += sum(1 for e in page.entries if e.get("status") != expected)
                progress.count_problems(outcome.rejected, outcome.problems)


class Applier:
    """Applies staged rows to the publish transaction as they are committed, on its own thread."""

    def __init__(self, publisher: Publisher):
        self.publisher = publisher
        self.cond = threading.Condition()
        self.target = publisher.applied  # fetch_seq staged so far
        self.ending = self.quitting = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="cm-extract-apply", daemon=True)

    def staged(self, fetch_seq: int) -> None:
        with self.cond:
            self.target = max(self.target, fetch_seq)
            self.cond.notify_all()

    def end(self, *, apply_rest: bool) -> None:
        """Apply what is staged (or not: the walk failed), then stop; returns once the thread is done."""
        with self.cond:
            self.ending, self.quitting = True, not apply_rest
            self.cond.notify_all()
        self.thread.join()

    def run(self) -> None:
        try:
            while True:
                with self.cond:
                    while self.target <= self.publisher.applied and not self.ending:
                        self.cond.wait()
                    if self.quitting or (self.ending and self.target <= self.publisher.applied):
                        return
                    target, ending = self.target, self.ending
                self.publisher.apply(target)
                if not ending:
                    with self.cond:  # let a few pages gather, unless the walk is over
                        self.cond.wait_for(lambda: self.ending, timeout=APPLY_EVERY)
        except BaseException as exc:
            self.error = exc
