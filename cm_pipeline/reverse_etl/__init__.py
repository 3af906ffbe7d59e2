"""Reverse ETL without Dagster: value coercion, merge/diff decisions, the push log and the push engines."""
