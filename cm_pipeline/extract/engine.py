"""One extraction pass: walk the customer list (one partition per status, large statuses split by data
source, concurrently), stage every page, check each split status's coverage against the API's count,
verify the customers the pass did not see, and publish. No Dagster here: the asset and the benchmark
both call `run_extraction`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import APIError, ChartMogulError, NotFoundError
from cm_pipeline.chartmogul.vocabulary import STATUS_FILTERS, filter_to_status
from cm_pipeline.extract.discovery import discover_sizes, exact_count
from cm_pipeline.extract.plan import (
    Plan,
    fallback_partition,
    parse_partition,
    plan_partitions,
    warehouse_sizes,
)
from cm_pipeline.warehouse.loader import (
    FETCH_CLOCK,
    VERIFY_PARTITION,
    DeletionCheck,
    Pass,
    PublishResult,
    StagingWriter,
    add_partition,
    clear_staging,
    deletion_candidates,
    ensure_tables,
    open_pass,
    publish,
    staged_customers,
)
from cm_pipeline.warehouse.locks import AdvisoryLock

ALL_PARTITION = "all"  # the single partition of an unpartitioned (single-cursor) pass
MAX_PROBLEMS_LOGGED = 20
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


def deletion_outcome(exc: ChartMogulError) -> str:
    """'deleted' only for the API's own not-found answer: a 404 with a JSON error body.

    A 404 whose body is HTML, empty or not JSON comes from a gateway or proxy in front of the API (or a
    wrong base URL): it proves nothing about the customer, so it is an 'error', as is any other answer.
    """
    if not isinstance(exc, NotFoundError) or exc.status != 404:
        return "error"
    return "deleted" if isinstance(exc.details, dict) and exc.details else "error"


class Log(Protocol):
    def info(self, msg: str) -> Any: ...
    def warning(self, msg: str) -> Any: ...


@dataclass(frozen=True)
class ExtractOptions:
    """What one extraction run does (the asset's run config maps onto this)."""

    per_page: int = 200
    max_workers: int = 10  # partitions walked at once (the client's limiter caps real concurrency and rps)
    data_source_uuid: str | None = None
    system: str | None = None
    partition_by_status: bool = True
    split_large_partitions: bool = True  # split a large status by data source (see partitions.py)
    split_threshold: float | None = None  # share of live customers above which a status splits; 1/max_workers
    full_refresh: bool = False
    resume_max_age: timedelta = timedelta(hours=24)
    verify_deletions: bool = True
    max_deletion_checks: int = 10_000
    progress_interval: float = 3.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.per_page, bool)
            or not isinstance(self.per_page, int)
            or not 1 <= self.per_page <= 200
        ):
            raise ValueError(f"per_page: must be an integer from 1 to 200, got {self.per_page!r}")
        if not isinstance(self.max_workers, int) or not 1 <= self.max_workers <= 32:
            raise ValueError(f"max_workers: must be an integer from 1 to 32, got {self.max_workers!r}")
        if self.split_threshold is not None and (
            isinstance(self.split_threshold, bool)
            or not isinstance(self.split_threshold, int | float)
            or not 0 < self.split_threshold <= 1
        ):
            raise ValueError(
                f"split_threshold: must be a share in (0, 1] or unset, got {self.split_threshold!r}"
            )
        for name in ("data_source_uuid", "system"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name}: must be a non-empty string or unset, got {value!r}")
        if self.max_deletion_checks < 0:
            raise ValueError(f"max_deletion_checks: must be >= 0, got {self.max_deletion_checks!r}")
        if self.progress_interval <= 0:
            raise ValueError(f"progress_interval: must be positive, got {self.progress_interval!r}")

    @property
    def partitions(self) -> list[str]:
        return list(STATUS_FILTERS) if self.partition_by_status else [ALL_PARTITION]

    @property
    def splits(self) -> bool:
        """Whether large statuses may be split by data source (not when a data source filter is set)."""
        return self.partition_by_status and self.split_large_partitions and self.data_source_uuid is None

    @property
    def threshold(self) -> float:
        return self.split_threshold if self.split_threshold is not None else 1 / self.max_workers

    @property
    def filters(self) -> dict:
        return {"data_source_uuid": self.data_source_uuid, "system": self.system}


