"""Staging, checkpoints and the one-transaction publish of chartmogul.customers.

- Passes: a pass is one full walk of the customer list. Its partitions (one per status filter, or per
  status and data source for a split status; see partitions.py) each keep a checkpoint row (next cursor,
  pages, customers, done): the rows are the pass's plan, so a resumed pass keeps it. A new run resumes an unfinished pass with the same
  filters instead of starting over, unless it is older than the resume window or a full refresh is asked.
- Staging: each page is one COPY into chartmogul._customers_staging, committed in the SAME transaction as
  its partition's checkpoint, so a checkpoint is never ahead of or behind its data.
- Fetch order: every staged row carries the moment its HTTP response arrived (`FETCH_CLOCK`), not the
  moment its page was written: with many workers a page fetched earlier may be written later.
- Publish: one transaction dedupes staging by uuid (latest fetch wins), upserts only rows whose data
  differ, marks verified deletions, logs the deletion checks and the publish, and closes the pass.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from hashlib import md5
from typing import Any

import psycopg2
from sqlalchemy.engine import Engine

from cm_pipeline.extract.plan import base_partition
from cm_pipeline.warehouse.locks import raw_connection
from cm_pipeline.warehouse.mapping import (
    MAPPING_VERSION,
    TYPED_COLUMNS,
    FieldProblem,
    RowRejected,
    copy_field,
    mapped_columns_sql,
    prepare_entry,
)
from cm_pipeline.warehouse.schema import (
    CHECKPOINTS_TABLE,
    CUSTOMER_DATA_COLUMNS,
    CUSTOMERS_TABLE,
    DELETION_CHECKS_TABLE,
    HASHES_TABLE,
    OLD_STAGING_SEQUENCE,
    PASSES_TABLE,
    PUBLISH_LOG_TABLE,
    REJECTS_TABLE,
    STAGING_COLUMN_NAMES,
    STAGING_LAYOUT,
    STAGING_TABLE,
    customers_ddl,
    extraction_ddl,
)

VERIFY_PARTITION = "_verified"  # staging rows fetched by GET /customers/{uuid} during deletion checks


class FetchClock:
    """Process-wide fetch order: strictly increasing integers close to wall-clock nanoseconds.

    Take `reserve(n)` right after a response arrives: its n entries get n consecutive values, unique in
    the process. Wall-clock based, so a later process (a resumed pass) orders its fetches after an earlier
    one's; `advance_past` (fed the largest value already staged) keeps that true even if the clock stepped
    back between the two.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def reserve(self, n: int = 1) -> int:
        """The first of `n` (>= 1) consecutive, never-used fetch-order values."""
        with self._lock:
            first = max(time.time_ns(), self._last + 1)
            self._last = first + max(n, 1) - 1
            return first

    def advance_past(self, value: int | None) -> None:
        """Make every later value larger than `value` (e.g. the largest fetch_seq already staged)."""
        if value is None:
            return
        with self._lock:
            self._last = max(self._last, int(value))


FETCH_CLOCK = FetchClock()


