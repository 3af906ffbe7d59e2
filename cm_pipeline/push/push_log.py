"""The push audit log, the per-run plan table, and safe relation reads (SQL, no Dagster).

cm_pipeline.push_log holds one row per attempted write and one per skip. A write's row is its intent,
logged 'pending' before the call and given its outcome after the answer (`open_intent`,
`close_intent`): a crash, or an answer lost for good, leaves it 'pending' for the next push of its
kind to resolve by reading ChartMogul (pending.py). Its `fingerprint` column (sha256 of the row's
desired values) lets the next run recognise a row the API already rejected.
cm_pipeline.push_plan holds the snapshot of an outbound relation taken by a run, keyed by run_id and
kind, so the ops of one run exchange only small summaries. `kind` is the push kind (updates, by_email,
creates) in both tables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cm_pipeline.push.decide import Rejection
from cm_pipeline.warehouse.schema import PUSH_LOG_TABLE, PUSH_OUTCOMES, PUSH_PLAN_TABLE

OUTCOMES = PUSH_OUTCOMES

_IDENT = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_RELATION_RE = re.compile(rf"^({_IDENT})(?:\.({_IDENT}))?$")


class RelationError(ValueError):
    """A relation name from run config that is malformed, missing, or lacks required columns."""


# ---- relations named in run config ---------------------------------------------------------------


def quote_relation(name: str) -> str:
    """`schema.table` (or `table`) quoted for SQL; RelationError when it is not a plain identifier pair."""
    if not isinstance(name, str):
        raise RelationError(f"relation: {name!r} is not a string")
    match = _RELATION_RE.match(name.strip())
    if not match:
        raise RelationError(
            f"relation: {name!r} is not a valid name; expected schema.table with letters, digits and underscores"
        )
    return ".".join(f'"{part}"' for part in match.groups() if part)


def relation_columns(conn: Connection, name: str) -> list[str] | None:
    """Column names of a table or view, or None when it does not exist."""
    quoted = quote_relation(name)
    oid = conn.execute(sa.text("SELECT to_regclass(:n)::oid"), {"n": quoted}).scalar()
    if oid is None:
        return None
    rows = conn.execute(
        sa.text(
            "SELECT attname FROM pg_attribute WHERE attrelid = :oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
        {"oid": oid},
    )
    return [r[0] for r in rows]


def check_relation(conn: Connection, name: str, required: Sequence[str]) -> list[str]:
    """The relation's columns; RelationError naming it if it is missing or lacks a required column."""
    columns = relation_columns(conn, name)
    if columns is None:
        raise RelationError(f"relation {name!r} does not exist (has dbt built the reverse_etl models?)")
    missing = [c for c in required if c not in columns]
    if missing:
        raise RelationError(
            f"relation {name!r} lacks required column(s) {', '.join(missing)}; it has {', '.join(columns)}"
        )
    return columns


def snapshot_relation(engine: Engine, run_id: str, kind: str, relation: str, required: Sequence[str]) -> int:
    """Copy the relation's rows into push_plan for this run and kind (replacing a previous attempt); row count."""
    with engine.begin() as conn:
        check_relation(conn, relation, required)
        conn.execute(
            sa.text(f"DELETE FROM {PUSH_PLAN_TABLE} WHERE run_id = :r AND kind = :k"),
            {"r": run_id, "k": kind},
        )
        result = conn.execute(
            sa.text(
                f"INSERT INTO {PUSH_PLAN_TABLE} (run_id, kind, seq, row) "
                f"SELECT :r, :k, row_number() OVER (), to_jsonb(t) FROM {quote_relation(relation)} AS t"
            ),
            {"r": run_id, "k": kind},
        )
        return result.rowcount


def plan_rows(engine: Engine, run_id: str, kind: str) -> list[dict]:
    """The rows of this run's snapshot of `kind`'s relation, in relation order."""
    sql = f"SELECT row FROM {PUSH_PLAN_TABLE} WHERE run_id = :r AND kind = :k ORDER BY seq"
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text(sql), {"r": run_id, "k": kind})]


def _execute(engine: Engine, sql: str, params: dict) -> None:
    """One statement in a transaction of its own, committed."""
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def drop_plan(engine: Engine, run_id: str, kind: str, keep_days: int = 7) -> None:
    """Delete this run's plan, and plans older than `keep_days` left by crashed runs."""
    sql = (
        f"DELETE FROM {PUSH_PLAN_TABLE} WHERE (run_id = :r AND kind = :k) "
        "OR created_at < now() - make_interval(days => :d)"
    )
    _execute(engine, sql, {"r": run_id, "k": kind, "d": keep_days})


# ---- push_log -----------------------------------------------------------------------------------


@dataclass
class LogEntry:
    """One push_log row."""

    kind: str
    target: str
    outcome: str
    fingerprint: str | None = None
    payload: Any = None
    http_status: int | None = None
    error: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome: {self.outcome!r} is not one of {', '.join(OUTCOMES)}")


def _params(run_id: str, e: LogEntry) -> dict:
    return {
        "run_id": run_id,
        "kind": e.kind,
        "target": e.target,
        "fingerprint": e.fingerprint,
        "payload": None if e.payload is None else json.dumps(e.payload, ensure_ascii=False, default=str),
        "http_status": e.http_status,
        "outcome": e.outcome,
        "error": e.error,
        "started_at": e.started_at,
    }


