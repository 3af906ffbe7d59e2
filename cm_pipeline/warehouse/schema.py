"""Every table cm_pipeline owns in the warehouse, and the one function that creates them.

Data lives in schema `chartmogul` (`chartmogul.customers`, what dbt and readers use). The pipeline's own
bookkeeping lives in schema `cm_pipeline`: the extraction's passes, checkpoints, staging, hashes and
rejects, its audit tables (`deletion_checks`, `publish_log`), and the push's plan and log.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import Engine

from cm_pipeline.warehouse.connection import raw_connection

DATA_SCHEMA = "chartmogul"
BOOKKEEPING_SCHEMA = "cm_pipeline"
CUSTOMERS_TABLE = f"{DATA_SCHEMA}.customers"

# Column order matters: it is the order the write-back and publish list them in.
CUSTOMER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("uuid", "text NOT NULL PRIMARY KEY"),
    ("id", "bigint"),
    ("external_id", "text"),
    ("external_ids", "jsonb"),
    ("data_source_uuid", "text"),
    ("data_source_uuids", "jsonb"),
    ("name", "text"),
    ("email", "text"),
    ("company", "text"),
    ("status", "text"),
    ("customer_since", "timestamptz"),
    ("lead_created_at", "timestamptz"),
    ("free_trial_started_at", "timestamptz"),
    ("country", "text"),
    ("state", "text"),
    ("city", "text"),
    ("zip", "text"),
    ("address", "jsonb"),
    ("tags", "jsonb"),
    ("custom_attributes", "jsonb"),
    ("stripe", "jsonb"),
    ("mrr", "bigint"),
    ("arr", "bigint"),
    ("currency", "text"),
    ("currency_sign", "text"),
    ("billing_system_type", "text"),
    ("billing_system_url", "text"),
    ("chartmogul_url", "text"),
    ("owner", "text"),
    ("website_url", "text"),
    ("raw", "jsonb NOT NULL"),
    ("first_seen_at", "timestamptz NOT NULL DEFAULT now()"),
    ("synced_at", "timestamptz NOT NULL DEFAULT now()"),
    ("deleted_at", "timestamptz"),
)
CUSTOMER_COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in CUSTOMER_COLUMNS)
# Columns taken from the API entry (everything but the bookkeeping timestamps).
CUSTOMER_DATA_COLUMNS: tuple[str, ...] = tuple(
    name for name in CUSTOMER_COLUMN_NAMES if name not in ("first_seen_at", "synced_at", "deleted_at")
)

# The extraction's bookkeeping. Staging and checkpoints are UNLOGGED (no WAL: the staging write is most of
# a load's I/O); a Postgres crash empties both together, so they stay consistent, and a running pass found
# without checkpoints starts over (passes.open_pass). Everything else is an ordinary table.
PASSES_TABLE = f"{BOOKKEEPING_SCHEMA}.extract_passes"
CHECKPOINTS_TABLE = f"{BOOKKEEPING_SCHEMA}.extract_checkpoints"
STAGING_TABLE = f"{BOOKKEEPING_SCHEMA}.customers_staging"
REJECTS_TABLE = f"{BOOKKEEPING_SCHEMA}.extract_rejects"
# Per customer, what its row was last written from, by either writer (customers.py): the moment that
# answer arrived from ChartMogul (fetched_seq, nanoseconds: latest wins, so a page fetched before a push's
# write-back never overwrites it), the md5 of the entry text (an unchanged entry is not even parsed), and
# the row version then (xmin: a row rewritten since by anything else is compared column by column).
VERSIONS_TABLE = f"{BOOKKEEPING_SCHEMA}.customer_versions"
# Audit tables readers may query: every deletion verification, and every publish.
DELETION_CHECKS_TABLE = f"{BOOKKEEPING_SCHEMA}.deletion_checks"
PUBLISH_LOG_TABLE = f"{BOOKKEEPING_SCHEMA}.publish_log"
# The push's audit log (one row per attempted write and per skip) and the per-run snapshot of a relation.
PUSH_LOG_TABLE = f"{BOOKKEEPING_SCHEMA}.push_log"
PUSH_PLAN_TABLE = f"{BOOKKEEPING_SCHEMA}.push_plan"
# 'pending': a write's intent, logged before it is sent; its outcome replaces it once the answer is in.
# One left behind (a crash, an answer lost for good) is resolved by the next push of its kind.
PUSH_OUTCOMES = ("applied", "unchanged", "rejected", "failed", "dry_run", "pending")

# Staged values Python validated and typed (mapping.prepare_entry); every other column is derived from
# `raw` in SQL. fetch_seq is the entry's FETCH order (staging.FETCH_CLOCK: wall-clock nanoseconds taken
# when the HTTP response arrived, strictly increasing, unique per row). Pages are staged in fetch order
# and the publish applies them in that order (a range of fetch_seq at a time: the index), so the latest
# fetch of a customer is the one its row ends with.
STAGING_TYPED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "bigint"),
    ("mrr", "bigint"),
    ("arr", "bigint"),
    ("customer_since", "timestamptz"),
    ("lead_created_at", "timestamptz"),
    ("free_trial_started_at", "timestamptz"),
)
STAGING_COLUMN_NAMES: tuple[str, ...] = (
    "fetch_seq",
    "pass_id",
    "partition",
    "uuid",
    *(n for n, _ in STAGING_TYPED_COLUMNS),
    "raw",  # the entry's text, when staged unmapped (a refresh's, parsed only if it is written)
    "raw_md5",
    "prepared",  # false: an entry staged unmapped (a refresh's); the publish maps it if it writes it
    "raw_json",  # the entry, when mapped as it was staged (a first load's): parsed by the COPY
)


def _customers_ddl() -> list[str]:
    cols = ",\n    ".join(f"{name} {ddl}" for name, ddl in CUSTOMER_COLUMNS)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {DATA_SCHEMA}",
        f"CREATE TABLE IF NOT EXISTS {CUSTOMERS_TABLE} (\n    {cols}\n)",
        f"CREATE INDEX IF NOT EXISTS customers_email_idx ON {CUSTOMERS_TABLE} (lower(email))",
        f"CREATE INDEX IF NOT EXISTS customers_ds_external_idx ON {CUSTOMERS_TABLE} (data_source_uuid, external_id)",
    ]


def _extract_ddl() -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {PASSES_TABLE} (
    pass_id bigserial PRIMARY KEY,
    filters jsonb NOT NULL,
    per_page integer NOT NULL,
    state text NOT NULL CHECK (state IN ('running', 'published', 'abandoned')),
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    runs integer NOT NULL DEFAULT 1,
    note text
)""",
        f"""CREATE UNLOGGED TABLE IF NOT EXISTS {CHECKPOINTS_TABLE} (
    pass_id bigint NOT NULL REFERENCES {PASSES_TABLE} (pass_id) ON DELETE CASCADE,
    partition text NOT NULL,
    cursor text,
    pages integer NOT NULL DEFAULT 0,
    customers bigint NOT NULL DEFAULT 0,
    done boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pass_id, partition)
)""",
    ]


