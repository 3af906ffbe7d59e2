"""The walk: every unfinished partition of a pass, a page at a time, the longest chains first.

`max_workers` fetcher threads share one client (one rate limiter) and ask the scheduler (schedule.py)
which partition's next page to fetch. A page is given its fetch order as it arrives and queued, in that
order, for the stager and the applier (load.py): staged and checkpointed, then applied to the publish
transaction while the walk goes on. On a first load, a status's first page decides whether it is split
over the data sources (plan.py). The first failure stops every thread; pages already fetched are staged.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import APIError
from cm_pipeline.extract.load import Applier, Stager
from cm_pipeline.extract.options import ExtractOptions
from cm_pipeline.extract.plan import Plan, parse_partition, sample_shares, split_sample, sub_partition
from cm_pipeline.extract.progress import Log, PartitionProgress, Progress
from cm_pipeline.extract.schedule import Part, Scheduler
from cm_pipeline.extract.sources import DataSourcesCall
from cm_pipeline.warehouse.passes import Pass, replace_partition
from cm_pipeline.warehouse.publish import Publisher
from cm_pipeline.warehouse.staging import FETCH_CLOCK, StagedPage, StagingWriter

# 4xx answers that say nothing about a saved cursor (the key, the account, the rate): never a restart.
NOT_A_CURSOR_PROBLEM = frozenset({401, 403, 429})
TICK = 0.05  # seconds between the main thread's looks at the walk
HOLD_SECONDS = 10.0  # a first load's statuses wait this long for GET /v1/data_sources, then walk on unsplit


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
    """One run's walk of a pass: fetchers, the stager and the applier, until every partition is done."""

    def __init__(
        self,
        client,
        engine: Engine,
        options: ExtractOptions,
        the_pass: Pass,
        progress: Progress,
        abandoned,
        *,
        plan: Plan,
        publisher: Publisher,
        sources: DataSourcesCall | None = None,
        first_load: bool = False,
    ):
        self.client, self.engine, self.options, self.abandoned = client, engine, options, abandoned
        self.the_pass, self.progress, self.plan, self.sources = the_pass, progress, plan, sources
        self.order_lock, self.decide_lock = threading.Lock(), threading.Lock()
        self.errors: list[BaseException] = []
        self.sample_pages: dict[str, list[dict]] = {}  # a first load's status -> its first page's entries
        self.data_sources_failed: str | None = None  # why, when a first load walks by status alone
        self.decided: set[str] = set()  # a first load's statuses whose split is decided
        limiter = getattr(client, "limiter", None)  # the client's RateLimiter: the scheduler paces by it
        self.sched = Scheduler(
            self._parts(first_load),
            max_workers=options.max_workers,
            per_page=options.per_page,
            sized=plan.sized or first_load,
            rate=getattr(limiter, "max_requests_per_second", None),
            interval=getattr(limiter, "interval", 0.0),
        )
        self.publisher = publisher
        self.applier = Applier(publisher)
        # A refresh stages its entries unmapped (most are unchanged: the publish maps the ones it writes),
        # unless every row is to be compared anyway; a first load maps them as they are staged.
        unmapped = not first_load and not publisher.compare_all
        self.stager = Stager(engine, the_pass.pass_id, progress, self.applier.staged, unmapped)

    def _parts(self, first_load: bool) -> list[Part]:
        parts = []
        rank = {name: i for i, name in enumerate(self.plan.partitions)}
        for name, cp in self.the_pass.checkpoints.items():
            i = rank.get(name, len(rank))
            progress = self.progress.parts[name]
            progress.resumed_pages, progress.resumed_customers = cp.pages, cp.customers
            if cp.done:
                progress.state = "done"
            spec = parse_partition(name)
            parts.append(
                Part(
                    spec,
                    i,
                    cursor=cp.cursor,
                    customers=cp.customers,
                    expected=self.plan.expected.get(name),
                    done=cp.done,
                    sample=first_load and spec.data_source_uuid is None and cp.pages == 0,
                )
            )
        return parts

    # -- the main thread ----------------------------------------------------------------------------

    def run(self, log: Log) -> None:
        """Walk every unfinished partition, stage and apply every page; fail fast."""
        fetchers = [
            threading.Thread(target=self._fetch_loop, name=f"cm-extract-fetch-{i}", daemon=True)
            for i in range(self.options.max_workers)
        ]
        for thread in (self.stager.thread, self.applier.thread, *fetchers):
            thread.start()
        if self.sources is not None and any(p.sample for p in self.sched.parts.values()):
            self.sources.when_done(self._guarded(self._decide_all))
        walked = False
        try:
            self._wait(fetchers, log)
            walked = not self.errors
        finally:
            self.sched.stop()
            for thread in fetchers:
                thread.join()
            self.stager.end()  # what was fetched is staged: a failed run's next one resumes after it
            self.stager.thread.join()
            self.applier.end(apply_rest=walked and self.stager.error is None)
            self.progress.log_problems(log)
        for error in (self.stager.error, self.applier.error, *self.errors):
            if error is not None:
                raise error
        if self.sources is not None and self.data_sources_failed is None:
            sources, why = self.sources.result(0)
            if sources is None and self.sources.done:  # failed, but no status needed the list
                self.data_sources_failed = why
                log.warning(f"extract: GET /v1/data_sources failed ({why}): walked by status alone")
        if self.progress.rejected_count or self.progress.problem_count:
            log.warning(
                f"extract: {self.progress.rejected_count} entries rejected (see cm_pipeline.extract_rejects), "
                f"{self.progress.problem_count} field values stored as NULL or cleaned (raw keeps them)"
            )

    def _wait(self, fetchers: list[threading.Thread], log: Log) -> None:
        last_line = started = time.monotonic()
        while any(t.is_alive() for t in fetchers):
            time.sleep(TICK)
            if self.errors or self.stager.error or self.applier.error:
                return
            if (
                self.sources is not None
                and not self.sources.done
                and time.monotonic() - started > HOLD_SECONDS
            ):
                self._guarded(self._decide_all)(f"no answer after {HOLD_SECONDS} s")
            if time.monotonic() - last_line >= self.options.progress_interval:
                last_line = time.monotonic()
                try:
                    check_not_abandoned(self.abandoned)
                except RunAbandoned:
                    self.sched.stop()
                    raise
                self.progress.log_problems(log)
                log.info(self.progress.line(self.client))

    # -- fetcher threads -----------------------------------------------------------------------------

    def _guarded(self, fn):
        def call(*args):
            try:
                fn(*args)
            except BaseException as exc:
                self.errors.append(exc)
                self.sched.stop()

        return call

    def _fetch_loop(self) -> None:
        while (part := self.sched.take()) is not None:
            try:
                started = time.monotonic()
                page = self._next_page(part)
                seconds = time.monotonic() - started
                entries = list(page.entries)
                if part.sample and page.has_more:
                    self.sample_pages[part.name] = entries
                with self.order_lock:  # fetch order = queue order = staging order = apply order
                    fetched = FETCH_CLOCK.reserve(len(entries))
                    self.stager.put(StagedPage(part.name, entries, page.cursor, page.has_more, fetched))
                # The cursor walk's suspended frame keeps the page it yielded until it yields the next one:
                # empty it, so that a partition waiting for its turn holds no page (memory stays flat).
                page.entries.clear()
                if not page.has_more:
                    part.pages.close()
            except BaseException as exc:
                self.errors.append(exc)
                with self.progress.lock:
                    self.progress.parts[part.name].state = "failed"
                self.sched.failed(part)
                return
            self.sched.returned(part, len(entries), page.has_more, seconds)
            with self.progress.lock:
                self.progress.parts[part.name].state = "done" if part.done else "running"
            if part.held and self.sources is not None and self.sources.done:
                self._guarded(self._decide)(part)
        with self.progress.lock:
            for name, p in self.progress.parts.items():
                if p.state == "running" and not self.sched.parts[name].done:
                    p.state = "stopped"

    def _next_page(self, part: Part):
        """The next page of `part`'s cursor walk; a refused saved cursor restarts the partition."""
        if part.pages is None:
            part.pages = self._cursor_walk(part)
        try:
            return next(part.pages)
        except APIError as exc:
            saved = part.cursor
            if saved is None or not refuses_saved_cursor(exc):
                raise
            self._restart(part, exc)
            part.pages = self._cursor_walk(part)
            return next(part.pages)

    def _cursor_walk(self, part: Part):
        spec, options = part.spec, self.options
        return self.client.list_customers(
            status=spec.status,
            data_source_uuid=spec.data_source_uuid or options.data_source_uuid,
            system=options.system,
            per_page=options.per_page,
            cursor=part.cursor,
        )

    def _restart(self, part: Part, exc: APIError) -> None:
        progress = self.progress.parts[part.name]
        note = (
            f"partition {part.name}: the saved cursor was refused (HTTP {exc.status}: {exc.message});"
            f" restarting the partition from its first page (its {progress.resumed_customers} staged"
            " customers are walked again)"
        )
        with StagingWriter(self.engine, self.the_pass.pass_id, part.name) as writer:
            writer.restart_partition()
        with self.progress.lock:
            self.progress.notes.append(note)
            progress.resumed_pages = progress.resumed_customers = 0
        part.cursor, part.customers = None, 0

    # -- a first load's split decisions --------------------------------------------------------------

    def _decide_all(self, why_not: str | None = None) -> None:
        for part in list(self.sched.parts.values()):
            if part.held:
                self._decide(part, why_not)

    def _decide(self, part: Part, why_not: str | None = None) -> None:
        """Split a held status over every data source, or walk it on as one cursor (the data sources call
        failed, or gave `why_not` no answer in time)."""
        sources, why = self.sources.result(0) if why_not is None else (None, why_not)
        with self.decide_lock:  # whoever claims the held partition decides it (not under the lock)
            if not part.held or part.name in self.decided:
                return
            self.decided.add(part.name)
            if sources is None and self.data_sources_failed is None:
                self.data_sources_failed = why
                with self.progress.lock:
                    self.progress.notes.append(
                        f"GET /v1/data_sources failed ({why}): walking by status alone"
                    )
        if split_sample(True, sources):
            self._split(part, sources)
        else:
            self.sched.release(part, done=False)

    def _split(self, part: Part, sources: list[str]) -> None:
        status = part.spec.status
        subs = [sub_partition(status, ds) for ds in sources]
        checkpoints = replace_partition(self.engine, self.the_pass.pass_id, part.name, subs)
        shares = sample_shares(self.sample_pages.pop(part.name, []), sources)
        added = []
        for i, name in enumerate(subs):
            cp = self.the_pass.checkpoints[name] = checkpoints[name]
            spec = parse_partition(name)
            order = 1000 * (part.order + 1) + i  # after every partition of the plan, in the list's order
            share = shares.get(spec.data_source_uuid, 0.0)
            added.append(
                Part(spec, order, cursor=cp.cursor, customers=cp.customers, share=share, done=cp.done)
            )
        with self.progress.lock:
            for name in subs:
                self.progress.parts.setdefault(name, PartitionProgress(name))
            self.progress.parts[part.name].state = "split"
            self.progress.split.append(status)
        self.sched.add(added)
        self.sched.release(part, done=True)