@dataclass
class PartitionProgress:
    partition: str
    state: str = "waiting"  # waiting | running | done | failed | stopped
    pages: int = 0  # pages fetched by this run
    customers: int = 0  # entries staged by this run
    resumed_pages: int = 0  # pages staged by earlier runs of this pass
    resumed_customers: int = 0
    status_mismatches: int = 0  # entries whose status is not the partition's


@dataclass
class ExtractResult:
    """Everything the run did, for the asset's metadata and the benchmark."""

    pass_id: int
    resumed: bool
    note: str
    pages: int
    customers_fetched: int
    rejected: int
    field_problems: int
    status_mismatches: int
    deletion_candidates: int
    verified_alive: int
    verification_errors: int
    publish: PublishResult
    duration_seconds: float
    partitions: dict[str, PartitionProgress] = field(default_factory=dict)
    requests: dict = field(default_factory=dict)
    coverage: list[str] = field(default_factory=list)  # split statuses checked against the API's count


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


class _Progress:
    """Shared counters, updated by workers; only the main thread logs."""

    def __init__(self, partitions: list[str]):
        self.lock = threading.Lock()
        self.parts = {p: PartitionProgress(p) for p in partitions}
        self.coverage: list[str] = []  # one line per split status checked against the API's count
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


def run_extraction(client, engine: Engine, options: ExtractOptions, log: Log) -> ExtractResult:
    """Hold the refresh lock, run (or resume) a pass, verify deletions, publish; return what happened."""
    with AdvisoryLock(engine):
        extraction = Extraction(client, engine, options, log)
        extraction.open()
        extraction.walk()
        extraction.verify()
        return extraction.publish()