def _staging_ddl() -> list[str]:
    typed_cols = "".join(f"    {name} {ddl},\n" for name, ddl in STAGING_TYPED_COLUMNS)
    return [
        f"""CREATE UNLOGGED TABLE IF NOT EXISTS {STAGING_TABLE} (
    fetch_seq bigint NOT NULL,
    pass_id bigint NOT NULL,
    partition text NOT NULL,
    uuid text NOT NULL,
{typed_cols}    raw text,
    raw_md5 text NOT NULL,
    prepared boolean NOT NULL DEFAULT true,
    raw_json jsonb
)""",
        # A staging table made before these columns existed (scratch data, so no migration beyond this).
        f"ALTER TABLE {STAGING_TABLE} ADD COLUMN IF NOT EXISTS prepared boolean NOT NULL DEFAULT true",
        f"ALTER TABLE {STAGING_TABLE} ADD COLUMN IF NOT EXISTS raw_json jsonb",
        f"ALTER TABLE {STAGING_TABLE} ALTER COLUMN raw DROP NOT NULL",
        f"CREATE INDEX IF NOT EXISTS customers_staging_fetch_idx ON {STAGING_TABLE} (fetch_seq)",
    ]


def _publish_ddl() -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (
    uuid text PRIMARY KEY,
    fetched_seq bigint NOT NULL,
    raw_md5 text NOT NULL,
    row_xmin xid
)""",
        f"""CREATE TABLE IF NOT EXISTS {REJECTS_TABLE} (
    pass_id bigint NOT NULL,
    partition text NOT NULL,
    uuid text,
    error text NOT NULL,
    entry text NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now()
)""",
        f"""CREATE TABLE IF NOT EXISTS {DELETION_CHECKS_TABLE} (
    uuid text NOT NULL,
    pass_id bigint NOT NULL,
    checked_at timestamptz NOT NULL DEFAULT now(),
    http_status integer,
    outcome text NOT NULL CHECK (outcome IN ('deleted', 'alive', 'error')),
    message text
)""",
        f"CREATE INDEX IF NOT EXISTS deletion_checks_uuid_idx ON {DELETION_CHECKS_TABLE} (uuid, checked_at)",
        f"""CREATE TABLE IF NOT EXISTS {PUBLISH_LOG_TABLE} (
    pass_id bigint PRIMARY KEY,
    published_at timestamptz NOT NULL DEFAULT now(),
    row_count bigint NOT NULL,
    live_count bigint NOT NULL,
    seen integer NOT NULL,
    inserted integer NOT NULL,
    updated integer NOT NULL,
    unchanged integer NOT NULL,
    deleted integer NOT NULL,
    undeleted integer NOT NULL,
    filters jsonb NOT NULL,
    mapping_version text
)""",
    ]


def _push_ddl() -> list[str]:
    outcomes = ", ".join(f"'{o}'" for o in PUSH_OUTCOMES)
    return [
        f"""CREATE TABLE IF NOT EXISTS {PUSH_LOG_TABLE} (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    kind text NOT NULL,
    target text NOT NULL,
    fingerprint text,
    payload jsonb,
    http_status integer,
    outcome text NOT NULL CHECK (outcome IN ({outcomes})),
    error text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
)""",
        f"CREATE INDEX IF NOT EXISTS push_log_target_idx ON {PUSH_LOG_TABLE} (kind, target, fingerprint, id)",
        f"CREATE INDEX IF NOT EXISTS push_log_run_idx ON {PUSH_LOG_TABLE} (run_id)",
        f"CREATE INDEX IF NOT EXISTS push_log_pending_idx ON {PUSH_LOG_TABLE} (kind) WHERE outcome = 'pending'",
        # A push_log made before an outcome was added: widen its CHECK (only when it lacks one).
        f"""DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'push_log_outcome_check'
               AND conrelid = '{PUSH_LOG_TABLE}'::regclass
               AND pg_get_constraintdef(oid) NOT LIKE '%''{PUSH_OUTCOMES[-1]}''%') THEN
        ALTER TABLE {PUSH_LOG_TABLE} DROP CONSTRAINT push_log_outcome_check,
            ADD CONSTRAINT push_log_outcome_check CHECK (outcome IN ({outcomes}));
    END IF;