def ensure_tables(engine: Engine) -> str | None:
    """Create the customers table and the extraction bookkeeping tables if they are missing.

    A staging table of an older layout is dropped and recreated, abandoning the running pass (staging
    only ever holds an unfinished pass; a fresh one follows): returns a note saying so, else None.
    """
    note = None
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            # Serialise concurrent DDL (CREATE ... IF NOT EXISTS is not race-free).
            cur.execute("SELECT pg_advisory_xact_lock(17229, 2)")
            schema, table = STAGING_TABLE.split(".")
            cur.execute(
                "SELECT array_agg(array[column_name::text, udt_name::text] ORDER BY ordinal_position)"
                " FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (schema, table),
            )
            existing = cur.fetchone()[0]
            if existing and [tuple(c) for c in existing] != list(STAGING_LAYOUT):
                # Staging from an older layout: it only ever holds an unfinished pass, which restarts.
                cur.execute(f"DROP TABLE {STAGING_TABLE}")
                cur.execute(f"SELECT to_regclass('{PASSES_TABLE}') IS NOT NULL")
                abandoned = []
                if cur.fetchone()[0]:
                    cur.execute(
                        f"UPDATE {PASSES_TABLE} SET state = 'abandoned', finished_at = now(),"
                        " note = 'staging layout changed' WHERE state = 'running' RETURNING pass_id"
                    )
                    abandoned = sorted(r[0] for r in cur.fetchall())
                note = "staging table had an older layout: recreated" + (
                    f"; abandoned running pass {', '.join(map(str, abandoned))} (a fresh pass follows)"
                    if abandoned
                    else ""
                )
            for statement in [*customers_ddl(), *extraction_ddl()]:
                cur.execute(statement)
            # fetch_seq used to default to a sequence at write time; it is now staged by the COPY.
            cur.execute(
                "SELECT column_default FROM information_schema.columns WHERE table_schema = %s"
                " AND table_name = %s AND column_name = 'fetch_seq'",
                (schema, table),
            )
            if cur.fetchone()[0] is not None:
                cur.execute(f"ALTER TABLE {STAGING_TABLE} ALTER COLUMN fetch_seq DROP DEFAULT")
            cur.execute(f"DROP SEQUENCE IF EXISTS {OLD_STAGING_SEQUENCE}")
            for name in (CHECKPOINTS_TABLE, STAGING_TABLE):  # tables created before they were unlogged
                cur.execute("SELECT relpersistence FROM pg_class WHERE oid = %s::regclass", (name,))
                if cur.fetchone()[0] == "p":
                    cur.execute(f"ALTER TABLE {name} SET UNLOGGED")
        conn.commit()
    finally:
        conn.close()
    return note


# ---- passes and checkpoints ----------------------------------------------------------------------


@dataclass
class Checkpoint:
    partition: str
    cursor: str | None = None
    pages: int = 0
    customers: int = 0
    done: bool = False


@dataclass
class Pass:
    pass_id: int
    filters: dict
    per_page: int
    resumed: bool
    checkpoints: dict[str, Checkpoint]
    note: str = ""