class Extraction:
    """The phases of one run, in order: open (or resume) the pass, walk it, verify the unseen, publish.

    `run_extraction` runs them under the refresh lock; tests may call them one by one (same code).
    """

    def __init__(self, client, engine: Engine, options: ExtractOptions, log: Log):
        self.client, self.engine, self.options, self.log = client, engine, options, log
        self.started = time.monotonic()
        self.requests_before = client.stats
        self.progress = _Progress([])  # filled from the pass's checkpoints (its plan) when it opens
        self.plan: Plan | None = None
        self.the_pass: Pass | None = None
        self.candidates: list[str] = []
        self.checks: list[DeletionCheck] = []

    def open(self) -> Pass:
        options = self.options
        migration = ensure_tables(self.engine)
        if migration:
            self.log.warning(f"extract: {migration}")
        self.the_pass = the_pass = open_pass(
            self.engine,
            filters=options.filters,
            partitions=options.partitions,
            per_page=options.per_page,
            full_refresh=options.full_refresh,
            resume_max_age=options.resume_max_age,
            plan=self._fresh_plan if options.splits else None,
        )
        self.progress = _Progress(list(the_pass.checkpoints))
        how = (
            f"resumed ({the_pass.note})"
            if the_pass.resumed
            else "started" + (f" ({the_pass.note})" if the_pass.note else "")
        )
        if the_pass.resumed or self.plan is None:
            plan = ", ".join(the_pass.checkpoints)
        else:
            plan = self.plan.describe() + (
                f" (split by data source: {', '.join(self.plan.split)})" if self.plan.split else ""
            )
        self.log.info(
            f"extract: pass {the_pass.pass_id} {how}; partitions {plan}; "
            f"per_page {options.per_page}; filters {({k: v for k, v in options.filters.items() if v}) or 'none'}"
        )
        return the_pass

    def _fresh_plan(self) -> list[str]:
        """A fresh pass's partitions: large statuses split by data source, sized by the last publish or,
        on a first load, by the API's own counts (discovery.py)."""
        options = self.options
        sizes = warehouse_sizes(self.engine, options.system)
        if not sizes:
            try:
                sizes = discover_sizes(
                    self.client,
                    options.partitions,
                    options.threshold,
                    system=options.system,
                    max_workers=options.max_workers,
                    note=lambda line: self.log.info(f"extract: first-load plan: {line}"),
                )
            except ChartMogulError as exc:  # a plan is an optimisation: walk unsplit rather than fail here
                self.log.warning(f"extract: first-load plan: counting failed ({exc}); no status is split")
                sizes = {}
        self.plan = plan_partitions(options.partitions, sizes, options.threshold)
        return self.plan.partitions

    def walk(self) -> None:
        _walk(self.client, self.engine, self.options, self.the_pass, self.progress, self.log)
        self.log.info(self.progress.line(self.client).replace("extract:", "extract: pass complete:", 1))

    def verify(self) -> list[DeletionCheck]:
        options, log = self.options, self.log
        if not options.verify_deletions:
            return []
        candidates = deletion_candidates(
            self.engine, self.the_pass.pass_id, self.the_pass.filters, options.max_deletion_checks + 1
        )
        if len(candidates) > options.max_deletion_checks:
            log.warning(
                f"extract: more than {options.max_deletion_checks} published customers were not seen by this "
                f"pass; verifying the first {options.max_deletion_checks} only, the rest stay untouched "
                "until a later run (raise max_deletion_checks to verify more at once)"
            )
            candidates = candidates[: options.max_deletion_checks]
        self.candidates = candidates
        if candidates:
            log.info(f"extract: verifying {len(candidates)} customer(s) this pass did not see")
            self.checks = _verify(self.client, self.engine, self.the_pass.pass_id, candidates, options, log)
        return self.checks

    def publish(self) -> ExtractResult:
        the_pass, progress, checks = self.the_pass, self.progress, self.checks
        with progress.lock:
            staged = sum(p.customers + p.resumed_customers for p in progress.parts.values())
        staged += sum(1 for c in checks if c.outcome == "alive")
        started = time.monotonic()
        self.log.info(f"extract: publishing pass {the_pass.pass_id}: {staged} staged rows")
        with Heartbeat(
            self.log,
            self.options.progress_interval,
            lambda: f"extract: publishing: {staged} staged rows, {time.monotonic() - started:.0f} s elapsed",
        ):
            result = publish(self.engine, the_pass.pass_id, checks)
            clear_staging(self.engine, the_pass.pass_id)
        requests_after, before = self.client.stats, self.requests_before
        pages, customers = progress.totals()
        duration = time.monotonic() - self.started
        outcome = ExtractResult(
            pass_id=the_pass.pass_id,
            resumed=the_pass.resumed,
            note=the_pass.note,
            pages=pages,
            customers_fetched=customers,
            rejected=progress.rejected_count + result.rejected,
            field_problems=progress.problem_count,
            status_mismatches=sum(p.status_mismatches for p in progress.parts.values()),
            deletion_candidates=len(self.candidates),
            verified_alive=sum(1 for c in checks if c.outcome == "alive"),
            verification_errors=sum(1 for c in checks if c.outcome == "error"),
            publish=result,
            duration_seconds=duration,
            partitions=progress.parts,
            coverage=list(progress.coverage),
            requests={k: requests_after[k] - before[k] for k in ("requests", "retries", "rate_limited")},
        )
        self.log.info(
            f"extract: published pass {outcome.pass_id} in {duration:.1f} s: {result.inserted} inserted, "
            f"{result.updated} updated, {result.unchanged} unchanged, {result.deleted} deleted, "
            f"{result.undeleted} undeleted; {result.live_count} live of {result.row_count} rows"
        )
        if result.rejected:
            self.log.warning(
                f"extract: {result.rejected} staged entries were not valid JSON for Postgres and were left"
                " out of the publish (see chartmogul._extract_rejects)"
            )
        return outcome


