"""Part 2's floors: one cursor of bare `requests` paging and JSON parsing, and what each page is written to.

- FLOOR: nothing (paging and parsing only).
- FLOOR+COPY: one COPY per page (uuid, raw jsonb) into an unindexed scratch table.
- FLOOR+LOAD: the same table a first load writes, the same way row for row: each entry validated by the
  product's `prepare_entry`, one COPY per page into a temporary table, and one INSERT of the mapped columns
  (`mapped_columns_sql`) into an empty chartmogul.customers with its indexes; a commit per page, without
  waiting for its WAL flush. What it leaves out is what the pipeline adds: a resumable staging copy,
  checkpoints, customer versions, a parallel walk and one transaction readers never see half of.
"""

from __future__ import annotations

import io
import time

import orjson
import requests
from sqlalchemy.engine import Engine

from cm_pipeline.warehouse.connection import raw_connection
from cm_pipeline.warehouse.copytext import copy_field, typed_copy_text
from cm_pipeline.warehouse.mapping import mapped_columns_sql, prepare_entry
from cm_pipeline.warehouse.schema import (
    CUSTOMER_DATA_COLUMNS,
    CUSTOMERS_TABLE,
    STAGING_TYPED_COLUMNS,
    ensure_schema,
)


class _Sink:
    """Where a floor writes its pages, over a connection of its own."""

    conn = None

    def close(self) -> None:
        self.conn.close()


class _CopySink(_Sink):
    """FLOOR+COPY: (uuid, raw jsonb) of each page into an unindexed scratch table."""

    def __init__(self, engine: Engine):
        self.conn = raw_connection(engine)
        with self.conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS scratch (uuid text, raw jsonb)")
            cur.execute("TRUNCATE scratch")
        self.conn.commit()

    def page(self, entries: list[dict]) -> None:
        text = "".join(
            e["uuid"] + "\t" + orjson.dumps(e).decode().replace("\\", "\\\\") + "\n" for e in entries
        )
        with self.conn.cursor() as cur:
            cur.copy_expert("COPY scratch (uuid, raw) FROM STDIN", io.BytesIO(text.encode()))
        self.conn.commit()


_PAGE = "floor_page"  # temporary: one page's validated entries, emptied at each commit
_LOAD = (
    f"INSERT INTO {CUSTOMERS_TABLE} ({', '.join(CUSTOMER_DATA_COLUMNS)}, first_seen_at, synced_at)"
    f" SELECT {mapped_columns_sql('s')}, now(), now() FROM {_PAGE} s"
)


class _LoadSink(_Sink):
    """FLOOR+LOAD: each page validated, mapped and inserted into an empty chartmogul.customers."""

    def __init__(self, engine: Engine):
        ensure_schema(engine)
        self.conn = raw_connection(engine)
        typed = "".join(f", {name} {ddl}" for name, ddl in STAGING_TYPED_COLUMNS)
        with self.conn.cursor() as cur:
            cur.execute(f"TRUNCATE {CUSTOMERS_TABLE}")
            cur.execute("SET synchronous_commit = off")
            cur.execute(f"CREATE TEMPORARY TABLE {_PAGE} (uuid text{typed}, raw jsonb) ON COMMIT DELETE ROWS")
        self.conn.commit()

    def page(self, entries: list[dict]) -> None:
        lines = []
        for entry in entries:
            p = prepare_entry(entry, thorough=False)
            raw = p.raw.replace("\\", "\\\\")  # JSON text has no raw tab/newline; double backslashes
            lines.append(f"{copy_field(p.uuid)}\t{typed_copy_text(p.typed)}\t{raw}\n")
        with self.conn.cursor() as cur:
            cur.copy_expert(f"COPY {_PAGE} FROM STDIN", io.BytesIO("".join(lines).encode("utf-8")))
            cur.execute(_LOAD)
        self.conn.commit()


SINKS = {"copy": _CopySink, "load": _LoadSink}


def floor(base_url: str, key: str, per_page: int, engine: Engine | None = None, sink: str = "copy") -> float:
    """Seconds for one cursor with bare requests + orjson (the client's parser); with `engine`, each page
    also goes to the `sink` ("copy" or "load", see the module) on that database."""
    session = requests.Session()
    session.auth = (key, "")
    writer = SINKS[sink](engine) if engine is not None else None
    started = time.perf_counter()
    cursor = None
    while True:
        params = {"per_page": per_page, **({"cursor": cursor} if cursor else {})}
        body = orjson.loads(session.get(f"{base_url}/customers", params=params, timeout=60).content)
        if writer is not None:
            writer.page(body["entries"])
        if not body.get("has_more"):
            break
        cursor = body["cursor"]
    elapsed = time.perf_counter() - started
    session.close()
    if writer is not None:
        writer.close()
    return elapsed
