"""The one engine every push kind runs on: plan each row once, then apply the rest on a thread pool.

`push_rows` holds the kind's advisory lock for the whole push, so two pushes of one kind never
interleave and the warehouse state the plan compares with cannot go stale before the calls. Under it:
settle the writes earlier runs left 'pending' (pending.py), parse every snapshot row once
(`kind.parse`), read what the warehouse knows (`kind.known`), decide each item (`kind.decide`, pure),
log the settled ones, then `kind.apply` each item left, `max_workers` at a time. Every API call of
the apply step goes through `RowRun.call` (or `RowRun.write`, which a dry run logs instead of
sending), and every outcome through `RowRun.log`: the one place calls are made, classified and
recorded. A write is logged 'pending' before it is sent and given its outcome after (failures.py).

The client is armed to fail fast (`client.fail_fast`): once the API is clearly unreachable, or on the
first 401/403, the run stops with one FatalPushError; the rows not reached are left as they were.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import ChartMogulError, NotFoundError
from cm_pipeline.push.decide import Decision, Settled
from cm_pipeline.push.failures import FatalPushError, classify, fatal_reason, outcome_unknown
from cm_pipeline.push.pending import resolve_pending
from cm_pipeline.push.push_log import LogEntry, close_intent, open_intent, record, withdraw_intent
from cm_pipeline.warehouse.staging import FETCH_CLOCK

# Fail fast: this many attempts in a row without an answer, over at least this long, stop the run.
UNREACHABLE_AFTER_FAILURES = 8
UNREACHABLE_AFTER_SECONDS = 10.0

# A change shown by a dry run: (field, before, after).
Change = tuple[str, Any, Any]


@dataclass(frozen=True)
class PushKind:
    """One push kind: its name (module, push_log.kind, job, ops, relation) and the steps that differ
    between kinds. `apply(item, row, known)` makes the item's calls through `row`; `resolve(client,
    intent)` reads whether a write an earlier run left 'pending' landed (pending.py)."""

    name: str
    required_columns: tuple[str, ...]
    parse: Callable[[list[dict]], tuple[list[Any], list[Settled]]]
    known: Callable[[Engine, list[Any]], Any]
    decide: Callable[[Any, Any], Decision]
    apply: Callable[[Any, RowRun, Any], None]
    resolve: Callable[[Any, dict], tuple[bool, list[dict]]]

    @property
    def relation(self) -> str:
        """The dbt outbound model it reads by default."""
        return f"reverse_etl.chartmogul_{self.name}"

    @property
    def job_name(self) -> str:
        return f"push_{self.name}_job"


@dataclass
class StepSummary:
    """What one push did: outcome counts, the items the plan left to apply, the calls made, how long it
    took, and (dry run) the changes it would have made, per item in plan order."""

    counts: Counter = field(default_factory=Counter)
    planned: int = 0
    calls: int = 0
    seconds: float = 0.0
    resolved: Counter = field(default_factory=Counter)
    previews: list[tuple[int, str, list[Change]]] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {
            k: int(self.counts.get(k, 0))
            for k in ("applied", "unchanged", "rejected", "failed", "dry_run", "pending")
        }
        return {**out, "planned": self.planned, "calls": self.calls}


class LogSink:
    """Writes push_log rows as soon as they are known (thread-safe) and counts outcomes."""

    def __init__(self, engine: Engine, run_id: str):
        self.engine, self.run_id = engine, run_id
        self.counts: Counter = Counter()
        self.previews: list[tuple[int, str, list[Change]]] = []
        self._lock = threading.Lock()

    def _count(self, outcomes: Iterable[str]) -> None:
        with self._lock:
            self.counts.update(outcomes)

    def write(self, entries: Iterable[LogEntry]) -> None:
        entries = list(entries)
        record(self.engine, self.run_id, entries)
        self._count(e.outcome for e in entries)

    def open(self, entry: LogEntry) -> int:
        """Log a write's intent ('pending') before it is sent; its push_log id."""
        return open_intent(self.engine, self.run_id, entry)

    def close(self, log_id: int, outcome: str, **kw: Any) -> None:
        """Give a write its outcome ('pending' when it stays unknown)."""
        close_intent(self.engine, log_id, outcome, **kw)
        self._count([outcome])

    def withdraw(self, log_id: int) -> None:
        """Remove the intent of a write that was never sent."""
        withdraw_intent(self.engine, log_id)

    def preview(self, index: int, target: str, changes: list[Change]) -> None:
        with self._lock:
            self.previews.append((index, target, changes))


class RowDone(Exception):
    """Raised by RowRun.stop once the row's final outcome is logged: nothing more is done for it."""


class RowRun:
    """One item's apply: its calls, and the push_log entries they lead to."""

    def __init__(
        self, engine: Engine, client, sink: LogSink, kind: str, dry_run: bool, item: Any, index: int = 0
    ):
        self.engine, self.client, self.dry_run = engine, client, dry_run
        self._sink, self._kind, self._item, self._index = sink, kind, item, index
        self._open: int | None = None  # the push_log id of the write sent and not yet given its outcome
        self.started = datetime.now(timezone.utc)
        self.answered_ns: int | None = None  # when the last answer arrived (FETCH_CLOCK): latest wins

    def log(self, outcome: str, **kw: Any) -> None:
        """Record one outcome of this item now (the outcome of the write just sent, if one is open);
        the next entry's clock starts here."""
        if self._open is not None:
            log_id, self._open = self._open, None
            self._sink.close(log_id, outcome, http_status=kw.get("http_status"), error=kw.get("error"))
        else:
            item = self._item
            entry = LogEntry(
                self._kind, item.target, outcome, item.fingerprint, started_at=self.started, **kw
            )
            self._sink.write([entry])
        self.started = datetime.now(timezone.utc)

    def stop(self, outcome: str, **kw: Any) -> NoReturn:
        """Record the item's final outcome and end its apply."""
        self.log(outcome, **kw)
        raise RowDone

    def call(
        self,
        fn: Callable,
        *args: Any,
        what: str | None = None,
        payload: Any = None,
        not_found: str | None = None,
        refused: Callable[[ChartMogulError], bool] | None = None,
    ) -> tuple[Any, int | None]:
        """(answer, the HTTP status it came with) of one client call made in this thread. On an error
        the item is recorded and stopped: rejected when the client refused the call before sending or
        the API refused the values (404: `not_found` names what), failed when it may pass next run.
        `what` prefixes the error, e.g. "PATCH" -> "PATCH failed: ...". An error `refused(err)` accepts
        is recorded 'failed' and raised for the caller to handle."""
        try:
            answer = fn(*args)
            self.answered_ns = FETCH_CLOCK.reserve(1)
            return answer, self.client.last_status
        except ValueError as err:  # refused by the client before sending
            self.stop("rejected", payload=payload, error=str(err))
        except ChartMogulError as err:
            self._call_failed(err, what, payload, not_found, refused)

    def _call_failed(self, err, what, payload, not_found, refused) -> NoReturn:
        error = f"{what} failed: {err}" if what else str(err)
        if self._open is not None and fatal_reason(err) is None and outcome_unknown(err):
            self.stop(
                "pending",
                http_status=err.status,
                error=f"{error}; its answer was lost: the next run reads whether it landed",
            )
        try:
            outcome = classify(err)
        except FatalPushError:
            self._abandon(err)
            raise
        if refused is not None and refused(err):
            self.log("failed", payload=payload, http_status=err.status, error=error)
            raise err
        if not_found is not None and isinstance(err, NotFoundError):
            self.stop("rejected", payload=payload, http_status=err.status, error=f"{not_found}: {err}")
        self.stop(outcome, payload=payload, http_status=err.status, error=error)

    def _abandon(self, err: ChartMogulError) -> None:
        """The run stops: an open write that was never sent is withdrawn, one that may have landed stays
        'pending' for the next run to resolve."""
        if self._open is None:
            return
        log_id, self._open = self._open, None
        if outcome_unknown(err):
            self._sink.close(log_id, "pending", http_status=err.status, error=f"{err}; the run stopped")
        else:
            self._sink.withdraw(log_id)

    def write(
        self, fn: Callable, *args: Any, what: str | None = None, payload: Any = None,
        preview: list[Change] | None = None, refused: Callable[[ChartMogulError], bool] | None = None,
    ):  # fmt: skip
        """`call` for a call that writes, its intent logged 'pending' first; in a dry run it is logged
        'dry_run' with `payload` instead (and `preview`, its changes field by field, kept for the
        run's summary) and None is returned."""
        if self.dry_run:
            self.log("dry_run", payload=payload)
            if preview:
                self._sink.preview(self._index, self._item.target, list(preview))
            return None
        item = self._item
        entry = LogEntry(
            self._kind, item.target, "pending", item.fingerprint, payload, started_at=self.started
        )
        self._open = self._sink.open(entry)
        return self.call(fn, *args, what=what, payload=payload, refused=refused)


@contextlib.contextmanager
def push_lock(engine: Engine, kind: str):
    """Hold a Postgres advisory lock for `kind`: two pushes of the same kind never interleave."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": f"cm_pipeline.push:{kind}"})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(
                sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": f"cm_pipeline.push:{kind}"}
            )
            conn.commit()


def run_pool(work: Callable, items: list, max_workers: int) -> None:
    """Run `work(item)` for every item on a thread pool; the first exception cancels what has not
    started, waits for what is running, and is raised."""
    pool = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="push")
    try:
        futures = [pool.submit(work, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future in done and future.exception() is not None:
                raise future.exception()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _entry(kind: str, settled: Settled) -> LogEntry:
    d = settled.decision
    return LogEntry(
        kind,
        settled.target,
        d.outcome,
        settled.fingerprint,
        d.payload,
        http_status=d.http_status,
        error=d.error,
    )


def plan(engine: Engine, kind: PushKind, rows: list[dict]) -> tuple[list[Any], list[LogEntry], Any]:
    """(items to apply, entries for the rows settled without a call, what the warehouse knows)."""
    items, settled = kind.parse(rows)
    known = kind.known(engine, items)
    to_apply = []
    for item in items:
        decision = kind.decide(item, known)
        if decision.outcome == "apply":
            to_apply.append(item)
        else:
            settled.append(Settled(item.target, item.fingerprint, decision))
    entries = [_entry(kind.name, s) for s in settled]
    return to_apply, entries, known


def push_rows(
    engine: Engine, client, run_id: str, kind: PushKind, rows: list[dict], *, dry_run: bool, max_workers: int
) -> StepSummary:
    """Settle earlier pending writes, plan every row and apply what is left, under the kind's lock; what
    was done, with the calls made. FatalPushError (naming the rows not reached) stops the run."""
    if not client.reachability.armed:  # a caller may have armed it with limits of its own
        client.fail_fast(UNREACHABLE_AFTER_FAILURES, UNREACHABLE_AFTER_SECONDS)
    sink = LogSink(engine, run_id)
    before, t0 = client.stats["requests"], time.monotonic()
    done, done_lock = Counter(), threading.Lock()
    with push_lock(engine, kind.name):
        resolved = Counter() if dry_run else resolve_pending(engine, client, run_id, kind)
        to_apply, settled, known = plan(engine, kind, rows)
        sink.write(settled)

        stopping = threading.Event()  # set by the first fatal error: rows not started are not started

        def apply_one(indexed: tuple[int, Any]) -> None:
            index, item = indexed
            if stopping.is_set():
                return
            row = RowRun(engine, client, sink, kind.name, dry_run, item, index)
            try:
                kind.apply(item, row, known)
            except RowDone:
                pass
            except FatalPushError:
                stopping.set()
                raise
            except Exception as exc:  # one bad row never sinks the others: record it and go on
                row.log("failed", error=f"{type(exc).__name__}: {exc}")
            with done_lock:
                done["rows"] += 1

        try:
            run_pool(apply_one, list(enumerate(to_apply)), max_workers)
        except FatalPushError as err:
            left = len(to_apply) - done["rows"]
            raise FatalPushError(
                f"push {kind.name} stopped: {err}. {done['rows']} of the {len(to_apply)} row(s) to send were "
                f"done first (see push_log for run {run_id}); the {left} not reached are untouched and go "
                "out with the next run"
            ) from None
    return StepSummary(
        counts=sink.counts,
        planned=len(to_apply),
        calls=client.stats["requests"] - before,
        seconds=time.monotonic() - t0,
        resolved=resolved,
        previews=sorted(sink.previews, key=lambda p: p[0]),
    )
