"""DDL for the tables cm_pipeline owns in the warehouse."""

from __future__ import annotations

SCHEMA = "chartmogul"
CUSTOMERS_TABLE = f"{SCHEMA}.customers"

# Column order matters: it is the order the loader COPYs in.
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


def customers_ddl() -> list[str]:
    """Statements that create the schema and the customers table if they are missing."""
    cols = ",\n    ".join(f"{name} {ddl}" for name, ddl in CUSTOMER_COLUMNS)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
        f"CREATE TABLE IF NOT EXISTS {CUSTOMERS_TABLE} (\n    {cols}\n)",
        f"CREATE INDEX IF NOT EXISTS customers_email_idx ON {CUSTOMERS_TABLE} (lower(email))",
        f"CREATE INDEX IF NOT EXISTS customers_ds_external_idx ON {CUSTOMERS_TABLE} (data_source_uuid, external_id)",
    ]


# ---- Extraction bookkeeping (owned by the loader; no reader outside cm_pipeline should depend on these) --

STAGING_TABLE = f"{SCHEMA}._customers_staging"
# The sequence that numbered staged rows when fetch_seq was taken at write time (dropped by ensure_tables).
OLD_STAGING_SEQUENCE = f"{SCHEMA}._customers_staging_fetch_seq"
PASSES_TABLE = f"{SCHEMA}._extract_passes"
CHECKPOINTS_TABLE = f"{SCHEMA}._extract_checkpoints"
REJECTS_TABLE = f"{SCHEMA}._extract_rejects"
# For each published customer: the md5 of the entry text it was last published from, and the xmin of the
# customers row it was checked against (a row anything else rewrote since, e.g. a reverse-ETL write-back,
# is compared again). A cache: a missing or different row only means the entry is parsed and compared.
HASHES_TABLE = f"{SCHEMA}._customer_hashes"
# Audit tables readers may query: every deletion verification, and every publish.
DELETION_CHECKS_TABLE = f"{SCHEMA}.deletion_checks"
PUBLISH_LOG_TABLE = f"{SCHEMA}.publish_log"

# The staging table: where/when each entry came from, its uuid, the values Python validated, and raw as
# TEXT (the JSON text prepare_entry built) with its md5: publish parses only new or changed entries.
# fetch_seq is the entry's FETCH order (loader.FetchClock: wall-clock nanoseconds taken when the HTTP
# response arrived, strictly increasing, unique per row), staged by the COPY: publish keeps each uuid's
# latest fetch, whichever worker wrote its page first.
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
    "raw",
    "raw_md5",
)
# (column, Postgres type name) of the whole staging table: a table of another shape is from an older layout.
STAGING_LAYOUT: tuple[tuple[str, str], ...] = (
    ("fetch_seq", "int8"),
    ("pass_id", "int8"),
    ("partition", "text"),
    ("uuid", "text"),
    *((n, {"bigint": "int8", "timestamptz": "timestamptz"}[t]) for n, t in STAGING_TYPED_COLUMNS),
    ("raw", "text"),
    ("raw_md5", "text"),
)


def extraction_ddl() -> list[str]:
    """Statements that create the staging, checkpoint and audit tables if they are missing.

    Staging and checkpoints are UNLOGGED (no WAL: the staging write is most of a load's I/O). A Postgres
    crash empties both together, so they stay consistent; a running pass found without its checkpoints
    then starts over (loader.open_pass). The hashes table is UNLOGGED too: emptied, the next publish
    compares every entry once. The published table and the audit tables are ordinary tables.
    """
    typed_cols = "".join(f"    {name} {ddl},\n" for name, ddl in STAGING_TYPED_COLUMNS)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
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
        f"""CREATE UNLOGGED TABLE IF NOT EXISTS {STAGING_TABLE} (
    fetch_seq bigint NOT NULL,
    pass_id bigint NOT NULL,
    partition text NOT NULL,
    uuid text NOT NULL,
{typed_cols}    raw text NOT NULL,
    raw_md5 text NOT NULL
)""",
        f"""CREATE UNLOGGED TABLE IF NOT EXISTS {HASHES_TABLE} (
    uuid text PRIMARY KEY,
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
        f"ALTER TABLE {PUBLISH_LOG_TABLE} ADD COLUMN IF NOT EXISTS mapping_version text",
    ]
