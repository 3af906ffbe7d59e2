"""Staging: each page of customers goes into the staging table with one COPY, in the same transaction as
its partition's checkpoint, so a checkpoint is never ahead of or behind its data.

Fetch order: every staged row carries the moment its HTTP response arrived (`FETCH_CLOCK`), not the moment
its page was written: with many workers a page fetched earlier may be written later.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg2
from sqlalchemy.engine import Engine

from cm_pipeline.warehouse.connection import raw_connection
from cm_pipeline.warehouse.mapping import FieldProblem, RowRejected, copy_field, prepare_entry, text_md5
from cm_pipeline.warehouse.schema import (
    CHECKPOINTS_TABLE,
    PASSES_TABLE,
    REJECTS_TABLE,
    STAGING_COLUMN_NAMES,
    STAGING_TABLE,
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
            digest = text_md5(prepared.raw)
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
