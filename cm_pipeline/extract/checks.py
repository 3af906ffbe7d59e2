"""Asset checks on chartmogul_customers: key integrity and no unverified disappearance (freshness is
Dagster's own check, built in freshness.py)."""

import dagster as dg
import sqlalchemy as sa

from cm_pipeline.extract.asset import chartmogul_customers
from cm_pipeline.resources import WarehouseResource
from cm_pipeline.warehouse.schema import (
    CUSTOMERS_TABLE,
    DELETION_CHECKS_TABLE,
    PUBLISH_LOG_TABLE,
    VERSIONS_TABLE,
)


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
def customers_match_their_last_write(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Every row is as cm_pipeline last wrote it: none was edited by hand or by another tool since."""
    engine = warehouse.get_engine()
    try:
        with engine.connect() as conn:
            for table in (CUSTOMERS_TABLE, VERSIONS_TABLE):
                if _missing_table(conn, table):
                    return dg.AssetCheckResult(passed=False, description=f"{table} does not exist yet")
            drifted = (
                conn.execute(
                    sa.text(
                        f"SELECT c.uuid FROM {CUSTOMERS_TABLE} c LEFT JOIN {VERSIONS_TABLE} v USING (uuid)"
                        " WHERE v.uuid IS NULL OR v.row_xmin IS DISTINCT FROM c.xmin ORDER BY c.uuid"
                    )
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    return dg.AssetCheckResult(
        passed=not drifted,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rows_changed_outside": len(drifted), "examples": dg.MetadataValue.json(drifted[:10])},
        description=None
        if not drifted
        else f"{len(drifted)} row(s) were changed outside cm_pipeline since it wrote them; the next refresh"
        " compares them column by column with the API and repairs them",
    )


EXTRACT_CHECKS = [
    customers_uuid_unique_and_not_null,
    customers_no_unverified_disappearance,
    customers_match_their_last_write,
]
