"""One extraction run: hold the refresh lock, open (or resume) a pass, walk it, verify the customers it
did not see, publish. No Dagster here: the asset and the benchmark both call `run_extraction`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from cm_pipeline.extract.collector import fewer_collections
from cm_pipeline.extract.options import ALL_PARTITION, ExtractOptions
from cm_pipeline.extract.plan import (
    Plan,
    checked_plan,
    first_load_plan,
    parse_partition,
    plan_partitions,
    warehouse_sizes,
)
from cm_pipeline.extract.progress import Heartbeat, Log, PartitionProgress, Progress
from cm_pipeline.extract.sources import DataSourcesCall
from cm_pipeline.extract.verify import verify
from cm_pipeline.extract.walk import Walk, check_not_abandoned
from cm_pipeline.warehouse.customers import unseen_live_customers
from cm_pipeline.warehouse.locks import AdvisoryLock
from cm_pipeline.warehouse.passes import Pass, open_pass
from cm_pipeline.warehouse.publish import DeletionCheck, Publisher, PublishResult
from cm_pipeline.warehouse.schema import ensure_schema
from cm_pipeline.warehouse.staging import clear_staging


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
    plan: dict = field(default_factory=dict)  # how the plan was made, what was split, what failed


def run_extraction(
    client,
    engine: Engine,
    options: ExtractOptions,
    log: Log,
    *,
    holder: str | None = None,
    abandoned: Callable[[], str | None] | None = None,
) -> ExtractResult:
    """Hold the refresh lock, run (or resume) a pass, verify deletions, publish; return what happened.

    `holder` labels the lock (a second refresh names it); `abandoned()` says why the run this extraction
    belongs to is over (terminated, failed by run monitoring, its orchestrator gone), or None: checked
    between pages and before publishing, it stops the run with RunAbandoned and publishes nothing.
    """
    with AdvisoryLock(engine, holder=holder), fewer_collections():
        extraction = Extraction(client, engine, options, log, abandoned)
        try:
            extraction.open()
            extraction.walk()
            extraction.verify()
            return extraction.publish()
        finally:
            extraction.close()


class Extraction:
    """The phases of one run, in order: open (or resume) the pass, walk it, verify the unseen, publish.

    `run_extraction` runs them under the refresh lock; tests may call them one by one (same code). The
    publish transaction opens with the walk and commits in `publish`; `close` rolls it back if it is left.
    """

    def __init__(
        self, client, engine: Engine, options: ExtractOptions, log: Log, abandoned: Callable | None = None
    ):
        self.client, self.engine, self.options, self.log = client, engine, options, log
        self.abandoned = abandoned or (lambda: None)
        self.started = time.monotonic()
        self.requests_before = client.stats
        self.progress = Progress([])  # filled from the pass's checkpoints (its plan) when it opens
        self.plan: Plan | None = None
        self.sources: DataSourcesCall | None = None
        self.first_load = False
        self.the_pass: Pass | None = None
        self.publisher: Publisher | None = None
        self.plan_notes: dict = {}
        self.candidates: list[str] = []
        self.checks: list[DeletionCheck] = []

    def open(self) -> Pass:
        options = self.options
        if options.splits:  # asked first: it answers while the warehouse is prepared
            self.sources = DataSourcesCall(self.client, options.system)
        ensure_schema(self.engine)
        self.the_pass = the_pass = open_pass(
            self.engine,
            filters={**options.filters, "partitions": options.partitions},
            per_page=options.per_page,
            plan=self._fresh_plan if options.splits else options.partitions,
            full_refresh=options.full_refresh,
            resume_max_age=options.resume_max_age,
        )
        self.progress = Progress(list(the_pass.checkpoints))
        if the_pass.resumed or self.plan is None:
            self.plan = self._known_plan(the_pass)
            self.first_load = False
        how = (
            f"resumed ({the_pass.note})"
            if the_pass.resumed
            else "started" + (f" ({the_pass.note})" if the_pass.note else "")
        )
        filters = {k: v for k, v in options.filters.items() if v} or "none"
        self.log.info(
            f"extract: pass {the_pass.pass_id} {how}; plan: {self.plan.how}; partitions"
            f" {self.plan.describe()}; per_page {options.per_page}; filters {filters}"
        )
        return the_pass

    def _fresh_plan(self) -> list[str]:
        """A fresh pass's partitions: sized by the last publish, split over GET /v1/data_sources; on a
        first load, one per status (each one's first page decides its split as the walk goes)."""
        options = self.options
        sizes = warehouse_sizes(self.engine, options.system)
        if not sizes:
            self.first_load = True
            self.plan = first_load_plan(options.partitions)
            return self.plan.partitions
        sources, why = self.sources.result()
        if sources is None:
            self.plan_notes["data_sources_failed"] = why
            self.log.warning(f"extract: GET /v1/data_sources failed ({why}): walking by status alone")
        self.plan = plan_partitions(options.partitions, sizes, sources)
        return checked_plan(options.partitions, self.plan.partitions)

    def _known_plan(self, the_pass: Pass) -> Plan:
        """A resumed (or unsplit) pass's own plan, with the last publish's sizes to order it."""
        names = list(the_pass.checkpoints)
        sizes = warehouse_sizes(self.engine, self.options.system) if self.options.splits else {}
        expected = {}
        for name in names:
            spec = parse_partition(name)
            by_ds = sizes.get(spec.status or "", {})
            if name == ALL_PARTITION:
                expected[name] = sum(sum(v.values()) for v in sizes.values())
            else:
                expected[name] = (
                    by_ds.get(spec.data_source_uuid, 0) if spec.data_source_uuid else sum(by_ds.values())
                )
        split = sorted({parse_partition(n).status for n in names if parse_partition(n).data_source_uuid})
        how = "resumed: the pass's own plan" if the_pass.resumed else "by status (no split asked)"
        return Plan(names, expected, split, how)

    def walk(self) -> None:
        """Walk the pass; its pages are applied to the publish transaction as they are staged."""
        walk = Walk(
            self.client,
            self.engine,
            self.options,
            self.the_pass,
            self.progress,
            self.abandoned,
            plan=self.plan,
            publisher=self._publisher(),
            sources=self.sources if self.first_load else None,
            first_load=self.first_load,
        )
        try:
            walk.run(self.log)
        except BaseException:
            self.close()
            raise
        if walk.data_sources_failed is not None:
            self.plan_notes["data_sources_failed"] = walk.data_sources_failed
        self.log.info(self.progress.line(self.client).replace("extract:", "extract: pass complete:", 1))

    def _publisher(self) -> Publisher:
        """The publish transaction of this run's pass, opened on first use (walk, or publish alone)."""
        if self.publisher is None:
            self.publisher = Publisher(
                self.engine, self.the_pass.pass_id, compare_all=self.options.full_refresh
            )
        return self.publisher

    def close(self) -> None:
        """Roll back the publish transaction if it was not committed (a failed or abandoned run)."""
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None

    def verify(self) -> list[DeletionCheck]:
        options, log, the_pass = self.options, self.log, self.the_pass
        check_not_abandoned(self.abandoned)
        if not options.verify_deletions:
            return []
        limit = options.max_deletion_checks
        candidates = unseen_live_customers(self.engine, the_pass.pass_id, the_pass.filters, limit + 1)
        if len(candidates) > limit:
            log.warning(
                f"extract: more than {limit} published customers were not seen by this pass; verifying the"
                f" first {limit} only, the rest stay untouched until a later run (raise max_deletion_checks"
                " to verify more at once)"
            )
            candidates = candidates[:limit]
        self.candidates = candidates
        if candidates:
            log.info(f"extract: verifying {len(candidates)} customer(s) this pass did not see")
            self.checks = verify(self.client, self.engine, the_pass.pass_id, candidates, options, log)
        return self.checks

    def publish(self) -> ExtractResult:
        """The finishing step: apply what the deletion checks staged, mark deletions, commit."""
        the_pass, progress = self.the_pass, self.progress
        with progress.lock:
            staged = sum(p.customers + p.resumed_customers for p in progress.parts.values())
        staged += sum(1 for c in self.checks if c.outcome == "alive")
        check_not_abandoned(self.abandoned)
        started = time.monotonic()
        self.log.info(f"extract: publishing pass {the_pass.pass_id}: {staged} staged rows")
        with Heartbeat(
            self.log,
            self.options.progress_interval,
            lambda: f"extract: publishing: {staged} staged rows, {time.monotonic() - started:.0f} s elapsed",
        ):
            # opened here when this object did not walk the pass: then everything is applied now
            result = self._publisher().finish(self.checks)
            self.publisher = None
            clear_staging(self.engine, the_pass.pass_id)
        with progress.lock:  # the problems of the entries the publish mapped (a refresh's)
            progress.count_problems([], result.problems, result.field_problems)
        progress.log_problems(self.log)
        outcome = self._result(result)
        self.log.info(
            f"extract: published pass {outcome.pass_id} in {outcome.duration_seconds:.1f} s"
            f" ({time.monotonic() - started:.2f} s after the walk's last page): {result.inserted}"
            f" inserted, {result.updated} updated, {result.unchanged} unchanged, {result.deleted} deleted,"
            f" {result.undeleted} undeleted; {result.live_count} live of {result.row_count} rows"
            + (
                f"; {result.kept_newer} kept as a push wrote them after their page was fetched"
                if result.kept_newer
                else ""
            )
        )
        if result.rejected:
            self.log.warning(
                f"extract: {result.rejected} staged entries were not valid JSON for Postgres and were left"
                " out of the publish (see cm_pipeline.extract_rejects)"
            )
        return outcome

    def _result(self, result: PublishResult) -> ExtractResult:
        progress, checks = self.progress, self.checks
        after, before = self.client.stats, self.requests_before
        pages, customers = progress.totals()
        return ExtractResult(
            pass_id=self.the_pass.pass_id,
            resumed=self.the_pass.resumed,
            note=self.the_pass.note,
            pages=pages,
            customers_fetched=customers,
            rejected=progress.rejected_count + result.rejected,
            field_problems=progress.problem_count,
            status_mismatches=sum(p.status_mismatches for p in progress.parts.values()),
            deletion_candidates=len(self.candidates),
            verified_alive=sum(1 for c in checks if c.outcome == "alive"),
            verification_errors=sum(1 for c in checks if c.outcome == "error"),
            publish=result,
            duration_seconds=time.monotonic() - self.started,
            partitions=progress.parts,
            plan=self._plan_metadata(),
            requests={k: after[k] - before[k] for k in ("requests", "retries", "rate_limited")},
        )

    def _plan_metadata(self) -> dict:
        plan, progress = self.plan, self.progress
        with progress.lock:
            split = sorted({*(plan.split if plan else []), *progress.split})
        return {"how": plan.how if plan else "", "split_by_data_source": split, **self.plan_notes}