def open_pass(
    engine: Engine,
    *,
    filters: dict,
    partitions: Sequence[str],
    per_page: int,
    full_refresh: bool = False,
    resume_max_age: timedelta = timedelta(hours=24),
    plan: Sequence[str] | Callable[[], Sequence[str]] | None = None,
) -> Pass:
    """Resume the unfinished pass with the same filters, or start a fresh one (truncating staging).

    `partitions` are the status partitions (part of the filters); `plan` the checkpoint rows of a fresh
    pass (sub-partitions of split statuses; default `partitions`), or a function computing them, called
    only when a fresh pass starts. A resumed pass keeps its own plan. The caller must hold the refresh lock.
    """

    def checked(chosen: Sequence[str]) -> list[str]:
        chosen = list(chosen)
        if {base_partition(p) for p in chosen} != set(partitions):
            raise ValueError(f"plan: {chosen!r} does not cover exactly the partitions {list(partitions)!r}")
        return chosen

    plan_of_fresh_pass = plan if callable(plan) else None
    if plan_of_fresh_pass is None:
        plan = checked(partitions if plan is None else plan)
    filters = {**filters, "partitions": list(partitions)}
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT pass_id, filters, per_page, now() - started_at FROM {PASSES_TABLE}"
                " WHERE state = 'running' ORDER BY pass_id DESC"
            )
            running = cur.fetchall()
            resume_id, reason = None, ""
            for pass_id, old_filters, old_per_page, age in running:
                if full_refresh:
                    why = f"full refresh asked: pass {pass_id} discarded"
                elif resume_id is not None:
                    why = f"superseded by pass {resume_id}"
                elif old_filters != filters or old_per_page != per_page:
                    why = f"pass {pass_id} had other filters or per_page; started a fresh pass"
                elif age > resume_max_age:
                    why = f"pass {pass_id} is older than the resume window ({resume_max_age}); started a fresh pass"
                else:
                    resume_id = pass_id
                    continue
                reason = reason or why
                cur.execute(
                    f"UPDATE {PASSES_TABLE} SET state = 'abandoned', finished_at = now(), note = %s"
                    " WHERE pass_id = %s",
                    (why, pass_id),
                )
            if resume_id is not None:
                cur.execute(
                    f"SELECT partition, cursor, pages, customers, done FROM {CHECKPOINTS_TABLE}"
                    " WHERE pass_id = %s",
                    (resume_id,),
                )
                checkpoints = {row[0]: Checkpoint(*row) for row in cur.fetchall()}
                if {base_partition(p) for p in checkpoints} == set(partitions):
                    cur.execute(f"UPDATE {PASSES_TABLE} SET runs = runs + 1 WHERE pass_id = %s", (resume_id,))
                    # This run's fetches must order after the ones already staged, whatever the clock did.
                    cur.execute(
                        f"SELECT max(fetch_seq) FROM {STAGING_TABLE} WHERE pass_id = %s", (resume_id,)
                    )
                    FETCH_CLOCK.advance_past(cur.fetchone()[0])
                    conn.commit()
                    return Pass(resume_id, filters, per_page, True, checkpoints, f"resumed pass {resume_id}")
                reason = (
                    f"pass {resume_id} lost its checkpoints (a database crash empties the unlogged staging and"
                    " checkpoint tables together); started a fresh pass"
                )
                cur.execute(
                    f"UPDATE {PASSES_TABLE} SET state = 'abandoned', finished_at = now(), note = %s WHERE pass_id = %s",
                    (reason, resume_id),
                )
            if plan_of_fresh_pass is not None:
                plan = checked(plan_of_fresh_pass())
            cur.execute(f"TRUNCATE {STAGING_TABLE}")
            cur.execute(
                f"DELETE FROM {REJECTS_TABLE} WHERE pass_id NOT IN (SELECT pass_id FROM {PASSES_TABLE} WHERE state = 'published')"
            )
            cur.execute(
                f"INSERT INTO {PASSES_TABLE} (filters, per_page, state) VALUES (%s, %s, 'running') RETURNING pass_id",
                (json.dumps(filters), per_page),
            )
            pass_id = cur.fetchone()[0]
            cur.executemany(
                f"INSERT INTO {CHECKPOINTS_TABLE} (pass_id, partition) VALUES (%s, %s)",
                [(pass_id, p) for p in plan],
            )
        conn.commit()
    finally:
        conn.close()
    return Pass(pass_id, filters, per_page, False, {p: Checkpoint(p) for p in plan}, reason)


def add_partition(engine: Engine, pass_id: int, partition: str) -> Checkpoint:
    """Add a partition to a running pass's plan (idempotent: an existing checkpoint is returned as is)."""
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {CHECKPOINTS_TABLE} (pass_id, partition) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (pass_id, partition),
            )
            cur.execute(
                f"SELECT partition, cursor, pages, customers, done FROM {CHECKPOINTS_TABLE}"
                " WHERE pass_id = %s AND partition = %s",
                (pass_id, partition),
            )
            checkpoint = Checkpoint(*cur.fetchone())
        conn.commit()
    finally:
        conn.close()
    return checkpoint


def staged_customers(engine: Engine, pass_id: int, partitions: Sequence[str]) -> int:
    """Distinct customers the pass staged in these partitions."""
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT count(DISTINCT uuid) FROM {STAGING_TABLE} WHERE pass_id = %s AND partition = ANY(%s)",
                (pass_id, list(partitions)),
            )
            return cur.fetchone()[0]
    finally:
        conn.close()


# ---- staging writer -------------------------------------------------------------------------------


@dataclass
class PageOutcome:
    """What one page's load did: rows staged, entries rejected, field problems met."""

    staged: int = 0
    rejected: list[str] = field(default_factory=list)
    problems: list[FieldProblem] = field(default_factory=list)


_STAGING_COPY = f"COPY {STAGING_TABLE} ({', '.join(STAGING_COLUMN_NAMES)}) FROM STDIN"


