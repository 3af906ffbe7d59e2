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
from cm_pipeline.warehouse.copytext import copy_field, typed_copy_text
from cm_pipeline.warehouse.mapping import (
    FieldProblem,
    RowRejected,
    entry_bytes,
    entry_uuid,
    prepare_entry,
    text_md5,
)
from cm_pipeline.warehouse.schema import (
    CHECKPOINTS_TABLE,
    PASSES_TABLE,
    REJECTS_TABLE,
    STAGING_COLUMN_NAMES,
    STAGING_TABLE,
    STAGING_TYPED_COLUMNS,
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


@dataclass(frozen=True)
class StagedPage:
    """A fetched page for `StagingWriter.write_pages`: its partition, its entries, the cursor after it,
    whether more follow, and the fetch order of its first entry (FETCH_CLOCK, taken as it arrived)."""

    partition: str
    entries: Sequence[Any]
    next_cursor: str | None
    has_more: bool
    fetched: int


_STAGING_COPY = f"COPY {STAGING_TABLE} ({', '.join(STAGING_COLUMN_NAMES)}) FROM STDIN"
_UNMAPPED = b"\t".join([b"\\N"] * len(STAGING_TYPED_COLUMNS))  # typed values of an entry staged unmapped
# (uuid, or None when the entry is rejected; its COPY line in UTF-8, or why it was rejected; the entry)
_Line = tuple[str | None, bytes | str, Any]


class StagingWriter:
    """Loads pages into staging over its own connection: a batch of pages is one COPY, committed with the
    checkpoints of their partitions (a checkpoint is never ahead of or behind its data)."""

    def __init__(self, engine: Engine, pass_id: int, partition: str | None = None):
        self.pass_id = pass_id
        self.partition = partition  # the default partition of write_page, stage_entries and restarts
        self._conn = raw_connection(engine)
        with self._conn.cursor() as cur:
            # Staging and checkpoints are unlogged: a crash empties them whatever the commit mode, so
            # waiting for a WAL flush at every page's commit would buy nothing.
            cur.execute("SET synchronous_commit = off")
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> StagingWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _prepare(
        self,
        partition: str,
        entries: Sequence[Any],
        fetched: int | Sequence[int] | None,
        unmapped: bool = False,
    ) -> tuple[PageOutcome, list[_Line], bytes]:
        """COPY lines for a page's entries and their UTF-8 payload (lone surrogates found here, page by
        page).

        `fetched`: the fetch order of the first entry (the rest follow it), one per entry, or None to
        take it now (only for callers that write what they just fetched). `unmapped`: stage each entry
        whose text needs no cleaning without mapping it (the publish maps those it writes).
        """
        if fetched is None:
            fetched = FETCH_CLOCK.reserve(len(entries))
        if isinstance(fetched, int):
            orders: Sequence[int] = range(fetched, fetched + len(entries))
        else:
            orders = fetched
            if len(orders) != len(entries):
                raise ValueError(f"fetched: {len(orders)} fetch orders for {len(entries)} entries")
        # The partition name comes from the warehouse (split partitions carry data source uuids): escaped.
        prefix = f"\t{self.pass_id}\t{copy_field(partition)}\t"
        outcome = PageOutcome()
        try:
            lines = self._encode(entries, orders, prefix, outcome, False, unmapped)
        except UnicodeEncodeError:  # a lone surrogate: the whole page is mapped thoroughly
            outcome = PageOutcome()
            lines = self._encode(entries, orders, prefix, outcome, True, False)
        return outcome, lines, b"".join([line for uuid, line, _ in lines if uuid is not None])

    def _encode(
        self,
        entries: Iterable[Any],
        orders: Sequence[int],
        prefix: str,
        outcome: PageOutcome,
        thorough: bool,
        unmapped: bool,
    ) -> list[_Line]:
        lines = []
        head = prefix.encode("utf-8")
        for entry, order in zip(entries, orders, strict=True):
            try:
                if unmapped:  # as UTF-8 bytes throughout: a refresh stages every entry this way
                    uuid = entry_uuid(entry)
                    if (data := entry_bytes(entry)) is not None:
                        raw = data.replace(b"\\", b"\\\\")  # JSON has no raw tab/newline; double backslashes
                        key = copy_field(uuid).encode("utf-8")
                        digest = text_md5(data).encode("ascii")
                        line = b"%d%b%b\t%b\t%b\t%b\tf\t\\N\n" % (order, head, key, _UNMAPPED, raw, digest)
                        lines.append((uuid, line, entry))
                        continue
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
            typed = typed_copy_text(prepared.typed)
            # md5 of the text as staged (a lone surrogate, found when the page is encoded, makes the page
            # prepared again thoroughly: surrogatepass only keeps this line from failing first).
            digest = text_md5(prepared.raw)
            raw = prepared.raw.replace("\\", "\\\\")  # JSON text has no raw tab/newline; double backslashes
            # Into raw_json: parsed by this COPY, off the publish's one connection (raw is NULL).
            line = f"{order}{prefix}{copy_field(prepared.uuid)}\t{typed}\t\\N\t{digest}\tt\t{raw}\n"
            lines.append((prepared.uuid, line.encode("utf-8"), entry))  # a lone surrogate raises here
        return lines

    def write_page(
        self,
        entries: Sequence[Any],
        next_cursor: str | None,
        has_more: bool,
        fetched: int | None = None,
    ) -> PageOutcome:
        """Stage a page of this writer's partition and move its checkpoint past it, atomically.

        `fetched`: `FETCH_CLOCK.reserve(len(entries))` taken when the page's response arrived (default:
        now, which is only right when nothing else writes pages fetched meanwhile).
        """
        if fetched is None:
            fetched = FETCH_CLOCK.reserve(len(entries))
        page = StagedPage(self._own_partition(), entries, next_cursor, has_more, fetched)
        return self.write_pages([page])[0]

    def write_pages(self, pages: Sequence[StagedPage], *, unmapped: bool = False) -> list[PageOutcome]:
        """Stage pages (of any partitions, in the order given) with one COPY and move each partition's
        checkpoint past its last page, in one transaction; one outcome per page. `unmapped`: stage the
        entries without mapping them (a refresh: most are unchanged, and the publish maps only the entries
        it has to write, reporting their field problems then)."""
        try:
            with self._conn.cursor() as cur:
                batch = [
                    (p.partition, *self._prepare(p.partition, p.entries, p.fetched, unmapped)) for p in pages
                ]
                self._copy(cur, batch)
                self._advance_checkpoints(cur, pages, [outcome for _, outcome, _, _ in batch])
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise
        return [outcome for _, outcome, _, _ in batch]

    def _advance_checkpoints(self, cur, pages: Sequence[StagedPage], outcomes: list[PageOutcome]) -> None:
        """Each partition's checkpoint moves past its last page of the batch (a done one stays done)."""
        moved: dict[str, tuple[str | None, int, int, bool]] = {}
        for page, outcome in zip(pages, outcomes, strict=True):
            _, count, staged, _ = moved.get(page.partition, (None, 0, 0, False))
            moved[page.partition] = (page.next_cursor, count + 1, staged + outcome.staged, not page.has_more)
        for partition, (cursor, count, staged, finished) in moved.items():
            cur.execute(
                f"UPDATE {CHECKPOINTS_TABLE} SET cursor = %s, pages = pages + %s, customers = customers + %s,"
                " done = done OR %s, updated_at = now() WHERE pass_id = %s AND partition = %s",
                (cursor, count, staged, finished, self.pass_id, partition),
            )
            if cur.rowcount != 1:
                raise RuntimeError(f"checkpoint for pass {self.pass_id} partition {partition!r} is missing")

    def stage_entries(self, entries: Sequence[Any], fetched: Sequence[int] | None = None) -> PageOutcome:
        """Stage entries with no checkpoint (e.g. customers re-fetched while verifying deletions).

        `fetched`: each entry's fetch order, taken when its response arrived (default: now).
        """
        partition = self._own_partition()
        outcome, lines, payload = self._prepare(partition, entries, fetched)
        try:
            with self._conn.cursor() as cur:
                self._copy(cur, [(partition, outcome, lines, payload)])
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise
        return outcome

    def _own_partition(self) -> str:
        if self.partition is None:
            raise ValueError("partition: this StagingWriter was made for pages of several partitions")
        return self.partition

    def restart_partition(self, partition: str | None = None) -> None:
        """Forget a partition's staged rows and checkpoint (its saved cursor was refused)."""
        partition = partition or self._own_partition()
        with self._conn.cursor() as cur:
            cur.execute(
                f"DELETE FROM {STAGING_TABLE} WHERE pass_id = %s AND partition = %s",
                (self.pass_id, partition),
            )
            cur.execute(
                f"UPDATE {CHECKPOINTS_TABLE} SET cursor = NULL, pages = 0, customers = 0, done = false,"
                " updated_at = now() WHERE pass_id = %s AND partition = %s",
                (self.pass_id, partition),
            )
        self._conn.commit()

    def _copy(self, cur, batch: list[tuple[str, PageOutcome, list[_Line], bytes]]) -> None:
        """COPY the good lines of every page at once, counting them staged; a value Postgres refuses
        sends the batch row by row, and the refused rows are rejected. Rejected entries are recorded."""
        good = [
            (p, o, uuid, line, e) for p, o, lines, _ in batch for uuid, line, e in lines if uuid is not None
        ]
        if good:
            cur.execute("SAVEPOINT page")
            try:
                cur.copy_expert(_STAGING_COPY, io.BytesIO(b"".join([payload for *_, payload in batch])))
                for _, outcome, _, _, _ in good:
                    outcome.staged += 1
            except psycopg2.DataError:
                # One value Postgres refuses must not sink the page: retry row by row, keep the rest.
                cur.execute("ROLLBACK TO SAVEPOINT page")
                for partition, outcome, uuid, line, entry in good:
                    cur.execute("SAVEPOINT row")
                    try:
                        cur.copy_expert(_STAGING_COPY, io.BytesIO(line))
                        outcome.staged += 1
                    except psycopg2.DataError as exc:
                        cur.execute("ROLLBACK TO SAVEPOINT row")
                        message = (exc.pgerror or str(exc)).strip().splitlines()[0]
                        outcome.rejected.append(f"customer {uuid}: Postgres refused the row: {message}")
                        self._reject(cur, partition, uuid, message, entry)
        for partition, _, lines, _ in batch:
            for uuid, message, entry in lines:
                if uuid is None:
                    self._reject(cur, partition, None, message, entry)

    def _reject(self, cur, partition: str, uuid: str | None, error: str, entry: Any) -> None:
        cur.execute(
            f"INSERT INTO {REJECTS_TABLE} (pass_id, partition, uuid, error, entry) VALUES (%s, %s, %s, %s, %s)",
            (self.pass_id, partition, uuid, error, json.dumps(entry, ensure_ascii=True, default=repr)),
        )


def clear_staging(engine: Engine, pass_id: int) -> None:
    """Drop a published pass's staged rows, unless another session still reads staging (then the next
    pass's start empties it): freeing space early is never worth waiting for."""
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '200ms'")
            cur.execute(f"SELECT 1 FROM {PASSES_TABLE} WHERE state = 'running'")
            try:
                if cur.fetchone() is None:
                    cur.execute(f"TRUNCATE {STAGING_TABLE}")
                else:
                    cur.execute(f"DELETE FROM {STAGING_TABLE} WHERE pass_id = %s", (pass_id,))
            except psycopg2.errors.LockNotAvailable:
                conn.rollback()
                return
        conn.commit()
    finally:
        conn.close()
