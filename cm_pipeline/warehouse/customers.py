"""chartmogul.customers: the one module that writes the table, and the reads the pipeline makes of it.

Two writers feed the table, both through the mapping of mapping.py (Python types, SQL derives the rest):
- the extraction's publish (`upsert_staged`, `mark_deleted`), inside the publish transaction;
- the push's write-back of what the API answered (`write_entries`, `write_attributes`).
Both record in cm_pipeline.customer_versions when the answer a row holds arrived, and the later answer
wins: a page fetched before a write-back never reverts it (publish.py skips such staged entries).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from psycopg2.extras import execute_values
from sqlalchemy.engine import Engine

from cm_pipeline.warehouse.connection import raw_connection
from cm_pipeline.warehouse.mapping import (
    TYPED_COLUMNS,
    FieldProblem,
    mapped_columns_sql,
    prepare_written,
    text_md5,
)
from cm_pipeline.warehouse.schema import CUSTOMER_DATA_COLUMNS, CUSTOMERS_TABLE, STAGING_TABLE, VERSIONS_TABLE
from cm_pipeline.warehouse.staging import FETCH_CLOCK

_DATA_COLS = ", ".join(CUSTOMER_DATA_COLUMNS)
_UPDATABLE = [c for c in CUSTOMER_DATA_COLUMNS if c != "uuid"]
_UPSERT = (
    f"INSERT INTO {CUSTOMERS_TABLE} AS c ({_DATA_COLS}, first_seen_at, synced_at, deleted_at)"
    " SELECT {columns}, now(), now(), NULL FROM {source}"
    f" ON CONFLICT (uuid) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in _UPDATABLE)},"
    " synced_at = now(), deleted_at = NULL"
)


def staged_row(candidate: str) -> str:
    """The staged row of the candidate row `candidate`, looked up by fetch_seq: for `CROSS JOIN LATERAL`,
    so that a batch's joins are driven by its candidates whatever the planner estimates (fenced by
    OFFSET 0; as a plain join it scanned the whole of staging for every batch)."""
    return f"SELECT * FROM {STAGING_TABLE} s WHERE s.fetch_seq = {candidate}.fetch_seq OFFSET 0"


def differs_sql(new: str, every_column: bool) -> str:
    """SQL true when the row `new` differs from the published row `c`: by raw (every other column is
    derived from it), or, with `every_column`, by any mapped column (a row edited outside cm_pipeline, a
    mapping change or a full refresh: its raw may be right while a derived column is not)."""
    if every_column:
        return " OR ".join(f"c.{col} IS DISTINCT FROM {new}.{col}" for col in _UPDATABLE)
    return f"c.raw IS DISTINCT FROM {new}.raw"


def upsert_staged(cur, candidates_table: str) -> tuple[int, int, int]:
    """Publish the staged rows listed in `candidates_table` (fetch_seq, full_compare, was_deleted, typed
    values of entries staged unmapped): insert new customers, update changed or deleted ones (compared by
    raw, or by every column where full_compare), leave the rest untouched (not even locked).
    (inserted, updated, undeleted)."""
    # An entry staged unmapped (not s.prepared) was mapped by the publish into the candidates table.
    typed = ", ".join(f"CASE WHEN s.prepared THEN s.{c} ELSE k.{c} END AS {c}" for c in TYPED_COLUMNS)
    differs = f"CASE WHEN m.full_compare THEN {differs_sql('m', True)} ELSE {differs_sql('m', False)} END"
    changed = (
        f"SELECT m.* FROM mapped m LEFT JOIN {CUSTOMERS_TABLE} c ON c.uuid = m.uuid"
        f" WHERE c.uuid IS NULL OR c.deleted_at IS NOT NULL OR {differs}"
    )
    upsert = _UPSERT.format(columns=_DATA_COLS, source="changed")
    cur.execute(
        # OFFSET 0 fences the subquery: the planner can't join staging to customers first and parse rows
        # that are not candidates. was_deleted (flagged when the candidates were chosen): the upsert always
        # rewrites a row flagged deleted, so those are the customers it brings back; counted from the
        # candidates, so that `changed` is read once and never materialized (~10% of a first load's upsert).
        f"WITH staged AS (SELECT s.uuid, {typed}, coalesce(s.raw_json, s.raw::jsonb) AS raw, k.full_compare"
        f" FROM {candidates_table} k"
        f" CROSS JOIN LATERAL ({staged_row('k')}) s OFFSET 0),"
        f" mapped AS (SELECT {mapped_columns_sql('l')}, l.full_compare FROM staged l),"
        f" changed AS ({changed}),"
        f" up AS ({upsert} WHERE c.deleted_at IS NOT NULL OR {differs_sql('EXCLUDED', True)}"
        " RETURNING (xmax = 0) AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),"
        f" (SELECT count(*) FROM {candidates_table} WHERE was_deleted) FROM up"
    )
    return cur.fetchone()


def mark_deleted(cur, uuids: Sequence[str], pass_id: int) -> int:
    """Set deleted_at on live customers among `uuids` that the pass did not stage; how many. Their new row
    versions are recorded as cm_pipeline's own writes."""
    if not uuids:
        return 0
    cur.execute(
        f"WITH gone AS (UPDATE {CUSTOMERS_TABLE} c SET deleted_at = now(), synced_at = now()"
        " WHERE c.uuid = ANY(%s) AND c.deleted_at IS NULL"
        f" AND NOT EXISTS (SELECT 1 FROM {STAGING_TABLE} s WHERE s.pass_id = %s AND s.uuid = c.uuid)"
        " RETURNING c.uuid, c.xmin),"
        f" versions AS (UPDATE {VERSIONS_TABLE} v SET row_xmin = gone.xmin FROM gone WHERE v.uuid = gone.uuid)"
        " SELECT count(*) FROM gone",
        (list(uuids), pass_id),
    )
    return cur.fetchone()[0]


