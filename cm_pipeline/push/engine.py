"""The one engine every push kind runs on: plan each row once, then apply the rest on a thread pool.

`push_rows` holds the kind's advisory lock for the whole push, so two pushes of one kind never
interleave and the warehouse state the plan compares with cannot go stale before the calls. Under it:
parse every snapshot row once (`kind.parse`), read what the warehouse knows (`kind.known`), decide
each item (`kind.decide`, pure), log the settled ones, then `kind.apply` each item left, `max_workers`
at a time. Every API call of the apply step goes through `RowRun.call` (or `RowRun.write`, which a dry
run logs instead of sending), and every outcome through `RowRun.log`: the one place calls are made,
classified and recorded.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.errors import (
    AuthenticationError,
    ChartMogulError,
    ForbiddenError,
    NotFoundError,
    TransportError,
    is_retriable,
)
from cm_pipeline.push.decide import Decision, Settled
from cm_pipeline.push.push_log import LogEntry, record
from cm_pipeline.warehouse.staging import FETCH_CLOCK


@dataclass(frozen=True)
class PushKind:
    """One push kind: its name (module, push_log.kind, job, ops, relation) and the four steps that
    differ between kinds. `apply(item, row, known)` makes the item's calls through `row`."""

    name: str
    required_columns: tuple[str, ...]
    parse: Callable[[list[dict]], tuple[list[Any], list[Settled]]]
    known: Callable[[Engine, list[Any]], Any]
    decide: Callable[[Any, Any], Decision]
    apply: Callable[[Any, RowRun, Any], None]

    @property
    def relation(self) -> str:
        """The dbt outbound model it reads by default."""
        return f"reverse_etl.chartmogul_{self.name}"

    @property
    def job_name(self) -> str:
        return f"push_{self.name}_job"


@dataclass
class StepSummary:
    """What one push did: outcome counts, the items the plan left to apply, and the calls made."""

    counts: Counter = field(default_factory=Counter)
    planned: int = 0
    calls: int = 0

    def as_dict(self) -> dict:
        out = {
            k: int(self.counts.get(k, 0)) for k in ("applied", "unchanged", "rejected", "failed", "dry_run")
        }
        return {**out, "planned": self.planned, "calls": self.calls}


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


class LogSink:
    """Writes push_log rows as soon as they are known (thread-safe) and counts outcomes."""

    def __init__(self, engine: Engine, run_id: str):
        self.engine, self.run_id = engine, run_id
        self.counts: Counter = Counter()
        self._lock = threading.Lock()

    def write(self, entries: Iterable[LogEntry]) -> None:
        entries = list(entries)
        record(self.engine, self.run_id, entries)
        with self._lock:
            self.counts.update(e.outcome for e in entries)


class RowDone(Exception):
    """Raised by RowRun.stop once the row's final outcome is logged: nothing more is done for it."""


class RowRun:
    """One item's apply: its calls, and the push_log entries they lead to."""

    def __init__(self, engine: Engine, client, sink: LogSink, kind: str, dry_run: bool, item: Any):
        self.engine, self.client, self.dry_run = engine, client, dry_run
        self._sink, self._kind, self._item = sink, kind, item
        self.started = datetime.now(timezone.utc)
        self.answered_ns: int | None = None  # when the last answer arrived (FETCH_CLOCK): latest wins

    def log(self, outcome: str, **kw: Any) -> None:
        """Record one outcome of this item now; the next entry's clock starts here."""
        item = self._item
        entry = LogEntry(self._kind, item.target, outcome, item.fingerprint, started_at=self.started, **kw)
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
    ) -> tuple[Any, int | None]:
        """(answer, the HTTP status it came with) of one client call made in this thread. On an error
        the item is recorded and stopped: rejected when the client refused the call before sending or
        the API refused the values (404: `not_found` names what), failed when it may pass next run.
        `what` prefixes the error, e.g. "PATCH" -> "PATCH failed: ..."."""
        try:
            answer = fn(*args)
            self.answered_ns = FETCH_CLOCK.reserve(1)
            return answer, self.client.last_status
        except ValueError as err:  # refused by the client before sending
            self.stop("rejected", payload=payload, error=str(err))
        except ChartMogulError as err:
            if not_found is not None and isinstance(err, NotFoundError):
                self.stop("rejected", payload=payload, http_status=err.status, error=f"{not_found}: {err}")
            error = f"{what} failed: {err}" if what else str(err)
            self.stop(classify(err), payload=payload, http_status=err.status, error=error)

    def write(self, fn: Callable, *args: Any, what: str | None = None, payload: Any = None):
        """`call` for a call that writes; in a dry run it is logged 'dry_run' with `payload` instead and
        None is returned."""
        if self.dry_run:
            self.log("dry_run", payload=payload)
            return None
        return self.call(fn, *args, what=what, payload=payload)


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
    """Run `work(item)` for every item on a thread pool; the first exception cancels what has not started."""
    pool = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="push")
    try:
        for future in [pool.submit(work, item) for item in items]:
            future.result()
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
    """Plan every row and apply what is left, under the kind's lock; what was done, with the calls made."""
    sink = LogSink(engine, run_id)
    before = client.stats["requests"]
    with push_lock(engine, kind.name):
        to_apply, settled, known = plan(engine, kind, rows)
        sink.write(settled)

        def apply_one(item: Any) -> None:
            row = RowRun(engine, client, sink, kind.name, dry_run, item)
            try:
                kind.apply(item, row, known)
            except RowDone:
                pass
            except FatalPushError:
                raise
            except Exception as exc:  # one bad row never sinks the others: record it and go on
                row.log("failed", error=f"{type(exc).__name__}: {exc}")

        run_pool(apply_one, to_apply, max_workers)
    return StepSummary(counts=sink.counts, planned=len(to_apply), calls=client.stats["requests"] - before)
