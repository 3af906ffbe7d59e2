"""Asset checks on chartmogul_customers: key integrity, no unverified disappearance, freshness."""

import dagster as dg
import sqlalchemy as sa

from cm_pipeline.extract.asset import chartmogul_customers
from cm_pipeline.extract.freshness import (
    REFRESH_CRON_ENV,
    FreshnessWindows,
    freshness_windows,
    refresh_cron_now,
)
from cm_pipeline.resources import WarehouseResource
from cm_pipeline.warehouse.schema import CUSTOMERS_TABLE, DELETION_CHECKS_TABLE, PUBLISH_LOG_TABLE

# Freshness follows the refresh cron (WAREHOUSE_REFRESH_CRON, read when the check runs; hourly by default):
# warn after 1.5x the longest gap between two ticks, fail after 2x (see freshness.py). The asset's
# FreshnessPolicy (evaluated by the Dagster daemon between runs) uses the same windows; this check reads the
# warehouse's own publish log, and can be run on demand from the UI.


def freshness_verdict(age_seconds: float | None, windows: FreshnessWindows) -> tuple[bool, str, str | None]:
    """(passed, severity "WARN" | "ERROR", description) for a last publish `age_seconds` old."""
    if age_seconds is None:
        return False, "ERROR", "no publish recorded"
    if age_seconds <= windows.warn.total_seconds():
        return True, "WARN", None
    late = f"last publish is {age_seconds / 3600:.1f} h old; the refresh runs on '{windows.cron}'"
    if age_seconds <= windows.fail.total_seconds():
        return False, "WARN", f"{late} (warn after {windows.warn}, fail after {windows.fail})"
    return False, "ERROR", f"{late}: more than {windows.fail} without a publish"


def _missing_table(conn, table: str) -> bool:
    return conn.execute(sa.text("SELECT to_regclass(:t) IS NULL"), {"t": table}).scalar()


@dg.asset_check(asset=chartmogul_customers, blocking=True)
def customers_uuid_unique_and_not_null(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Every row of chartmogul.customers has a uuid, and no uuid appears twice."""
    engine = warehouse.get_engine()
    try:
        with engine.connect() as conn:
            if _missing_table(conn, CUSTOMERS_TABLE):
                return dg.AssetCheckResult(passed=False, description=f"{CUSTOMERS_TABLE} does not exist yet")
            rows, nulls, duplicates = conn.execute(
                sa.text(
                    f"SELECT count(*), count(*) FILTER (WHERE uuid IS NULL),"
                    f" count(uuid) - count(DISTINCT uuid) FROM {CUSTOMERS_TABLE}"
                )
            ).one()
    finally:
        engine.dispose()
    return dg.AssetCheckResult(
        passed=nulls == 0 and duplicates == 0,
        metadata={"rows": rows, "null_uuids": nulls, "duplicate_uuids": duplicates},
    )


@dg.asset_check(asset=chartmogul_customers, blocking=True)
def customers_no_unverified_disappearance(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """No published customer vanished: the table never shrank, and every deleted_at came from a recorded 404."""
    engine = warehouse.get_engine()
    try:
        with engine.connect() as conn:
            for table in (CUSTOMERS_TABLE, PUBLISH_LOG_TABLE, DELETION_CHECKS_TABLE):
                if _missing_table(conn, table):
                    return dg.AssetCheckResult(passed=False, description=f"{table} does not exist yet")
            rows = conn.execute(sa.text(f"SELECT count(*) FROM {CUSTOMERS_TABLE}")).scalar()
            last = conn.execute(
                sa.text(
                    f"SELECT pass_id, row_count FROM {PUBLISH_LOG_TABLE} ORDER BY published_at DESC LIMIT 1"
                )
            ).one_or_none()
            shrank = conn.execute(
                sa.text(
                    "SELECT count(*) FROM (SELECT row_count, lag(row_count) OVER (ORDER BY published_at) AS prev"
                    f" FROM {PUBLISH_LOG_TABLE}) p WHERE row_count < prev"
                )
            ).scalar()
            unverified = (
                conn.execute(
                    sa.text(
                        f"SELECT c.uuid FROM {CUSTOMERS_TABLE} c WHERE c.deleted_at IS NOT NULL AND NOT EXISTS ("
                        f" SELECT 1 FROM {DELETION_CHECKS_TABLE} d WHERE d.uuid = c.uuid AND d.outcome = 'deleted'"
                        " AND d.http_status = 404 AND d.checked_at = c.deleted_at) ORDER BY c.uuid LIMIT 11"
                    )
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    published_rows = last.row_count if last else 0
    removed = max(published_rows - rows, 0)
    ok = removed == 0 and shrank == 0 and not unverified
    return dg.AssetCheckResult(
        passed=ok,
        metadata={
            "rows": rows,
            "rows_at_last_publish": published_rows,
            "rows_removed_since_last_publish": removed,
            "publishes_with_fewer_rows_than_the_one_before": shrank,
            "deleted_without_verified_404": len(unverified),
            "examples": dg.MetadataValue.json(unverified[:10]),
        },
        description=None
        if ok
        else "rows vanished or were marked deleted without a recorded 404 from GET /customers/{uuid}",
    )


@dg.asset_check(asset=chartmogul_customers)
def customers_freshness(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """The last publish (cm_pipeline.publish_log) is recent for the refresh cron: warn at 1.5x its longest gap, fail at 2x."""
    cron = refresh_cron_now()
    try:
        windows = freshness_windows(cron)
    except ValueError as exc:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.ERROR, description=f"{REFRESH_CRON_ENV}: {exc}"
        )
    engine = warehouse.get_engine()
    try:
        with engine.connect() as conn:
            if _missing_table(conn, PUBLISH_LOG_TABLE):
                age = None
            else:
                age = conn.execute(
                    sa.text(f"SELECT extract(epoch FROM now() - max(published_at)) FROM {PUBLISH_LOG_TABLE}")
                ).scalar()
    finally:
        engine.dispose()
    age = float(age) if age is not None else None
    passed, severity, description = freshness_verdict(age, windows)
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity(severity),
        metadata={
            "seconds_since_last_publish": dg.FloatMetadataValue(age),
            "refresh_cron": cron,
            "warn_after_seconds": dg.FloatMetadataValue(windows.warn.total_seconds()),
            "limit_seconds": dg.FloatMetadataValue(windows.fail.total_seconds()),
        },
        description=description,
    )


EXTRACT_CHECKS = [
    customers_uuid_unique_and_not_null,
    customers_no_unverified_disappearance,
    customers_freshness,
]
