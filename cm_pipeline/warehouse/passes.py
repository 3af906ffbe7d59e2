"""Passes and checkpoints: what makes an extraction resumable.

A pass is one full walk of the customer list. Its partitions (names the extraction chooses; opaque here)
each keep a checkpoint row (next cursor, pages, customers, done): the rows are the pass's plan, so a
resumed pass keeps it. A new run resumes the unfinished pass with the same filters instead of starting
over, unless it is older than the resume window or a full refresh is asked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.engine import Engine

from cm_pipeline.warehouse.connection import raw_connection
from cm_pipeline.warehouse.schema import CHECKPOINTS_TABLE, PASSES_TABLE, REJECTS_TABLE, STAGING_TABLE
from cm_pipeline.warehouse.staging import FETCH_CLOCK


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


def _abandon(cur, pass_id: int, why: str) -> None:
    cur.execute(
        f"UPDATE {PASSES_TABLE} SET state = 'abandoned', finished_at = now(), note = %s WHERE pass_id = %s",
        (why, pass_id),
    )


def _pick_resumable(cur, filters: dict, per_page: int, full_refresh: bool, max_age: timedelta):
    """(the running pass to resume or None, why the others were abandoned): abandons all but that one."""
    cur.execute(
        f"SELECT pass_id, filters, per_page, now() - started_at FROM {PASSES_TABLE}"
        " WHERE state = 'running' ORDER BY pass_id DESC"
    )
    resume_id, reason = None, ""
    for pass_id, old_filters, old_per_page, age in cur.fetchall():
        if full_refresh:
            why = f"full refresh asked: pass {pass_id} discarded"
        elif resume_id is not None:
            why = f"superseded by pass {resume_id}"
        elif old_filters != filters or old_per_page != per_page:
            why = f"pass {pass_id} had other filters or per_page; started a fresh pass"
        elif age > max_age:
            why = f"pass {pass_id} is older than the resume window ({max_age}); started a fresh pass"
        else:
            resume_id = pass_id
            continue
        reason = reason or why
        _abandon(cur, pass_id, why)
    return resume_id, reason


def _checkpoints(cur, pass_id: int) -> dict[str, Checkpoint]:
    cur.execute(
        f"SELECT partition, cursor, pages, customers, done FROM {CHECKPOINTS_TABLE} WHERE pass_id = %s",
        (pass_id,),
    )
    return {row[0]: Checkpoint(*row) for row in cur.fetchall()}


def _start(cur, filters: dict, per_page: int, plan: Sequence[str]) -> int:
    """A fresh pass with `plan` as its checkpoints; staging emptied, rejects of unpublished passes gone."""
    cur.execute(f"TRUNCATE {STAGING_TABLE}")
    cur.execute(
        f"DELETE FROM {REJECTS_TABLE} WHERE pass_id NOT IN"
        f" (SELECT pass_id FROM {PASSES_TABLE} WHERE state = 'published')"
    )
    cur.execute(
        f"INSERT INTO {PASSES_TABLE} (filters, per_page, state) VALUES (%s, %s, 'running') RETURNING pass_id",
        (json.dumps(filters), per_page),
    )
    pass_id = cur.fetchone()[0]
    cur.executemany(
        f"INSERT INTO {CHECKPOINTS_TABLE} (pass_id, partition) VALUES (%s, %s)", [(pass_id, p) for p in plan]
    )
    return pass_id


def open_pass(
    engine: Engine,
    *,
    filters: dict,
    per_page: int,
    plan: Sequence[str] | Callable[[], Sequence[str]],
    full_refresh: bool = False,
    resume_max_age: timedelta = timedelta(hours=24),
) -> Pass:
    """Resume the unfinished pass with the same filters and per_page, or start a fresh one.

    `plan`: the checkpoint partitions of a fresh pass, or a function computing them, called only when a
    fresh pass starts; a resumed pass keeps its own. The caller must hold the refresh lock.
    """
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            resume_id, reason = _pick_resumable(cur, filters, per_page, full_refresh, resume_max_age)
            if resume_id is not None:
                checkpoints = _checkpoints(cur, resume_id)
                if checkpoints:
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
                _abandon(cur, resume_id, reason)
            chosen = list(plan() if callable(plan) else plan)
            pass_id = _start(cur, filters, per_page, chosen)
        conn.commit()
    finally:
        conn.close()
    return Pass(pass_id, filters, per_page, False, {p: Checkpoint(p) for p in chosen}, reason)


def replace_partition(
    engine: Engine, pass_id: int, partition: str, by: Sequence[str]
) -> dict[str, Checkpoint]:
    """Close `partition` where its checkpoint stands and add the partitions `by` (which cover what it had
    left) to the pass's plan, in one transaction; their checkpoints (an existing one is kept as it is)."""
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"UPDATE {CHECKPOINTS_TABLE} SET done = true, updated_at = now() WHERE pass_id = %s AND partition = %s",
                (pass_id, partition),
            )
            if cur.rowcount != 1:
                raise RuntimeError(f"checkpoint for pass {pass_id} partition {partition!r} is missing")
            cur.executemany(
                f"INSERT INTO {CHECKPOINTS_TABLE} (pass_id, partition) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(pass_id, p) for p in by],
            )
            wanted = set(by)
            checkpoints = {name: cp for name, cp in _checkpoints(cur, pass_id).items() if name in wanted}
        conn.commit()
    finally:
        conn.close()
    return checkpoints
