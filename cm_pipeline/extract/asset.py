"""The `chartmogul_customers` asset: every ChartMogul customer, extracted into chartmogul.customers."""

import multiprocessing
from datetime import timedelta

import dagster as dg
from pydantic import Field

from cm_pipeline.chartmogul.secrets import public_url
from cm_pipeline.extract.freshness import DEFAULT_REFRESH_CRON, freshness_policy_for
from cm_pipeline.extract.options import ExtractOptions
from cm_pipeline.extract.run import ExtractResult, run_extraction
from cm_pipeline.resources import ChartMogulResource, WarehouseResource
from cm_pipeline.warehouse.schema import CUSTOMER_COLUMNS, CUSTOMERS_TABLE

# Cross-run guard: at most one op in this pool runs at a time once the instance gives the pool a limit
# of 1 (`dagster instance concurrency set warehouse_refresh 1`, or concurrency.pools.default_limit: 1).
WAREHOUSE_REFRESH_POOL = "warehouse_refresh"

COLUMN_DESCRIPTIONS: dict[str, str] = {
    "uuid": "ChartMogul customer UUID (primary key)",
    "id": "ChartMogul internal numeric id",
    "external_id": "the customer's id in its billing system",
    "external_ids": "external ids of every record merged into this customer (array)",
    "data_source_uuid": "the customer's data source",
    "data_source_uuids": "data sources of every record merged into this customer (array)",
    "name": "customer name (deprecated by ChartMogul, still returned)",
    "email": "customer email (not unique)",
    "company": "company name",
    "status": "New Lead, Working Lead, Qualified Lead, Unqualified Lead, Active, Past Due or Cancelled",
    "customer_since": "when the first subscription started (API field customer-since)",
    "lead_created_at": "when the customer became a lead",
    "free_trial_started_at": "when the free trial started",
    "country": "ISO 3166-1 alpha-2 country",
    "state": "state code",
    "city": "city",
    "zip": "zip code",
    "address": "the address object as returned (jsonb)",
    "tags": "attributes.tags (jsonb array)",
    "custom_attributes": "attributes.custom (jsonb object)",
    "stripe": "attributes.stripe metadata (jsonb object)",
    "mrr": "monthly recurring revenue, integer cents of the account currency",
    "arr": "annual run rate, integer cents of the account currency",
    "currency": "account currency code",
    "currency_sign": "account currency symbol (API field currency-sign)",
    "billing_system_type": "billing system, e.g. Stripe or Custom (API field billing-system-type)",
    "billing_system_url": "link to the customer in the billing system",
    "chartmogul_url": "link to the customer in ChartMogul",
    "owner": "user responsible for the customer",
    "website_url": "customer's website",
    "raw": "the API entry exactly as received (jsonb); fields the API adds later live here",
    "first_seen_at": "when this pipeline first stored the customer",
    "synced_at": "when the row's data was last written",
    "deleted_at": "set when GET /customers/{uuid} answered 404 after a complete pass missed the customer",
}

CUSTOMERS_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(
            name,
            ddl.split()[0],
            description=COLUMN_DESCRIPTIONS.get(name),
            constraints=dg.TableColumnConstraints(nullable="NOT NULL" not in ddl, unique=name == "uuid"),
        )
        for name, ddl in CUSTOMER_COLUMNS
    ]
)


class ExtractConfig(dg.Config):
    """Run config of a warehouse refresh; every field has a default, so schedules need none."""

    per_page: int = Field(default=200, description="Customers per list request (1-200).")
    max_workers: int = Field(
        default=10,
        description=(
            "Requests in flight at most (1-32), all through the client's rate and connection limits; the"
            " walk keeps fewer in flight when the rate could not start them without waiting."
        ),
    )
    data_source_uuid: str | None = Field(
        default=None, description="Only customers of this data source (list filter data_source_uuid)."
    )
    system: str | None = Field(
        default=None,
        description="Only customers of this billing system, e.g. Stripe or Custom (case-sensitive).",
    )
    partition_by_status: bool = Field(
        default=True,
        description="Walk the seven status filters concurrently; false walks one unfiltered cursor.",
    )
    split_large_partitions: bool = Field(
        default=True,
        description=(
            "Split a status over every data source GET /v1/data_sources lists when its cursor would"
            " outlast the longest (status, data source) partition (on a first load: when its first page"
            " says more follow). If that call fails, the pass walks by status alone."
        ),
    )
    full_refresh: bool = Field(
        default=False,
        description=(
            "Discard any unfinished pass and start over, and compare every row column by column with what"
            " the API answered, whatever the cached hashes say: every row that differs is rewritten."
        ),
    )
    resume_max_age_hours: float = Field(
        default=24.0,
        description="An unfinished pass older than this is not resumed: a fresh pass starts instead.",
    )
    verify_deletions: bool = Field(
        default=True,
        description="GET each published customer the pass did not see; only a 404 sets deleted_at.",
    )
    max_deletion_checks: int = Field(
        default=10_000, description="At most this many unseen customers are verified per run."
    )
    progress_interval_seconds: float = Field(default=3.0, description="Seconds between progress log lines.")

    def options(self) -> ExtractOptions:
        return ExtractOptions(
            per_page=self.per_page,
            max_workers=self.max_workers,
            data_source_uuid=self.data_source_uuid,
            system=self.system,
            partition_by_status=self.partition_by_status,
            split_large_partitions=self.split_large_partitions,
            full_refresh=self.full_refresh,
            resume_max_age=timedelta(hours=self.resume_max_age_hours),
            verify_deletions=self.verify_deletions,
            max_deletion_checks=self.max_deletion_checks,
            progress_interval=self.progress_interval_seconds,
        )


