"""The publish: ONE transaction that makes a finished pass the table readers see.

It dedupes staging by uuid (latest fetch wins), drops entries fetched before the row's last write (a
push's write-back answered later: latest wins across writers), keeps only candidates (new, flagged
deleted, or whose staged text's md5 differs from the one the row was last written from; a missing
version, or a row rewritten since by anything else, also makes a candidate), upserts the candidates whose
data differ (customers.py), marks verified deletions, logs the deletion checks and the publish, and
closes the pass. A row rewritten outside cm_pipeline (its xmin is not the one recorded), a mapping
change (MAPPING_VERSION differs from the last publish's) or a full refresh compare every mapped column,
not just raw, so whatever the table holds is repaired.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg2
from sqlalchemy.engine import Engine

from cm_pipeline.warehouse import customers
from cm_pipeline.warehouse.connection import raw_connection
from cm_pipeline.warehouse.mapping import MAPPING_VERSION
from cm_pipeline.warehouse.schema import (
    CUSTOMERS_TABLE,
    DELETION_CHECKS_TABLE,
    PASSES_TABLE,
    PUBLISH_LOG_TABLE,
    REJECTS_TABLE,
    STAGING_TABLE,
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


def _choose_candidates(cur, pass_id: int, compare_all: bool) -> tuple[int, int]:
    """Fill the candidates table (latest fetch per uuid, only those worth parsing, and whether each is
    compared column by column); (customers seen, entries older than their row's last write)."""
    cur.execute(
        f"CREATE TEMPORARY TABLE {_CANDIDATES} (fetch_seq bigint PRIMARY KEY, uuid text NOT NULL,"
        " raw_md5 text NOT NULL, full_compare boolean NOT NULL) ON COMMIT DROP"
    )
    drifted = "v.uuid IS NULL OR v.row_xmin IS DISTINCT FROM c.xmin"
    cur.execute(
        f"WITH latest AS (SELECT s.fetch_seq, s.uuid, s.raw_md5 FROM {STAGING_TABLE} s"
        f" JOIN (SELECT max(fetch_seq) AS fetch_seq FROM {STAGING_TABLE} WHERE pass_id = %(pass)s"
        " GROUP BY uuid) k USING (fetch_seq)),"
        f" judged AS (SELECT l.*, c.uuid IS NULL OR c.deleted_at IS NOT NULL AS absent, {drifted} AS drifted,"
        " v.raw_md5 IS DISTINCT FROM l.raw_md5 AS changed, l.fetch_seq < v.fetched_seq AS older"
        f" FROM latest l LEFT JOIN {CUSTOMERS_TABLE} c ON c.uuid = l.uuid"
        f" LEFT JOIN {VERSIONS_TABLE} v ON v.uuid = l.uuid),"
        f" candidates AS (INSERT INTO {_CANDIDATES} SELECT fetch_seq, uuid, raw_md5,"
        " %(all)s OR (drifted AND NOT absent) FROM judged"
        " WHERE NOT coalesce(older, false) AND (%(all)s OR absent OR drifted OR changed) RETURNING 1)"
        " SELECT (SELECT count(*) FROM latest), (SELECT count(*) FROM judged WHERE older),"
        " (SELECT count(*) FROM candidates)",
        {"pass": pass_id, "all": compare_all},
    )
    seen, older, _ = cur.fetchone()
    cur.execute(f"ANALYZE {_CANDIDATES}")
    return seen, older


def _upsert(cur) -> tuple[int, int, int, int]:
    """Upsert the candidates; raw is staged as text without being parsed, so an entry text Postgres
    refuses as jsonb (valid by construction, never expected) is set aside and recorded rather than sinking
    the publish. (inserted, updated, undeleted, set aside)."""
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


def publish(
    engine: Engine, pass_id: int, checks: Sequence[DeletionCheck] = (), *, compare_all: bool = False
) -> PublishResult:
    """Publish the pass in ONE transaction: upsert changed rows, mark verified deletions, close the pass.

    `compare_all` (a full refresh): every staged customer is compared column by column with its row,
    whatever the versions say, so every row that differs from the API's answer is rewritten.
    """
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL work_mem = '256MB'")
            cur.execute("SET LOCAL jit = off")  # compiling the mapping expressions costs more than it saves
            filters = _running_pass_filters(cur, pass_id)
            cur.execute(f"ANALYZE {STAGING_TABLE}")  # fresh statistics: it was filled since the last one
            seen, older = _choose_candidates(cur, pass_id, compare_all or _needs_remap(cur))
            inserted, updated, undeleted, rejected = _upsert(cur)
            _remember_versions(cur)
            deleted = customers.mark_deleted(cur, [c.uuid for c in checks if c.outcome == "deleted"], pass_id)
            row_count, live_count, total_mrr = customers.totals(cur)
            unchanged = seen - inserted - updated - rejected - older
            result = PublishResult(
                seen, inserted, updated, unchanged, deleted, undeleted, row_count, live_count, total_mrr
            )
            result.rejected, result.kept_newer = rejected, older
            _log(cur, pass_id, filters, result, checks)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    return result


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
