"""The walk: every unfinished partition of a pass, cursor by cursor, concurrently, each page staged.

A work queue of partitions runs on `max_workers` threads that share one client (so one rate limiter).
A split status is checked afterwards against the API's count (one `per_page=1` request); if short, its
fallback partition walks the whole status with one cursor. The first failure stops every worker.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import APIError
from cm_pipeline.chartmogul.vocabulary import filter_to_status
from cm_pipeline.extract.discovery import exact_count
from cm_pipeline.extract.options import ExtractOptions
from cm_pipeline.extract.plan import fallback_partition, parse_partition
from cm_pipeline.extract.progress import MAX_PROBLEMS_LOGGED, Log, PartitionProgress, Progress
from cm_pipeline.warehouse.passes import Pass, add_partition, staged_customers
from cm_pipeline.warehouse.staging import FETCH_CLOCK, StagingWriter

# 4xx answers that say nothing about a saved cursor (the key, the account, the rate): never a restart.
NOT_A_CURSOR_PROBLEM = frozenset({401, 403, 429})


def refuses_saved_cursor(exc: BaseException) -> bool:
    """Whether an error on a request carrying a saved cursor means the cursor is no longer valid.

    Any 4xx but 401, 403 and 429: a 400 "Invalid cursor", a 404 or 422 for an expired one, or another
    answer the API may give; 5xx and transport errors are retried by the client, never a restart.
    """
    return (
        isinstance(exc, APIError)
        and exc.status is not None
        and 400 <= exc.status < 500
        and exc.status not in NOT_A_CURSOR_PROBLEM
    )


class RunAbandoned(RuntimeError):
    """The run this extraction belongs to is over: the walk stops and nothing is published."""


def check_not_abandoned(abandoned) -> None:
    """Raise RunAbandoned naming why, when `abandoned()` says the run is over."""
    why = abandoned()
    if why:
        raise RunAbandoned(f"extract: stopped without publishing: {why}; the pass resumes on the next run")


class Walk:
    """One run's walk of a pass: the partitions left to walk, and the split statuses left to check."""

    def __init__(
        self, client, engine: Engine, options: ExtractOptions, the_pass: Pass, progress: Progress, abandoned
    ):
        self.client, self.engine, self.options, self.abandoned = client, engine, options, abandoned
        self.the_pass, self.progress = the_pass, progress
        self.stop = threading.Event()
        self.futures: dict[Future, tuple[str, str]] = {}
        self.counts: dict[str, tuple[int | None, str]] = {}
        for name, cp in the_pass.checkpoints.items():
            part = progress.parts[name]
            part.resumed_pages, part.resumed_customers = cp.pages, cp.customers
            if cp.done:
                part.state = "done"
        # Split statuses whose coverage must be checked: those without a fallback partition yet.
        self.subs_of: dict[str, list[str]] = {}
        for spec in map(parse_partition, the_pass.checkpoints):
            if spec.data_source_uuid is not None:
                self.subs_of.setdefault(spec.status, []).append(spec.name)
        self.unchecked = {s for s in self.subs_of if fallback_partition(s) not in the_pass.checkpoints}

    def run(self, log: Log) -> None:
        """Walk every unfinished partition and check split statuses' coverage; fail fast."""
        todo = [name for name, cp in self.the_pass.checkpoints.items() if not cp.done]
        if not todo and not self.unchecked:
            return
        self.pool = ThreadPoolExecutor(max_workers=self.options.max_workers, thread_name_prefix="cm-extract")
        try:
            for status in sorted(self.unchecked):  # one request each; first, so the checks never wait
                fut = self.pool.submit(exact_count, self.client, status=status, system=self.options.system)
                self.futures[fut] = ("count", status)
            for name in todo:  # a fresh plan lists the largest partitions first
                self._start_walk(name)
            self._wait(set(self.futures), log)
        finally:
            self.stop.set()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.progress.log_problems(log)
        if self.progress.rejected_count or self.progress.problem_count:
            log.warning(
                f"extract: {self.progress.rejected_count} entries rejected (see cm_pipeline.extract_rejects), "
                f"{self.progress.problem_count} field values stored as NULL or cleaned (raw keeps them)"
            )

    def _start_walk(self, name: str) -> Future:
        fut = self.pool.submit(_walk_partition, self, name)
        self.futures[fut] = ("walk", name)
        return fut

    def _wait(self, pending: set[Future], log: Log) -> None:
        while pending:
            done, pending = wait(pending, timeout=self.options.progress_interval, return_when=FIRST_EXCEPTION)
            for fut in done:
                exc = fut.exception()
                if exc is not None:
                    self.stop.set()
                    raise exc
                kind, name = self.futures[fut]
                if kind == "count":
                    self.counts[name] = fut.result()
                else:
                    log.info(
                        f"extract: partition {name} done ({self.progress.parts[name].pages} pages this run)"
                    )
            pending |= self._check_walked_statuses(log)
            try:
                check_not_abandoned(self.abandoned)
            except RunAbandoned:
                self.stop.set()
                raise
            self.progress.log_problems(log)
            if pending:
                log.info(self.progress.line(self.client))

    def _check_walked_statuses(self, log: Log) -> set[Future]:
        """Check each split status whose partitions are done and whose count arrived; the fallback walks
        this started."""
        started = set()
        for status in sorted(self.unchecked):
            with self.progress.lock:
                walked = all(self.progress.parts[n].state == "done" for n in self.subs_of[status])
            if not walked or status not in self.counts:
                continue
            self.unchecked.discard(status)
            fallback = self._check_coverage(status, log)
            if fallback is not None:
                started.add(self._start_walk(fallback))
        return started

    def _check_coverage(self, status: str, log: Log) -> str | None:
        """Compare a split status's staged customers with the API's count; add its fallback if short."""
        subs, progress = self.subs_of[status], self.progress
        expected, why = self.counts[status]
        staged = staged_customers(self.engine, self.the_pass.pass_id, subs)
        if expected is not None and staged >= expected:
            line = f"{status}: {staged} customers staged by {len(subs)} data source partitions, API count {expected}"
            with progress.lock:
                progress.coverage.append(line + ": complete")
            log.info(f"extract: coverage {line}: complete")
            return None
        if expected is not None:
            why = (
                f"{staged} customers staged by {len(subs)} data source partitions but the API counts {expected}"
                " (a data source the warehouse does not know yet?)"
            )
        name = fallback_partition(status)
        self.the_pass.checkpoints[name] = checkpoint = add_partition(self.engine, self.the_pass.pass_id, name)
        with progress.lock:
            progress.coverage.append(f"{status}: {why}: walked again as {name}")
            part = progress.parts.setdefault(name, PartitionProgress(name))
            part.resumed_pages, part.resumed_customers = checkpoint.pages, checkpoint.customers
        log.warning(f"extract: coverage {status}: {why}; walking the whole status again as partition {name}")
        return name


