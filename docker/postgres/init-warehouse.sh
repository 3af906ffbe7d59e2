#!/bin/sh
# Runs once, when the Postgres volume is first initialised: creates the warehouse database beside the
# Dagster storage database (POSTGRES_DB), owned by the same user.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v warehouse_db="${WAREHOUSE_DB:-warehouse}" <<'SQL'
SELECT format('CREATE DATABASE %I', :'warehouse_db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'warehouse_db')\gexec
SQL
