"""Part 2's floors: one cursor of bare `requests` paging and JSON parsing, optionally with one COPY per page
(uuid, raw jsonb) into an unindexed scratch table. What an extraction is measured against."""

from __future__ import annotations

import io
import time

import orjson
import requests

from cm_pipeline.warehouse.connection import raw_connection


def floor(base_url: str, key: str, per_page: int, copy_engine=None) -> float:
    """One cursor with bare requests + orjson (the client's parser); with copy_engine, one COPY per page too."""
    session = requests.Session()
    session.auth = (key, "")
    conn = None
    if copy_engine is not None:
        conn = raw_connection(copy_engine)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS scratch (uuid text, raw jsonb)")
            cur.execute("TRUNCATE scratch")
        conn.commit()
    started = time.perf_counter()
    cursor = None
    while True:
        params = {"per_page": per_page, **({"cursor": cursor} if cursor else {})}
        body = orjson.loads(session.get(f"{base_url}/customers", params=params, timeout=60).content)
        if conn is not None:
            text = "".join(
                e["uuid"] + "\t" + orjson.dumps(e).decode().replace("\\", "\\\\") + "\n"
                for e in body["entries"]
            )
            with conn.cursor() as cur:
                cur.copy_expert("COPY scratch (uuid, raw) FROM STDIN", io.BytesIO(text.encode()))
            conn.commit()
        if not body.get("has_more"):
            break
        cursor = body["cursor"]
    elapsed = time.perf_counter() - started
    session.close()
    if conn is not None:
        conn.close()
    return elapsed