def _walk_partition(walk: Walk, name: str) -> None:
    """Walk one partition from its checkpoint to its end (or until the walk stops); a refused saved
    cursor restarts the partition from its first page."""
    progress = walk.progress
    part = progress.parts[name]
    with progress.lock:
        part.state = "running"
    try:
        with StagingWriter(walk.engine, walk.the_pass.pass_id, name) as writer:
            cursor = walk.the_pass.checkpoints[name].cursor
            while True:
                try:
                    _walk_pages(walk, name, cursor, writer)
                    break
                except APIError as exc:
                    # Only the first request of this run carries the saved cursor.
                    if cursor is None or part.pages > 0 or not refuses_saved_cursor(exc):
                        raise
                    note = (
                        f"partition {name}: the saved cursor was refused (HTTP {exc.status}: {exc.message});"
                        f" restarting the partition from its first page (its {part.resumed_customers} staged"
                        " customers are walked again)"
                    )
                    writer.restart_partition()
                    with progress.lock:
                        progress.notes.append(note)
                        part.resumed_pages = part.resumed_customers = 0
                    cursor = None
        with progress.lock:
            part.state = "stopped" if walk.stop.is_set() and part.state == "running" else "done"
    except BaseException:
        with progress.lock:
            part.state = "failed"
        raise


def _walk_pages(walk: Walk, name: str, cursor: str | None, writer: StagingWriter) -> None:
    spec, options, progress = parse_partition(name), walk.options, walk.progress
    part = progress.parts[name]
    expected_status = filter_to_status(spec.status) if spec.status else None
    for page in walk.client.list_customers(
        status=spec.status,
        data_source_uuid=spec.data_source_uuid or options.data_source_uuid,
        system=options.system,
        per_page=options.per_page,
        cursor=cursor,
    ):
        # The fetch order is taken as the response arrives: another worker may write a later page first.
        fetched = FETCH_CLOCK.reserve(len(page.entries))
        outcome = writer.write_page(page.entries, page.cursor, page.has_more, fetched=fetched)
        mismatches = (
            sum(1 for e in page.entries if e.get("status") != expected_status) if expected_status else 0
        )
        with progress.lock:
            part.pages += 1
            part.customers += outcome.staged
            part.status_mismatches += mismatches
            progress.rejected_count += len(outcome.rejected)
            progress.problem_count += len(outcome.problems)
            room = MAX_PROBLEMS_LOGGED - len(progress.messages)
            if room > 0 and (outcome.rejected or outcome.problems):
                news = [*outcome.rejected, *(str(p) for p in outcome.problems)]
                progress.messages.extend(news[:room])
        if walk.stop.is_set() and page.has_more:
            return  # another partition failed or the run was interrupted; the checkpoint is saved
    writer.mark_done()