class StagingWriter:
    """Loads pages into staging over its own connection: one COPY + checkpoint update per transaction."""

    def __init__(self, engine: Engine, pass_id: int, partition: str):
        self.pass_id = pass_id
        self.partition = partition
        self._conn = raw_connection(engine)
        with self._conn.cursor() as cur:
            # Staging and checkpoints are unlogged: a crash empties them whatever the commit mode, so
            # waiting for a WAL flush at every page's commit would buy nothing.
            cur.execute("SET synchronous_commit = off")
        self._conn.commit()
        # The partition name comes from the warehouse (split partitions carry data source uuids): escaped.
        self._prefix = f"\t{pass_id}\t{copy_field(partition)}\t"

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> StagingWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _prepare(
        self, entries: Sequence[Any], fetched: int | Sequence[int] | None
    ) -> tuple[PageOutcome, list[tuple[str, str, Any]], bytes]:
        """COPY lines for the page and their UTF-8 payload (lone surrogates found here, page by page).

        `fetched`: the fetch order of the first entry (the rest follow it), one per entry, or None to
        take it now (only for callers that write what they just fetched).
        """
        if fetched is None:
            fetched = FETCH_CLOCK.reserve(len(entries))
        if isinstance(fetched, int):
            orders: Sequence[int] = range(fetched, fetched + len(entries))
        else:
            orders = fetched
            if len(orders) != len(entries):
                raise ValueError(f"fetched: {len(orders)} fetch orders for {len(entries)} entries")
        outcome = PageOutcome()
        lines = self._encode(entries, orders, outcome, thorough=False)
        try:
            payload = "".join([line for uuid, line, _ in lines if uuid is not None]).encode("utf-8")
        except UnicodeEncodeError:
            outcome = PageOutcome()
            lines = self._encode(entries, orders, outcome, thorough=True)
            payload = "".join([line for uuid, line, _ in lines if uuid is not None]).encode("utf-8")
        return outcome, lines, payload

    def _encode(
        self, entries: Iterable[Any], orders: Sequence[int], outcome: PageOutcome, thorough: bool
    ) -> list[tuple[str, str, Any]]:
        lines = []
        prefix = self._prefix
        for entry, order in zip(entries, orders, strict=True):
            try:
                prepared = prepare_entry(entry, thorough=thorough)
            except RowRejected as exc:
                outcome.rejected.append(str(exc))
                lines.append((None, str(exc), entry))
                continue
            except Exception as exc:  # one unmappable entry must not sink the page
                uuid = entry.get("uuid") if isinstance(entry, dict) else None
                message = f"customer {uuid}: could not be mapped ({type(exc).__name__}: {exc})"
                outcome.rejected.append(message)
                lines.append((None, message, entry))
                continue
            if prepared.problems:
                outcome.problems.extend(prepared.problems)
            typed = "\t".join([copy_field(v) for v in prepared.typed])
            # md5 of the text as staged (a lone surrogate, found when the page is encoded, makes the page
            # prepared again thoroughly: surrogatepass only keeps this line from failing first).
            digest = md5(prepared.raw.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()
            raw = prepared.raw.replace("\\", "\\\\")  # JSON text has no raw tab/newline; double backslashes
            line = f"{order}{prefix}{copy_field(prepared.uuid)}\t{typed}\t{raw}\t{digest}\n"
            lines.append((prepared.uuid, line, entry))
        return lines

    def write_page(
        self,
        entries: Sequence[Any],
        next_cursor: str | None,
        has_more: bool,
        fetched: int | None = None,
    ) -> PageOutcome:
        """Stage a page's entries and move the partition's checkpoint past it, atomically.

        `fetched`: `FETCH_CLOCK.reserve(len(entries))` taken when the page's response arrived (default:
        now, which is only right when nothing else writes pages fetched meanwhile).
        """
        outcome, lines, payload = self._prepare(entries, fetched)
        try:
            with self._conn.cursor() as cur:
                self._copy(cur, lines, outcome, payload)
                cur.execute(
                    f"UPDATE {CHECKPOINTS_TABLE} SET cursor = %s, pages = pages + 1,"
                    " customers = customers + %s, done = %s, updated_at = now()"
                    " WHERE pass_id = %s AND partition = %s",
                    (next_cursor, outcome.staged, not has_more, self.pass_id, self.partition),
                )
                if cur.rowcount != 1:
                    raise RuntimeError(
                        f"checkpoint for pass {self.pass_id} partition {self.partition!r} is missing"
                    )
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise
        return outcome

    def stage_entries(self, entries: Sequence[Any], fetched: Sequence[int] | None = None) -> PageOutcome:
        """Stage entries with no checkpoint (e.g. customers re-fetched while verifying deletions).

        `fetched`: each entry's fetch order, taken when its response arrived (default: now).
        """
        outcome, lines, payload = self._prepare(entries, fetched)
        try:
            with self._conn.cursor() as cur:
                self._copy(cur, lines, outcome, payload)
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise
        return outcome

    def restart_partition(self) -> None:
        """Forget this partition's staged rows and checkpoint (its saved cursor was refused)."""
        with self._conn.cursor() as cur:
            cur.execute(
                f"DELETE FROM {STAGING_TABLE} WHERE pass_id = %s AND partition = %s",
                (self.pass_id, self.partition),
            )
            cur.execute(
                f"UPDATE {CHECKPOINTS_TABLE} SET cursor = NULL, pages = 0, customers = 0, done = false,"
                " updated_at = now() WHERE pass_id = %s AND partition = %s",
                (self.pass_id, self.partition),
            )
        self._conn.commit()

    def mark_done(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute(
                f"UPDATE {CHECKPOINTS_TABLE} SET done = true, updated_at = now()"
                " WHERE pass_id = %s AND partition = %s",
                (self.pass_id, self.partition),
            )
        self._conn.commit()

    def _copy(
        self, cur, lines: list[tuple[str | None, str, Any]], outcome: PageOutcome, payload: bytes
    ) -> None:
        good = sum(1 for uuid, _, _ in lines if uuid is not None)
        if good:
            cur.execute("SAVEPOINT page")
            try:
                cur.copy_expert(_STAGING_COPY, io.BytesIO(payload))
                outcome.staged += good
            except psycopg2.DataError:
                # One value Postgres refuses must not sink the page: retry row by row, keep the rest.
                cur.execute("ROLLBACK TO SAVEPOINT page")
                for uuid, line, entry in lines:
                    if uuid is None:
                        continue
                    cur.execute("SAVEPOINT row")
                    try:
                        cur.copy_expert(_STAGING_COPY, io.BytesIO(line.encode("utf-8")))
                        outcome.staged += 1
                    except psycopg2.DataError as exc:
                        cur.execute("ROLLBACK TO SAVEPOINT row")
                        message = (exc.pgerror or str(exc)).strip().splitlines()[0]
                        outcome.rejected.append(f"customer {uuid}: Postgres refused the row: {message}")
                        self._reject(cur, uuid, message, entry)
        for uuid, message, entry in lines:
            if uuid is None:
                self._reject(cur, None, message, entry)

    def _reject(self, cur, uuid: str | None, error: str, entry: Any) -> None:
        cur.execute(
            f"INSERT INTO {REJECTS_TABLE} (pass_id, partition, uuid, error, entry) VALUES (%s, %s, %s, %s, %s)",
            (self.pass_id, self.partition, uuid, error, json.dumps(entry, ensure_ascii=True, default=repr)),
        )


# ---- deletions -----------------------------------------------------------------------------------


def deletion_candidates(engine: Engine, pass_id: int, filters: dict, limit: int) -> list[str]:
    """Live published uuids the pass did not stage, within the pass's filters (at most `limit`)."""
    clauses, params = [], {"pass_id": pass_id, "limit": limit}
    if filters.get("data_source_uuid"):
        # Broad on purpose: verifying a customer outside the filter only costs a GET, never a false delete.
        clauses.append("(c.data_source_uuid = %(ds)s OR coalesce(c.data_source_uuids, '[]'::jsonb) ? %(ds)s)")
        params["ds"] = filters["data_source_uuid"]
    if filters.get("system"):
        clauses.append("c.billing_system_type = %(system)s")
        params["system"] = filters["system"]
    where = "".join(f" AND {c}" for c in clauses)
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT c.uuid FROM {CUSTOMERS_TABLE} c WHERE c.deleted_at IS NULL{where}"
                f" AND NOT EXISTS (SELECT 1 FROM {STAGING_TABLE} s WHERE s.pass_id = %(pass_id)s AND s.uuid = c.uuid)"
                " ORDER BY c.uuid LIMIT %(limit)s",
                params,
            )
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


@dataclass(frozen=True)
class DeletionCheck:
    """The answer to GET /customers/{uuid} for a customer the pass did not see."""

    uuid: str
    outcome: str  # "deleted" (404), "alive" (200), "error" (anything else)
    http_status: int | None
    message: str | None = None


# ---- publish -------------------------------------------------------------------------------------


@dataclass
class PublishResult:
    seen: int
    inserted: int
    updated: int
    unchanged: int
    deleted: int
    undeleted: int
    row_count: int
    live_count: int
    total_mrr_cents: int
    rejected: int = 0  # staged entries whose text Postgres could not parse (see _extract_rejects)


_DATA_COLS = ", ".join(CUSTOMER_DATA_COLUMNS)
_UPDATABLE = [c for c in CUSTOMER_DATA_COLUMNS if c != "uuid"]
_TYPED_COLS = ", ".join(f"s.{c}" for c in TYPED_COLUMNS)
_CANDIDATES = "_publish_candidates"  # temporary, dropped at commit


def publish(engine: Engine, pass_id: int, checks: Sequence[DeletionCheck] = ()) -> PublishResult:
    """Publish the pass in ONE transaction: upsert changed rows, mark verified deletions, close the pass.

    Only candidates are parsed and mapped: customers that are new, flagged deleted, or whose staged text's
    md5 differs from the one they were last published from (HASHES_TABLE; a missing hash, or a customers
    row rewritten since by anything else, also makes a candidate). A candidate is rewritten only when its
    `raw` differs as jsonb (every other column is derived from raw), so a change of key order alone is
    unchanged; after a mapping change (MAPPING_VERSION differs from the last publish's) every staged
    customer is a candidate and every mapped column is compared instead, once.
    """
    assignments = ", ".join(f"{col} = EXCLUDED.{col}" for col in _UPDATABLE)
    deleted_uuids = [c.uuid for c in checks if c.outcome == "deleted"]
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL work_mem = '256MB'")
            cur.execute("SET LOCAL jit = off")  # compiling the mapping expressions costs more than it saves
            cur.execute(
                f"SELECT state, filters FROM {PASSES_TABLE} WHERE pass_id = %s FOR UPDATE", (pass_id,)
            )
            state, filters = cur.fetchone()
            if state != "running":
                raise RuntimeError(f"pass {pass_id} is {state}, not running: nothing to publish")
            cur.execute(f"ANALYZE {STAGING_TABLE}")  # fresh statistics: it was filled since the last one
            cur.execute(f"SELECT mapping_version FROM {PUBLISH_LOG_TABLE} ORDER BY published_at DESC LIMIT 1")
            last = cur.fetchone()
            remap = last is not None and last[0] != MAPPING_VERSION
            if remap:
                differs = " OR ".join(f"c.{col} IS DISTINCT FROM {{new}}.{col}" for col in _UPDATABLE)
            else:
                differs = "c.raw IS DISTINCT FROM {new}.raw"
            # Latest fetch per uuid wins; of those, only candidates go on (their staging row by fetch_seq).
            cur.execute(
                f"CREATE TEMPORARY TABLE {_CANDIDATES} (fetch_seq bigint PRIMARY KEY, uuid text NOT NULL,"
                " raw_md5 text NOT NULL) ON COMMIT DROP"
            )
            cur.execute(
                f"WITH latest AS (SELECT s.fetch_seq, s.uuid, s.raw_md5 FROM {STAGING_TABLE} s"
                f" JOIN (SELECT max(fetch_seq) AS fetch_seq FROM {STAGING_TABLE} WHERE pass_id = %s"
                " GROUP BY uuid) k USING (fetch_seq)),"
                f" candidates AS (INSERT INTO {_CANDIDATES} SELECT l.fetch_seq, l.uuid, l.raw_md5 FROM latest l"
                f" LEFT JOIN {CUSTOMERS_TABLE} c ON c.uuid = l.uuid LEFT JOIN {HASHES_TABLE} h ON h.uuid = l.uuid"
                " WHERE %s OR c.uuid IS NULL OR c.deleted_at IS NOT NULL OR h.uuid IS NULL"
                " OR h.raw_md5 <> l.raw_md5 OR h.row_xmin IS DISTINCT FROM c.xmin RETURNING 1)"
                " SELECT (SELECT count(*) FROM latest), (SELECT count(*) FROM candidates)",
                (pass_id, remap),
            )
            seen, _ = cur.fetchone()
            cur.execute(f"ANALYZE {_CANDIDATES}")
            # Unchanged rows are filtered out BEFORE the upsert, so they are not even locked (ON CONFLICT
            # would lock every conflicting row).
            # raw is staged as text without being parsed: an entry text Postgres refuses as jsonb (valid by
            # construction, so never expected) must not sink the publish. It is set aside and recorded.
            rejected = 0
            while True:
                cur.execute("SAVEPOINT upsert")
                try:
                    cur.execute(
                        f"WITH staged AS (SELECT s.uuid, {_TYPED_COLS}, s.raw::jsonb AS raw FROM {_CANDIDATES} k"
                        # OFFSET 0 fences the subquery: the planner can't join staging to customers
                        # first and parse rows that are not candidates.
                        f" JOIN {STAGING_TABLE} s USING (fetch_seq) OFFSET 0),"
                        f" mapped AS (SELECT {mapped_columns_sql('l')} FROM staged l),"
                        # was_deleted: the row (as before this statement) is flagged deleted; the upsert
                        # always rewrites such a row, so those are the customers it undeletes.
                        f" changed AS (SELECT m.*, c.deleted_at IS NOT NULL AS was_deleted FROM mapped m"
                        f" LEFT JOIN {CUSTOMERS_TABLE} c ON c.uuid = m.uuid"
                        f" WHERE c.uuid IS NULL OR c.deleted_at IS NOT NULL OR {differs.format(new='m')}),"
                        f" up AS (INSERT INTO {CUSTOMERS_TABLE} AS c ({_DATA_COLS}, first_seen_at, synced_at, deleted_at)"
                        f" SELECT {_DATA_COLS}, now(), now(), NULL FROM changed"
                        f" ON CONFLICT (uuid) DO UPDATE SET {assignments}, synced_at = now(), deleted_at = NULL"
                        f" WHERE c.deleted_at IS NOT NULL OR {differs.format(new='EXCLUDED')}"
                        " RETURNING (xmax = 0) AS inserted)"
                        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),"
                        " (SELECT count(*) FROM changed WHERE was_deleted) FROM up"
                    )
                    inserted, updated, undeleted = cur.fetchone()
                    cur.execute("RELEASE SAVEPOINT upsert")
                    break
                except psycopg2.DataError:
                    cur.execute("ROLLBACK TO SAVEPOINT upsert")
                    bad = _set_aside_unparsable(cur)
                    if not bad:
                        raise
                    rejected += bad
            # Every candidate is now published as its staged text: remember that text's md5 and the row
            # version it was checked against (a later statement sees this transaction's new versions).
            cur.execute(
                f"INSERT INTO {HASHES_TABLE} AS h (uuid, raw_md5, row_xmin)"
                f" SELECT k.uuid, k.raw_md5, c.xmin FROM {_CANDIDATES} k JOIN {CUSTOMERS_TABLE} c USING (uuid)"
                " ON CONFLICT (uuid) DO UPDATE SET raw_md5 = EXCLUDED.raw_md5, row_xmin = EXCLUDED.row_xmin"
            )
            deleted = 0
            if deleted_uuids:
                cur.execute(
                    f"UPDATE {CUSTOMERS_TABLE} c SET deleted_at = now(), synced_at = now()"
                    " WHERE c.uuid = ANY(%s) AND c.deleted_at IS NULL"
                    f" AND NOT EXISTS (SELECT 1 FROM {STAGING_TABLE} s WHERE s.pass_id = %s AND s.uuid = c.uuid)",
                    (deleted_uuids, pass_id),
                )
                deleted = cur.rowcount
            if checks:
                cur.executemany(
                    f"INSERT INTO {DELETION_CHECKS_TABLE} (uuid, pass_id, http_status, outcome, message)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    [(c.uuid, pass_id, c.http_status, c.outcome, c.message) for c in checks],
                )
            cur.execute(
                f"SELECT count(*), count(*) FILTER (WHERE deleted_at IS NULL),"
                f" coalesce(sum(mrr) FILTER (WHERE deleted_at IS NULL), 0) FROM {CUSTOMERS_TABLE}"
            )
            row_count, live_count, total_mrr = cur.fetchone()
            unchanged = seen - inserted - updated - rejected
            cur.execute(
                f"INSERT INTO {PUBLISH_LOG_TABLE} (pass_id, row_count, live_count, seen, inserted, updated,"
                " unchanged, deleted, undeleted, filters, mapping_version)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    pass_id,
                    row_count,
                    live_count,
                    seen,
                    inserted,
                    updated,
                    unchanged,
                    deleted,
                    undeleted,
                    json.dumps(filters),
                    MAPPING_VERSION,
                ),
            )
            cur.execute(
                f"UPDATE {PASSES_TABLE} SET state = 'published', finished_at = now() WHERE pass_id = %s",
                (pass_id,),
            )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    return PublishResult(
        seen=seen,
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        deleted=deleted,
        undeleted=undeleted,
        row_count=row_count,
        live_count=live_count,
        total_mrr_cents=int(total_mrr),
        rejected=rejected,
    )