def _walk(
    client, engine: Engine, options: ExtractOptions, the_pass: Pass, progress: _Progress, log: Log
) -> None:
    """Walk every unfinished partition from a work queue, check split statuses' coverage; fail fast."""
    stop = threading.Event()
    for name, cp in the_pass.checkpoints.items():
        part = progress.parts[name]
        part.resumed_pages, part.resumed_customers = cp.pages, cp.customers
        if cp.done:
            part.state = "done"
    specs = [parse_partition(name) for name in the_pass.checkpoints]
    # Split statuses whose coverage must be checked: those without a fallback partition yet.
    subs_of: dict[str, list[str]] = {}
    for spec in specs:
        if spec.data_source_uuid is not None:
            subs_of.setdefault(spec.status, []).append(spec.name)
    unchecked = {s for s in subs_of if fallback_partition(s) not in the_pass.checkpoints}
    todo = [name for name, cp in the_pass.checkpoints.items() if not cp.done]
    if not todo and not unchecked:
        return
    pool = ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="cm-extract")
    futures: dict[Future, tuple[str, str]] = {}
    counts: dict[str, tuple[int | None, str]] = {}

    def start_walk(name: str) -> None:
        fut = pool.submit(_walk_partition, client, engine, options, the_pass, name, progress, stop)
        futures[fut] = ("walk", name)

    try:
        for status in sorted(unchecked):  # one request each; first, so the checks never wait for them
            futures[pool.submit(exact_count, client, status=status, system=options.system)] = (
                "count",
                status,
            )
        for name in todo:  # a fresh plan lists the largest partitions first
            start_walk(name)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=options.progress_interval, return_when=FIRST_EXCEPTION)
            for fut in done:
                exc = fut.exception()
                if exc is not None:
                    stop.set()
                    raise exc
                kind, name = futures[fut]
                if kind == "count":
                    counts[name] = fut.result()
                else:
                    log.info(f"extract: partition {name} done ({progress.parts[name].pages} pages this run)")
            for status in sorted(unchecked):
                with progress.lock:
                    walked = all(progress.parts[n].state == "done" for n in subs_of[status])
                if not walked or status not in counts:
                    continue
                unchecked.discard(status)
                fallback = _check_coverage(
                    engine, the_pass, status, subs_of[status], counts[status], progress, log
                )
                if fallback is not None:
                    start_walk(fallback)
                    pending.update(f for f in futures if futures[f] == ("walk", fallback))
            _log_problems(progress, log)
            if pending:
                log.info(progress.line(client))
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        _log_problems(progress, log)
    if progress.rejected_count or progress.problem_count:
        log.warning(
            f"extract: {progress.rejected_count} entries rejected (see chartmogul._extract_rejects), "
            f"{progress.problem_count} field values stored as NULL or cleaned (raw keeps them)"
        )


def _check_coverage(
    engine: Engine,
    the_pass: Pass,
    status: str,
    subs: list[str],
    count: tuple[int | None, str],
    progress: _Progress,
    log: Log,
) -> str | None:
    """Compare a split status's staged customers with the API's count; add its fallback partition if short."""
    expected, why = count
    staged = staged_customers(engine, the_pass.pass_id, subs)
    if expected is not None and staged >= expected:
        line = (
            f"{status}: {staged} customers staged by {len(subs)} data source partitions, API count {expected}"
        )
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
    the_pass.checkpoints[name] = checkpoint = add_partition(engine, the_pass.pass_id, name)
    with progress.lock:
        progress.coverage.append(f"{status}: {why}: walked again as {name}")
        part = progress.parts.setdefault(name, PartitionProgress(name))
        part.resumed_pages, part.resumed_customers = checkpoint.pages, checkpoint.customers
    log.warning(f"extract: coverage {status}: {why}; walking the whole status again as partition {name}")
    return name


def _log_problems(progress: _Progress, log: Log) -> None:
    """Log the workers' notes and the (bounded) rejected rows and field problems not logged yet."""
    with progress.lock:
        lines, progress.logged = progress.messages[progress.logged :], len(progress.messages)
        notes, progress.notes = progress.notes, []
    for line in [*notes, *lines]:
        log.warning(f"extract: {line}")