_INSERT = (
    f"INSERT INTO {PUSH_LOG_TABLE} (run_id, kind, target, fingerprint, payload, http_status, outcome, error, started_at) "
    "VALUES (:run_id, :kind, :target, :fingerprint, CAST(:payload AS jsonb), :http_status, :outcome, :error, :started_at)"
)


def record(engine_or_conn: Engine | Connection, run_id: str, entries: Sequence[LogEntry]) -> None:
    """Append entries to push_log (one statement; committed when given an engine)."""
    if not entries:
        return
    params = [_params(run_id, e) for e in entries]
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.begin() as conn:
            conn.execute(sa.text(_INSERT), params)
    else:
        engine_or_conn.execute(sa.text(_INSERT), params)


# ---- intents: a write logged before it is sent ---------------------------------------------------


def open_intent(engine: Engine, run_id: str, entry: LogEntry) -> int:
    """Log `entry` as 'pending' before its write is sent, committed; the row's id."""
    params = {**_params(run_id, entry), "outcome": "pending"}
    with engine.begin() as conn:
        return conn.execute(sa.text(_INSERT + " RETURNING id"), params).scalar_one()


def close_intent(
    engine: Engine, log_id: int, outcome: str, *, http_status: int | None = None, error: str | None = None
) -> None:
    """Give a pending write its outcome, now that its answer is in."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome: {outcome!r} is not one of {', '.join(OUTCOMES)}")
    sql = f"UPDATE {PUSH_LOG_TABLE} SET outcome = :o, http_status = :s, error = :e, finished_at = now() WHERE id = :id"
    _execute(engine, sql, {"o": outcome, "s": http_status, "e": error, "id": log_id})


def withdraw_intent(engine: Engine, log_id: int) -> None:
    """Remove a pending write that was never sent (the API refused the connection, or the run stopped)."""
    _execute(engine, f"DELETE FROM {PUSH_LOG_TABLE} WHERE id = :id AND outcome = 'pending'", {"id": log_id})


def pending_intents(engine: Engine, kind: str) -> list[dict]:
    """Writes of `kind` still 'pending' (from runs that crashed or lost an answer), oldest first."""
    sql = (
        f"SELECT id, run_id, target, fingerprint, payload, error FROM {PUSH_LOG_TABLE} "
        "WHERE kind = :k AND outcome = 'pending' ORDER BY id"
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(sql), {"k": kind})]


def resolve_intent(engine: Engine, log_id: int, outcome: str, note: str) -> None:
    """Settle a pending write found by a later run: `note` (why, and which run) joins its error."""
    sql = (
        f"UPDATE {PUSH_LOG_TABLE} SET outcome = :o, error = concat_ws('; ', error, CAST(:n AS text)), "
        "finished_at = now() WHERE id = :id AND outcome = 'pending'"
    )
    _execute(engine, sql, {"o": outcome, "n": note, "id": log_id})


# ---- what earlier runs and this run say ------------------------------------------------------------


def api_rejections(engine: Engine, kind: str) -> dict[tuple[str, str], Rejection]:
    """(target, fingerprint) -> Rejection where the latest entry for it is an API rejection.

    Only rejections that came back from the API (http_status set) are remembered: rows rejected by
    validation made no call, and are re-validated every run (the warehouse may have changed).
    """
    sql = f"""
        SELECT target, fingerprint, http_status, error, finished_at FROM (
            SELECT DISTINCT ON (target, fingerprint) target, fingerprint, outcome, http_status, error, finished_at
            FROM {PUSH_LOG_TABLE} WHERE kind = :k AND fingerprint IS NOT NULL
            ORDER BY target, fingerprint, id DESC
        ) latest WHERE outcome = 'rejected' AND http_status IS NOT NULL
    """
    with engine.connect() as conn:
        return {(r[0], r[1]): Rejection(r[2], r[3], r[4]) for r in conn.execute(sa.text(sql), {"k": kind})}


def final_outcomes(engine: Engine, run_id: str, kind: str) -> list[tuple[str, str | None]]:
    """(outcome, error) of each row of one run: the last entry per (target, fingerprint), so a row whose
    first write failed and whose retry in the same run went through counts once, as applied."""
    sql = f"""
        SELECT outcome, error FROM (
            SELECT DISTINCT ON (target, fingerprint) outcome, error FROM {PUSH_LOG_TABLE}
            WHERE run_id = :r AND kind = :k ORDER BY target, fingerprint, id DESC
        ) last
    """
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(sa.text(sql), {"r": run_id, "k": kind})]


def latest_push_run(engine: Engine, kind: str) -> str | None:
    """run_id of the latest run of `kind` that was not a dry run, or None."""
    sql = (
        f"SELECT run_id FROM {PUSH_LOG_TABLE} WHERE kind = :k GROUP BY run_id "
        "HAVING bool_and(outcome <> 'dry_run') ORDER BY max(id) DESC LIMIT 1"
    )
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), {"k": kind}).scalar()


def outcome_counts(engine: Engine, run_id: str, kind: str) -> dict[str, int]:
    """Count of push_log rows per outcome for one run and kind (every outcome present, zero if none)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT outcome, count(*) FROM {PUSH_LOG_TABLE} WHERE run_id = :r AND kind = :k GROUP BY outcome"
            ),
            {"r": run_id, "k": kind},
        )
        counts.update({r[0]: int(r[1]) for r in rows})
    return counts