def result_metadata(result: ExtractResult, warehouse_url_redacted: str) -> dict:
    """MaterializeResult metadata: numbers worth a plot (rows, MRR, writes, pages, duration) as numbers;
    everything else as JSON or text, so the asset's plots are not lost among flat lines."""
    pub = result.publish
    metadata = {
        "dagster/row_count": pub.row_count,
        "dagster/table_name": CUSTOMERS_TABLE,
        "dagster/column_schema": CUSTOMERS_TABLE_SCHEMA,
        "total_mrr": dg.FloatMetadataValue(pub.total_mrr_cents / 100.0),
        "inserted": pub.inserted,
        "updated": pub.updated,
        "deleted": pub.deleted,
        "kept_newer": pub.kept_newer,
        "pages": result.pages,
        "duration_seconds": dg.FloatMetadataValue(round(result.duration_seconds, 3)),
        "run": dg.MetadataValue.json(run_details(result)),
        "partitions": dg.MetadataValue.json(
            {
                name: {
                    "pages": p.pages + p.resumed_pages,
                    "customers": p.customers + p.resumed_customers,
                    "pages_this_run": p.pages,
                    "state": p.state,
                }
                for name, p in result.partitions.items()
            }
        ),
        "plan": dg.MetadataValue.json(result.plan),
        "warehouse": warehouse_url_redacted,
    }
    if result.plan.get("data_sources_failed"):
        metadata["warning"] = dg.MetadataValue.text(
            f"GET /v1/data_sources failed ({result.plan['data_sources_failed']}): walked by status alone"
        )
    return metadata


def run_details(result: ExtractResult) -> dict:
    """The run's other counts, for the "run" JSON entry."""
    pub = result.publish
    return {
        "live_customers": pub.live_count,
        "unchanged": pub.unchanged,
        "undeleted": pub.undeleted,
        "customers_fetched": result.customers_fetched,
        "rejected_entries": result.rejected,
        "field_problems": result.field_problems,
        "status_mismatches": result.status_mismatches,
        "deletion_candidates": result.deletion_candidates,
        "verified_alive": result.verified_alive,
        "verification_errors": result.verification_errors,
        "pass_id": result.pass_id,
        "resumed": result.resumed,
        "http_requests": result.requests.get("requests", 0),
        "http_retries": result.requests.get("retries", 0),
        "http_429": result.requests.get("rate_limited", 0),
    }


@dg.asset(
    name="chartmogul_customers",
    group_name="chartmogul",
    pool=WAREHOUSE_REFRESH_POOL,
    kinds={"python", "postgres"},
    metadata={"dagster/table_name": CUSTOMERS_TABLE, "dagster/column_schema": CUSTOMERS_TABLE_SCHEMA},
    # For the default hourly cron: warn after 90 minutes without a publish, fail after two hours (the daemon
    # evaluates it). A code location on another cron sets freshness_policy_for(cron) when it loads.
    freshness_policy=freshness_policy_for(DEFAULT_REFRESH_CRON),
)
def chartmogul_customers(
    context: dg.AssetExecutionContext,
    config: ExtractConfig,
    chartmogul: ChartMogulResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """Every ChartMogul customer in chartmogul.customers: parallel, resumable, published atomically, deletions verified."""
    options = config.options()
    redacted = warehouse.redacted_url()
    context.log.info(f"extract: warehouse {redacted}, API {public_url(chartmogul.resolved_base_url())}")
    engine = warehouse.get_engine()
    holder = f"cm_pipeline refresh, dagster run {context.run_id}"
    try:
        with chartmogul.get_client() as client:
            result = run_extraction(
                client, engine, options, context.log, holder=holder, abandoned=run_is_over(context)
            )
    finally:
        engine.dispose()
    return dg.MaterializeResult(metadata=result_metadata(result, redacted))


def run_is_over(context: dg.AssetExecutionContext):
    """A check for the extraction: why this run is over, or None. A step process of the multiprocess
    executor outlives a killed run worker (e.g. `dagster job execute` killed with -9), and run monitoring
    marks a run whose worker died failed: in both cases the extraction must stop, not publish headless."""
    parent = multiprocessing.parent_process()  # the run worker, when this step runs in a child process

    def why() -> str | None:
        if parent is not None and not parent.is_alive():
            return f"the run's worker process (pid {parent.pid}) is gone"
        run = context.instance.get_run_by_id(context.run_id)
        if run is not None and run.status in (
            dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.CANCELING,
            dg.DagsterRunStatus.CANCELED,
        ):
            return f"Dagster run {context.run_id} is {run.status.value}"
        return None

    return why
