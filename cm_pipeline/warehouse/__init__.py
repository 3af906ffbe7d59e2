"""The Postgres warehouse: connection, table definitions and load SQL. Imports nothing from Dagster."""