def totals(cur) -> tuple[int, int, int]:
    """(rows, live rows, total MRR in cents of the live rows)."""
    cur.execute(
        "SELECT count(*), count(*) FILTER (WHERE deleted_at IS NULL),"
        f" coalesce(sum(mrr) FILTER (WHERE deleted_at IS NULL), 0) FROM {CUSTOMERS_TABLE}"
    )
    rows, live, mrr = cur.fetchone()
    return rows, live, int(mrr)


def write_entries(
    engine: Engine, entries: Sequence[Any], fetched_ns: int | None = None
) -> list[FieldProblem]:
    """Store full customer entries the API answered (PATCH, create, GET) as rows; the field problems met.

    Each entry is mapped exactly as the publish maps it. `fetched_ns`: when the answer arrived
    (staging.FETCH_CLOCK, taken as it arrived; default now). Latest wins: a row already written from a later answer is left as it
    is. An entry without a usable uuid raises RowRejected.
    """
    fetched = fetched_ns if fetched_ns is not None else FETCH_CLOCK.reserve(1)
    prepared = {p.uuid: p for p in map(prepare_written, entries)}  # the last answer for a uuid counts
    if not prepared:
        return []
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            _lock_rows(cur, list(prepared))
            cur.execute(
                f"SELECT uuid FROM {VERSIONS_TABLE} WHERE uuid = ANY(%s) AND fetched_seq > %s FOR UPDATE",
                (list(prepared), fetched),
            )
            newer = {r[0] for r in cur.fetchall()}
            rows = [(p.uuid, *p.typed, p.raw) for p in prepared.values() if p.uuid not in newer]
            if rows:
                written = execute_values(cur, _WRITE_SQL, rows, template=_WRITE_TEMPLATE, fetch=True)
                _remember_versions(cur, [(u, fetched, text_md5(prepared[u].raw), x) for u, x in written])
        conn.commit()
    finally:
        conn.close()
    return [problem for p in prepared.values() for problem in p.problems]


def _lock_rows(cur, uuids: list[str]) -> None:
    """Lock the rows a write-back is about to write, in uuid order, before it reads their versions: when
    an extraction's open publish transaction rewrote one, this waits for its commit, so the versions read
    next include what it wrote (latest wins either way) and two writers never lock in opposite orders."""
    cur.execute(f"SELECT 1 FROM {CUSTOMERS_TABLE} WHERE uuid = ANY(%s) ORDER BY uuid FOR UPDATE", (uuids,))


def _remember_versions(cur, versions: list[tuple[str, int, str, str]]) -> None:
    """Record (uuid, fetched_seq, raw_md5, row_xmin) for rows just written."""
    execute_values(
        cur,
        f"INSERT INTO {VERSIONS_TABLE} (uuid, fetched_seq, raw_md5, row_xmin) VALUES %s ON CONFLICT (uuid)"
        " DO UPDATE SET fetched_seq = EXCLUDED.fetched_seq, raw_md5 = EXCLUDED.raw_md5, row_xmin = EXCLUDED.row_xmin",
        versions,
        template="(%s, %s, %s, %s::xid)",
    )