END $$""",
        f"""CREATE TABLE IF NOT EXISTS {PUSH_PLAN_TABLE} (
    run_id text NOT NULL,
    kind text NOT NULL,
    seq bigint NOT NULL,
    row jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, kind, seq)
)""",
    ]


def ddl() -> list[str]:
    """Every statement that creates cm_pipeline's schemas, tables and indexes if they are missing."""
    return [
        *_customers_ddl(),
        f"CREATE SCHEMA IF NOT EXISTS {BOOKKEEPING_SCHEMA}",
        *_extract_ddl(),
        *_staging_ddl(),
        *_publish_ddl(),
        *_push_ddl(),
    ]


_INDEX = re.compile(r"CREATE (?:UNIQUE )?INDEX IF NOT EXISTS (\w+) ON (\w+)\.")


# Statements whose effect pg_attribute shows: (pattern naming the table and the column, what holds of
# the column's rows there once the statement has run).
_ATTRIBUTE_DONE = (
    (
        re.compile(r"ALTER TABLE (\S+) ADD COLUMN IF NOT EXISTS (\w+)"),
        "count(*) FILTER (WHERE NOT attisdropped) > 0",
    ),
    (
        re.compile(r"ALTER TABLE (\S+) ALTER COLUMN (\w+) DROP NOT NULL"),
        "count(*) FILTER (WHERE attnotnull) = 0",
    ),
)


def _exists_already(cur, statement: str) -> bool:
    """Whether what `statement` adds or changes (an index, a column, a dropped NOT NULL) is there already
    (never asked again: see ensure_schema)."""
    if match := _INDEX.match(statement):
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{match[2]}.{match[1]}",))
        return cur.fetchone()[0]
    for pattern, done in _ATTRIBUTE_DONE:
        if match := pattern.match(statement):
            cur.execute(
                f"SELECT {done} FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s",
                match.groups(),
            )
            return cur.fetchone()[0]
    return False


def ensure_schema(engine: Engine) -> None:
    """Create every table cm_pipeline owns if it is missing (idempotent, safe to run concurrently).

    An index or column that exists is not asked for again: CREATE INDEX and ALTER TABLE ... IF NOT EXISTS
    lock their table before they look, so they would wait for an extraction's open publish transaction.
    """
    conn = raw_connection(engine)
    try:
        with conn.cursor() as cur:
            # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog: serialise them.
            cur.execute("SELECT pg_advisory_xact_lock(17229, 2)")
            for statement in ddl():
                if not _exists_already(cur, statement):
                    cur.execute(statement)
        conn.commit()
    finally:
        conn.close()