def _walk_partition(
    client,
    engine: Engine,
    options: ExtractOptions,
    the_pass: Pass,
    name: str,
    progress: _Progress,
    stop: threading.Event,
) -> None:
    part = progress.parts[name]
    checkpoint = the_pass.checkpoints[name]
    spec = parse_partition(name)
    status = spec.status
    data_source_uuid = spec.data_source_uuid or options.data_source_uuid
    expected_status = filter_to_status(status) if status else None
    with progress.lock:
        part.state = "running"
    try:
        with StagingWriter(engine, the_pass.pass_id, name) as writer:
            cursor = checkpoint.cursor
            while True:
                try:
                    _walk_pages(
                        client,
                        options,
                        status,
                        data_source_uuid,
                        expected_status,
                        cursor,
                        writer,
                        part,
                        progress,
                        stop,
                    )
                    break
                except APIError as exc:
                    # Only the first request of this run carries the saved cursor (later ones carry
                    # cursors the API just gave).
                    if cursor is None or part.pages > 0 or not refuses_saved_cursor(exc):
                        raise
                    # The saved cursor is no longer valid (expired?): redo this partition from its start.
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
            part.state = "stopped" if stop.is_set() and part.state == "running" else "done"
    except BaseException:
        with progress.lock:
            part.state = "failed"
        raise


def _walk_pages(
    client, options, status, data_source_uuid, expected_status, cursor, writer, part, progress, stop
) -> None:
    for page in client.list_customers(
        status=status,
        data_source_uuid=data_source_uuid,
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
        if stop.is_set() and page.has_more:
            return  # another partition failed or the run was interrupted; the checkpoint is saved
    writer.mark_done()


def _verify(
    client, engine: Engine, pass_id: int, uuids: list[str], options: ExtractOptions, log: Log
) -> list[DeletionCheck]:
    """GET each unseen customer (concurrently, through the client's limiter); stage the ones still alive.

    Only the API's JSON 404 verifies a deletion (`deletion_outcome`); a 200 must be the customer asked
    for to count as alive; anything else is an error and leaves the row untouched.
    """

    def check(uuid: str) -> tuple[DeletionCheck, dict | None, int]:
        try:
            entry = client.retrieve_customer(uuid)
        except ChartMogulError as exc:
            outcome = deletion_outcome(exc)
            if outcome == "deleted":
                return DeletionCheck(uuid, "deleted", 404, exc.message), None, 0
            why = f"{type(exc).__name__}: {exc.message}"
            if isinstance(exc, NotFoundError):
                why = f"404 without the API's JSON error body (a gateway or proxy?): {exc.message}"
            return DeletionCheck(uuid, "error", exc.status, why[:500]), None, 0
        fetched = FETCH_CLOCK.reserve(1)  # as the answer arrived
        if not isinstance(entry, dict) or entry.get("uuid") != uuid:
            got = entry.get("uuid") if isinstance(entry, dict) else type(entry).__name__
            return (
                DeletionCheck(uuid, "error", 200, f"answer is not this customer (got {got!r})"[:500]),
                None,
                0,
            )
        return DeletionCheck(uuid, "alive", 200, None), entry, fetched

    checks: list[DeletionCheck] = []
    alive: list[dict] = []
    fetched_at: list[int] = []
    started = time.monotonic()

    def line() -> str:
        done = len(checks)
        return (
            f"extract: verifying unseen customers: {done}/{len(uuids)} checked,"
            f" {time.monotonic() - started:.0f} s elapsed"
        )

    with (
        Heartbeat(log, options.progress_interval, line),
        ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="cm-verify") as pool,
        StagingWriter(engine, pass_id, VERIFY_PARTITION) as writer,
    ):
        for result, entry, fetched in pool.map(check, uuids):
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


def default_log() -> Log:
    """A stdlib logger for callers outside Dagster (benchmarks, scripts)."""
    import logging

    return logging.getLogger("cm_pipeline.extract")