_WRITE_SQL = (
    _UPSERT.format(
        columns=mapped_columns_sql("l"),
        source=f"(VALUES %s) AS l({', '.join(('uuid', *TYPED_COLUMNS, 'raw'))})",
    )
    + " RETURNING c.uuid, c.xmin::text"
)
_WRITE_TEMPLATE = (
    "(%s, %s::bigint, %s::bigint, %s::bigint, %s::timestamptz, %s::timestamptz, %s::timestamptz, %s::jsonb)"
)


def write_attributes(engine: Engine, entry: dict, fetched_ns: int | None = None) -> None:
    """Store tags and custom attributes from a partial entry (add-by-email answer) into its row, unless
    the row was written from a later answer. Its staged text is unknown, so the next pass compares it."""
    attributes = entry.get("attributes") if isinstance(entry, dict) else None
    if not isinstance(attributes, dict) or not entry.get("uuid"):
        return
    fetched = fetched_ns if fetched_ns is not None else FETCH_CLOCK.reserve(1)
    tags, custom = attributes.get("tags"), attributes.get("custom")
    params = {
        "uuid": entry["uuid"],
        "tags": json.dumps(tags) if isinstance(tags, list) else None,
        "custom": json.dumps(custom) if isinstance(custom, dict) else None,
        "attrs": json.dumps(attributes, default=str),
        "fetched": fetched,
    }
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            _lock_rows(cur, [entry["uuid"]])
            cur.execute(
                f"UPDATE {CUSTOMERS_TABLE} c SET tags = coalesce(%(tags)s::jsonb, tags),"
                " custom_attributes = coalesce(%(custom)s::jsonb, custom_attributes),"
                " raw = jsonb_set(raw, '{attributes}', coalesce(raw->'attributes', '{}'::jsonb) || %(attrs)s::jsonb),"
                f" synced_at = now() WHERE uuid = %(uuid)s AND NOT EXISTS (SELECT 1 FROM {VERSIONS_TABLE} v"
                " WHERE v.uuid = c.uuid AND v.fetched_seq > %(fetched)s) RETURNING c.uuid, c.xmin::text",
                params,
            )
            written = cur.fetchall()
            if written:
                _remember_versions(cur, [(u, fetched, "", x) for u, x in written])
        conn.commit()
    finally:
        conn.close()


# ---- reads ----------------------------------------------------------------------------------------


def _rows(engine: Engine, sql: str, params: dict) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def customers_state(engine: Engine, uuids: Sequence[str]) -> dict[str, dict]:
    """uuid -> {tags, custom_attributes, email} of live rows."""
    if not uuids:
        return {}
    sql = f"SELECT uuid, tags, custom_attributes, email FROM {CUSTOMERS_TABLE} WHERE uuid = ANY(:u) AND deleted_at IS NULL"
    return {
        r[0]: {"tags": r[1] or [], "custom_attributes": r[2] or {}, "email": r[3]}
        for r in _rows(engine, sql, {"u": list(uuids)})
    }


def email_counts(engine: Engine, emails: Sequence[str]) -> dict[str, int]:
    """lower(email) -> number of live customers with it."""
    if not emails:
        return {}
    sql = f"SELECT lower(email), count(*) FROM {CUSTOMERS_TABLE} WHERE lower(email) = ANY(:e) AND deleted_at IS NULL GROUP BY 1"
    return {r[0]: int(r[1]) for r in _rows(engine, sql, {"e": [e.lower() for e in emails]})}


def customers_by_email(engine: Engine, emails: Sequence[str]) -> dict[str, list[dict]]:
    """lower(email) -> [{uuid, custom_attributes}] of live customers."""
    if not emails:
        return {}
    sql = f"SELECT lower(email), uuid, custom_attributes FROM {CUSTOMERS_TABLE} WHERE lower(email) = ANY(:e) AND deleted_at IS NULL"
    out: dict[str, list[dict]] = {}
    for r in _rows(engine, sql, {"e": [e.lower() for e in emails]}):
        out.setdefault(r[0], []).append({"uuid": r[1], "custom_attributes": r[2] or {}})
    return out


