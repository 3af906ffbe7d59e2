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