def _unparsable(cur, seqs: list[int]) -> list[tuple[int, str]]:
    """(fetch_seq, Postgres's message) of the staged rows among `seqs` whose raw is not valid jsonb."""
    cur.execute("SAVEPOINT parse")
    try:
        cur.execute(f"SELECT count(raw::jsonb) FROM {STAGING_TABLE} WHERE fetch_seq = ANY(%s)", (seqs,))
        cur.execute("RELEASE SAVEPOINT parse")
        return []
    except psycopg2.DataError as exc:
        cur.execute("ROLLBACK TO SAVEPOINT parse")
        if len(seqs) == 1:
            return [(seqs[0], (exc.pgerror or str(exc)).strip().splitlines()[0])]
        half = len(seqs) // 2  # bisect: a few bad rows among many cost a few queries each
        return _unparsable(cur, seqs[:half]) + _unparsable(cur, seqs[half:])


def _set_aside_unparsable(cur) -> int:
    """Drop the candidates whose staged raw is not valid jsonb, recording each as a reject; how many."""
    cur.execute(f"SELECT fetch_seq FROM {_CANDIDATES} ORDER BY fetch_seq")
    bad = _unparsable(cur, [r[0] for r in cur.fetchall()])
    for fetch_seq, message in bad:
        cur.execute(
            f"INSERT INTO {REJECTS_TABLE} (pass_id, partition, uuid, error, entry)"
            f" SELECT pass_id, partition, uuid, %s, raw FROM {STAGING_TABLE} WHERE fetch_seq = %s",
            (
                f"entry text is not valid JSON for Postgres: {message}; the published row is left as it was",
                fetch_seq,
            ),
        )
        cur.execute(f"DELETE FROM {_CANDIDATES} WHERE fetch_seq = %s", (fetch_seq,))
    return len(bad)


def clear_staging(engine: Engine, pass_id: int) -> None:
    """Drop a published pass's staged rows (the next pass truncates anyway; this frees space early)."""
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT 1 FROM {PASSES_TABLE} WHERE state = 'running'")
            if cur.fetchone() is None:
                cur.execute(f"TRUNCATE {STAGING_TABLE}")
            else:
                cur.execute(f"DELETE FROM {STAGING_TABLE} WHERE pass_id = %s", (pass_id,))
        conn.commit()
    finally:
        conn.close()