def existing_external_ids(engine: Engine, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(data_source_uuid, external_id) -> uuid for pairs already in the warehouse (merged ids included)."""
    if not pairs:
        return {}
    sql = f"""
        SELECT p.ds, p.ext, c.uuid
        FROM unnest(CAST(:ds AS text[]), CAST(:ext AS text[])) AS p(ds, ext)
        JOIN {CUSTOMERS_TABLE} c
          ON c.deleted_at IS NULL
         AND (c.data_source_uuid = p.ds OR coalesce(c.data_source_uuids, '[]'::jsonb) ? p.ds)
         AND (c.external_id = p.ext OR coalesce(c.external_ids, '[]'::jsonb) ? p.ext)
    """
    rows = _rows(engine, sql, {"ds": [p[0] for p in pairs], "ext": [p[1] for p in pairs]})
    return {(r[0], r[1]): r[2] for r in rows}


def live_counts_by_status_and_source(engine: Engine, system: str | None = None) -> list[tuple[str, str, int]]:
    """(status, data source, live customers whose primary source it is) for every status and every data
    source a live customer names (merged sources count 0); [] before the table exists."""
    where = " AND c.billing_system_type = :system" if system else ""
    live = f"FROM {CUSTOMERS_TABLE} c WHERE c.deleted_at IS NULL AND c.status IS NOT NULL{where}"
    # Each customer counts 1 for its primary source and 0 for every other source it names: one pass over
    # the rows with no per-row subquery (a lateral UNION per row took 2.5 x as long).
    names = "CASE WHEN jsonb_typeof(c.data_source_uuids) = 'array' THEN c.data_source_uuids ELSE '[]' END"
    sql = (
        f"SELECT status, ds, sum(n)::bigint FROM (SELECT c.status, c.data_source_uuid AS ds, 1 AS n {live}"
        f" UNION ALL SELECT c.status, jsonb_array_elements_text({names}), 0 {live}) x"
        " WHERE ds IS NOT NULL GROUP BY 1, 2"
    )
    with engine.connect() as conn:
        if conn.execute(sa.text("SELECT to_regclass(:t) IS NULL"), {"t": CUSTOMERS_TABLE}).scalar():
            return []
        return [tuple(r) for r in conn.execute(sa.text(sql), {"system": system})]


def unseen_live_customers(engine: Engine, pass_id: int, filters: dict, limit: int) -> list[str]:
    """Live uuids the pass did not stage, within the pass's filters (at most `limit`): deletion candidates."""
    clauses, params = [], {"pass_id": pass_id, "limit": limit}
    if filters.get("data_source_uuid"):
        # Broad on purpose: verifying a customer outside the filter only costs a GET, never a false delete.
        clauses.append("(c.data_source_uuid = :ds OR coalesce(c.data_source_uuids, '[]'::jsonb) ? :ds)")
        params["ds"] = filters["data_source_uuid"]
    if filters.get("system"):
        clauses.append("c.billing_system_type = :system")
        params["system"] = filters["system"]
    where = "".join(f" AND {c}" for c in clauses)
    sql = (
        f"SELECT c.uuid FROM {CUSTOMERS_TABLE} c WHERE c.deleted_at IS NULL{where}"
        f" AND NOT EXISTS (SELECT 1 FROM {STAGING_TABLE} s WHERE s.pass_id = :pass_id AND s.uuid = c.uuid)"
        " ORDER BY c.uuid LIMIT :limit"
    )
    return [r[0] for r in _rows(engine, sql, params)]


# ---- reads for the push: what the account has now, and when the rows a decision depended on changed ----


def live_attribute_keys(engine: Engine) -> set[str]:
    """Every custom attribute key a live customer holds: keys the account has now (deleted rows count
    for nothing: their keys may be gone from the account with them)."""
    sql = (
        f"SELECT DISTINCT jsonb_object_keys(custom_attributes) FROM {CUSTOMERS_TABLE}"
        " WHERE deleted_at IS NULL AND jsonb_typeof(custom_attributes) = 'object'"
    )
    return {r[0] for r in _rows(engine, sql, {})}


def last_changed_by_customer(engine: Engine, uuids: Sequence[str]) -> dict[str, Any]:
    """uuid -> the latest synced_at of its row and of every row (deleted ones too) sharing its email."""
    if not uuids:
        return {}
    sql = (
        f"SELECT t.uuid, max(c.synced_at) FROM {CUSTOMERS_TABLE} t JOIN {CUSTOMERS_TABLE} c"
        " ON c.uuid = t.uuid OR (t.email IS NOT NULL AND t.email <> '' AND lower(c.email) = lower(t.email))"
        " WHERE t.uuid = ANY(:u) GROUP BY t.uuid"
    )
    return {r[0]: r[1] for r in _rows(engine, sql, {"u": list(uuids)})}


def last_changed_by_email(engine: Engine, emails: Sequence[str]) -> dict[str, Any]:
    """lower(email) -> the latest synced_at of any row (deleted ones too) with that email."""
    if not emails:
        return {}
    sql = (
        f"SELECT lower(email), max(synced_at) FROM {CUSTOMERS_TABLE} WHERE lower(email) = ANY(:e) GROUP BY 1"
    )
    return {r[0]: r[1] for r in _rows(engine, sql, {"e": [e.lower() for e in emails]})}
