"""The publish: the next version of chartmogul.customers is ONE transaction, open while the pass is walked.

`Publisher` opens it when the walk starts. `apply` writes the rows staged so far, in fetch order, a range
of fetch_seq at a time: per customer it skips an entry fetched before the row's last write (latest wins
across writers), keeps the candidates (new, flagged deleted, a staged text whose md5 differs from the one
the row was last written from, no version, or a row rewritten since by anything else), maps those staged
unmapped, upserts the ones whose data differ (customers.py) and records their versions; a customer fetched
twice in the pass ends with its latest fetch. `finish` is what is left after the last page: the rows
staged since (deletion checks), rows another writer wrote since the pass began, verified deletions, the
logs, the commit. Readers see the table as it was until then; a killed run's transaction rolls back and
the next run applies the staged pages again. A row rewritten outside cm_pipeline (xmin not the recorded
one), a mapping change (MAPPING_VERSION) or a full refresh compare every mapped column, not just raw.

The transaction holds row locks only on the rows it rewrote: a push writing one of them back waits for
the commit (pushes and refreshes do not run side by side under the run queue). A deadlock or
serialization failure rolls it back, and the staged rows are applied again from the first.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
import psycopg2
from sqlalchemy.engine import Engine

from cm_pipeline.warehouse import customers
from cm_pipeline.warehouse.connection import raw_connection
from cm_pipeline.warehouse.copytext import typed_copy_text
from cm_pipeline.warehouse.mapping import MAPPING_VERSION, FieldProblem, prepare_entry
from cm_pipeline.warehouse.schema import (
    CUSTOMERS_TABLE,
    DELETION_CHECKS_TABLE,
    PASSES_TABLE,
    PUBLISH_LOG_TABLE,
    REJECTS_TABLE,
    STAGING_TABLE,
    STAGING_TYPED_COLUMNS,
    VERSIONS_TABLE,
)

_CANDIDATES = "_publish_candidates"  # temporary, dropped at commit


@dataclass(frozen=True)
class DeletionCheck:
    """The answer to GET /customers/{uuid} for a customer the pass did not see."""

    uuid: str
    outcome: str  # "deleted" (404), "alive" (200), "error" (anything else)
    http_status: int | None
    message: str | None = None


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
    rejected: int = 0  # staged entries whose text Postgres could not parse (see extract_rejects)
    kept_newer: int = 0  # staged entries fetched before their row's last write-back: the row was kept
    field_problems: int = 0  # values of the entries the publish mapped stored as NULL or cleaned
    problems: list[FieldProblem] = field(default_factory=list)  # the first PROBLEMS_KEPT of them


def _running_pass_filters(cur, pass_id: int) -> dict:
    cur.execute(f"SELECT state, filters FROM {PASSES_TABLE} WHERE pass_id = %s FOR UPDATE", (pass_id,))
    state, filters = cur.fetchone()
    if state != "running":
        raise RuntimeError(f"pass {pass_id} is {state}, not running: nothing to publish")
    return filters


def _needs_remap(cur) -> bool:
    cur.execute(f"SELECT mapping_version FROM {PUBLISH_LOG_TABLE} ORDER BY published_at DESC LIMIT 1")
    last = cur.fetchone()
    return last is not None and last[0] != MAPPING_VERSION


_LATEST_IN_RANGE = (
    f"SELECT DISTINCT ON (s.uuid) s.fetch_seq, s.uuid, s.raw_md5, s.prepared FROM {STAGING_TABLE} s"
    " WHERE s.pass_id = %(pass)s AND s.fetch_seq > %(lo)s AND s.fetch_seq <= %(hi)s ORDER BY s.uuid, s.fetch_seq DESC"
)
_LATEST_OF_UUIDS = (
    f"SELECT DISTINCT ON (s.uuid) s.fetch_seq, s.uuid, s.raw_md5, s.prepared FROM {STAGING_TABLE} s"
    " WHERE s.pass_id = %(pass)s AND s.uuid = ANY(%(uuids)s) ORDER BY s.uuid, s.fetch_seq DESC"
)


def _choose_candidates(cur, batch_sql: str, params: dict, compare_all: bool) -> None:
    """Fill the candidates table from `batch_sql` (each customer's latest staged entry in the batch): those
    worth parsing, and whether each is compared column by column; entries fetched before their row's last
    write are left out."""
    drifted = "v.uuid IS NULL OR v.row_xmin IS DISTINCT FROM c.xmin"
    cur.execute(
        f"WITH batch AS ({batch_sql}),"
        f" judged AS (SELECT b.*, c.uuid IS NULL OR c.deleted_at IS NOT NULL AS absent, {drifted} AS drifted,"
        " c.deleted_at IS NOT NULL AS was_deleted,"
        " v.raw_md5 IS DISTINCT FROM b.raw_md5 AS changed, b.fetch_seq < v.fetched_seq AS older"
        f" FROM batch b LEFT JOIN {CUSTOMERS_TABLE} c ON c.uuid = b.uuid"
        f" LEFT JOIN {VERSIONS_TABLE} v ON v.uuid = b.uuid)"
        f" INSERT INTO {_CANDIDATES} (fetch_seq, uuid, raw_md5, prepared, was_deleted, full_compare)"
        " SELECT fetch_seq, uuid, raw_md5, prepared, was_deleted, %(all)s OR (drifted AND NOT absent)"
        " FROM judged WHERE NOT coalesce(older, false) AND (%(all)s OR absent OR drifted OR changed)",
        {**params, "all": compare_all},
    )


_TYPED_NAMES = [name for name, _ in STAGING_TYPED_COLUMNS]
_MAPPED = "_publish_mapped"  # temporary: typed values the publish mapped, on their way to the candidates
_MAPPED_COPY = f"COPY {_MAPPED} (fetch_seq, {', '.join(_TYPED_NAMES)}) FROM STDIN"
MAP_CHUNK = 2000  # unmapped candidates read, mapped and copied at a time
PROBLEMS_KEPT = 100  # field problems a publish keeps to report (all are counted)
# A batch's customers are looked up by index: misled by stale statistics, the planner hashed the whole of
# chartmogul.customers for every batch (quadratic over a first load). The candidates are read whole.
_INDEX_LOOKUPS_ON = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
_INDEX_LOOKUPS_OFF = "RESET enable_hashjoin; RESET enable_mergejoin"


def _map_unmapped(cur, problems: list[FieldProblem]) -> tuple[int, int]:
    """Map the candidates staged unmapped (a refresh's new, changed or edited ones) into the candidates
    table, a chunk at a time; count their field problems, keeping the first PROBLEMS_KEPT in `problems`;
    set aside an entry that cannot be mapped. (how many were set aside, problems met)."""
    bad, met, mapped = [], 0, 0
    with cur.connection.cursor(name="cm_publish_unmapped") as source:
        source.itersize = MAP_CHUNK
        source.execute(
            f"SELECT k.fetch_seq, s.raw FROM {_CANDIDATES} k CROSS JOIN LATERAL ({customers.staged_row('k')}) s"
            " WHERE NOT k.prepared"
        )
        while rows := source.fetchmany(MAP_CHUNK):
            lines = []
            for fetch_seq, raw in rows:
                try:
                    prepared = prepare_entry(orjson.loads(raw))
                except orjson.JSONDecodeError as exc:  # staged text can only be cut or altered here
                    bad.append((fetch_seq, f"entry text is not valid JSON: {exc}"))
                    continue
                except Exception as exc:
                    bad.append((fetch_seq, f"could not be mapped ({type(exc).__name__}: {exc})"))
                    continue
                lines.append(f"{fetch_seq}\t{typed_copy_text(prepared.typed)}\n")
                met += len(prepared.problems)
                problems.extend(prepared.problems[: max(0, PROBLEMS_KEPT - len(problems))])
            cur.copy_expert(_MAPPED_COPY, io.BytesIO("".join(lines).encode("utf-8")))
            mapped += len(lines)
    if mapped:  # a first load's batches have none: no statement for them
        sets = ", ".join(f"{n} = m.{n}" for n in _TYPED_NAMES)
        cur.execute(f"UPDATE {_CANDIDATES} k SET {sets} FROM {_MAPPED} m WHERE k.fetch_seq = m.fetch_seq")
        cur.execute(f"DELETE FROM {_MAPPED}")
    for fetch_seq, message in bad:
        _set_aside(cur, fetch_seq, message)
    return len(bad), met


def _upsert(cur) -> tuple[int, int, int, int]:
    """Upsert the candidates; an unmapped entry's raw is staged as text without being parsed, so a text
    Postgres refuses as jsonb (valid by construction, never expected) is set aside and recorded rather
    than sinking the publish. (inserted, updated, undeleted, set aside)."""
    rejected = 0
    while True:
        cur.execute("SAVEPOINT upsert")
        try:
            counts = customers.upsert_staged(cur, _CANDIDATES)
            cur.execute("RELEASE SAVEPOINT upsert")
            return (*counts, rejected)
        except psycopg2.DataError:
            cur.execute("ROLLBACK TO SAVEPOINT upsert")
            bad = _set_aside_unparsable(cur)
            if not bad:
                raise
            rejected += bad


def _remember_versions(cur) -> None:
    """Every candidate now holds its staged entry: keep when it was fetched, its text's md5 and the row
    version it was checked against (a later statement sees this transaction's new versions)."""
    cur.execute(
        f"INSERT INTO {VERSIONS_TABLE} AS v (uuid, fetched_seq, raw_md5, row_xmin)"
        f" SELECT k.uuid, k.fetch_seq, k.raw_md5, c.xmin FROM {_CANDIDATES} k JOIN {CUSTOMERS_TABLE} c USING (uuid)"
        " ON CONFLICT (uuid) DO UPDATE SET fetched_seq = EXCLUDED.fetched_seq, raw_md5 = EXCLUDED.raw_md5,"
        " row_xmin = EXCLUDED.row_xmin"
    )


def _log(cur, pass_id: int, filters: dict, result: PublishResult, checks: Sequence[DeletionCheck]) -> None:
    if checks:
        cur.executemany(
            f"INSERT INTO {DELETION_CHECKS_TABLE} (uuid, pass_id, http_status, outcome, message)"
            " VALUES (%s, %s, %s, %s, %s)",
            [(c.uuid, pass_id, c.http_status, c.outcome, c.message) for c in checks],
        )
    r = result
    cur.execute(
        f"INSERT INTO {PUBLISH_LOG_TABLE} (pass_id, row_count, live_count, seen, inserted, updated,"
        " unchanged, deleted, undeleted, filters, mapping_version)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (pass_id, r.row_count, r.live_count, r.seen, r.inserted, r.updated, r.unchanged, r.deleted)
        + (r.undeleted, json.dumps(filters), MAPPING_VERSION),
    )
    cur.execute(
        f"UPDATE {PASSES_TABLE} SET state = 'published', finished_at = now() WHERE pass_id = %s", (pass_id,)
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
        _set_aside(cur, fetch_seq, f"entry text is not valid JSON for Postgres: {message}")
    return len(bad)


def _set_aside(cur, fetch_seq: int, why: str) -> None:
    """Leave a staged entry out of the publish, recorded as a reject saying `why`."""
    cur.execute(
        f"INSERT INTO {REJECTS_TABLE} (pass_id, partition, uuid, error, entry)"
        f" SELECT pass_id, partition, uuid, %s, coalesce(raw, raw_json::text) FROM {STAGING_TABLE}"
        " WHERE fetch_seq = %s",
        (f"{why}; the published row is left as it was", fetch_seq),
    )
    cur.execute(f"DELETE FROM {_CANDIDATES} WHERE fetch_seq = %s", (fetch_seq,))


class Publisher:
    """The next version of chartmogul.customers: one transaction on its own connection (see the module).

    `apply(upto)` from one thread while the pass is walked, then `finish(checks)` (or `close()` to drop
    it); never two calls at once.
    """

    ATTEMPTS = 3  # a deadlock or serialization failure rolls everything back: apply again from the first row

    def __init__(self, engine: Engine, pass_id: int, *, compare_all: bool = False):
        self.engine, self.pass_id, self._compare_all_asked = engine, pass_id, compare_all
        self.conn = None
        self._open()

    def _open(self) -> None:
        self.conn = raw_connection(self.engine)
        self.applied = 0  # fetch_seq of the last staged row applied
        self.counts = [0, 0, 0, 0]  # inserted, updated, undeleted, rejected
        self.problems: list[FieldProblem] = []  # the first PROBLEMS_KEPT met mapping unmapped entries
        self.problem_count = 0
        with self.conn.cursor() as cur:
            cur.execute("SET LOCAL work_mem = '256MB'")
            cur.execute("SET LOCAL jit = off")  # compiling the mapping expressions costs more than it saves
            self.compare_all = self._compare_all_asked or _needs_remap(cur)
            typed = "".join(f", {name} {ddl}" for name, ddl in STAGING_TYPED_COLUMNS)  # of unmapped entries
            cur.execute(
                f"CREATE TEMPORARY TABLE {_CANDIDATES} (fetch_seq bigint PRIMARY KEY, uuid text NOT NULL,"
                f" raw_md5 text NOT NULL, prepared boolean NOT NULL, was_deleted boolean NOT NULL,"
                f" full_compare boolean NOT NULL{typed}) ON COMMIT DROP"
            )
            cur.execute(f"CREATE TEMPORARY TABLE {_MAPPED} (fetch_seq bigint{typed}) ON COMMIT DROP")

    def close(self) -> None:
        """Roll back whatever was applied and not committed (a failed or abandoned run)."""
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.close()

    def _again(self, attempt: int, exc: BaseException) -> None:
        """After a deadlock or serialization failure: start the transaction over, or give up."""
        if attempt + 1 >= self.ATTEMPTS:
            raise exc
        self.close()
        self._open()

    def apply(self, upto: int | None = None) -> None:
        """Apply the staged rows fetched after the last one applied, up to fetch_seq `upto` (all: None)."""
        for attempt in range(self.ATTEMPTS):
            try:
                with self.conn.cursor() as cur:
                    self._apply(cur, upto)
                return
            except psycopg2.errors.TransactionRollbackError as exc:
                self._again(attempt, exc)

    def _apply(self, cur, upto: int | None) -> None:
        hi = upto if upto is not None else 2**63 - 1
        if hi <= self.applied:
            return
        params = {"pass": self.pass_id, "lo": self.applied, "hi": hi}
        self._apply_batch(cur, _LATEST_IN_RANGE, params)
        if upto is None:
            cur.execute(f"SELECT max(fetch_seq) FROM {STAGING_TABLE} WHERE pass_id = %s", (self.pass_id,))
            hi = cur.fetchone()[0] or self.applied
        self.applied = max(self.applied, hi)

    def _apply_batch(self, cur, batch_sql: str, params: dict) -> None:
        cur.execute(_INDEX_LOOKUPS_ON)
        try:
            _choose_candidates(cur, batch_sql, params, self.compare_all)
            unmappable, problems = _map_unmapped(cur, self.problems)
            inserted, updated, undeleted, rejected = _upsert(cur)
            rejected += unmappable
            _remember_versions(cur)
            cur.execute(f"DELETE FROM {_CANDIDATES}")
        finally:
            cur.execute(_INDEX_LOOKUPS_OFF)
        self.problem_count += problems
        for i, n in enumerate((inserted, updated, undeleted, rejected)):
            self.counts[i] += n

    def _writes_of_others(self, cur) -> int:
        """Rows another writer (a push's write-back) wrote since this pass's first fetch: the staged entries
        fetched after such a write are applied again; the count of those fetched before it (kept newer)."""
        cur.execute(f"SELECT min(fetch_seq) FROM {STAGING_TABLE} WHERE pass_id = %s", (self.pass_id,))
        first = cur.fetchone()[0]
        if first is None:
            return 0
        cur.execute(
            f"WITH w AS (SELECT uuid, fetched_seq FROM {VERSIONS_TABLE} WHERE fetched_seq >= %(first)s"
            " AND xmin IS DISTINCT FROM pg_current_xact_id_if_assigned()::xid),"
            f" latest AS (SELECT s.uuid, max(s.fetch_seq) AS fetch_seq FROM {STAGING_TABLE} s JOIN w USING (uuid)"
            " WHERE s.pass_id = %(pass)s GROUP BY s.uuid)"
            " SELECT count(*) FILTER (WHERE l.fetch_seq < w.fetched_seq),"
            " coalesce(array_agg(l.uuid) FILTER (WHERE l.fetch_seq > w.fetched_seq), '{}')"
            " FROM latest l JOIN w USING (uuid)",
            {"first": first, "pass": self.pass_id},
        )
        older, later = cur.fetchone()
        if later:
            self._apply_batch(cur, _LATEST_OF_UUIDS, {"pass": self.pass_id, "uuids": later})
        return older

    def finish(self, checks: Sequence[DeletionCheck] = ()) -> PublishResult:
        """Apply the rest, mark verified deletions, log, close the pass, commit; the publish's counts."""
        for attempt in range(self.ATTEMPTS):
            try:
                with self.conn.cursor() as cur:
                    result = self._finish(cur, checks)
                self.conn.commit()
                self.close()
                return result
            except psycopg2.errors.TransactionRollbackError as exc:
                self._again(attempt, exc)
        raise AssertionError("unreachable")

    def _finish(self, cur, checks: Sequence[DeletionCheck]) -> PublishResult:
        filters = _running_pass_filters(cur, self.pass_id)  # waits for whoever holds the pass row
        self._apply(cur, None)
        older = self._writes_of_others(cur)
        deleted = customers.mark_deleted(
            cur, [c.uuid for c in checks if c.outcome == "deleted"], self.pass_id
        )
        row_count, live_count, total_mrr = customers.totals(cur)
        cur.execute(f"SELECT count(DISTINCT uuid) FROM {STAGING_TABLE} WHERE pass_id = %s", (self.pass_id,))
        seen = cur.fetchone()[0]
        inserted, updated, undeleted, rejected = self.counts
        unchanged = seen - inserted - updated - rejected - older
        result = PublishResult(
            seen, inserted, updated, unchanged, deleted, undeleted, row_count, live_count, total_mrr
        )
        result.rejected, result.kept_newer = rejected, older
        result.field_problems, result.problems = self.problem_count, self.problems
        _log(cur, self.pass_id, filters, result, checks)
        return result


def publish(
    engine: Engine, pass_id: int, checks: Sequence[DeletionCheck] = (), *, compare_all: bool = False
) -> PublishResult:
    """Publish a staged pass in one go (`Publisher` with nothing applied beforehand).

    `compare_all` (a full refresh): every staged customer is compared column by column with its row,
    whatever the versions say, so every row that differs from the API's answer is rewritten.
    """
    publisher = Publisher(engine, pass_id, compare_all=compare_all)
    try:
        return publisher.finish(checks)
    finally:
        publisher.close()
