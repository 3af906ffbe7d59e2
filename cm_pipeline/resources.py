"""Thin Dagster resources that build the ChartMogul client and the warehouse engine."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field
from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.client import DEFAULT_BASE_URL, ChartMogulClient
from cm_pipeline.models.resource import build_dbt_resource
from cm_pipeline.warehouse.connection import make_engine, redact, resolve_url

# Carried by every run that calls ChartMogul (the refresh and the pushes): the deployment's queue lets
# one such run at a time, since the API's limits are per account (docs/architecture.md, "API limits").
CHARTMOGUL_API_RUN_TAGS = {"cm_pipeline/chartmogul_api": "account"}


class ChartMogulAccess(dg.ConfigurableResource):
    """The ChartMogul account: the API key (a secret) and the base URL. Set where Definitions are
    assembled (the key through EnvVar), never in run config, so no run's config ever holds the key."""

    # repr=False keeps the key out of repr()/str(), as constructed and once Dagster has resolved
    # EnvVar("CHARTMOGUL_API_KEY") into the key itself.
    api_key: str = Field(
        repr=False, description="ChartMogul API key (from CHARTMOGUL_API_KEY). Never logged."
    )
    base_url: str | None = Field(
        default=None,
        description="API base URL; when unset, CHARTMOGUL_BASE_URL, else https://api.chartmogul.com/v1.",
    )

    def resolved_base_url(self) -> str:
        return (self.base_url or os.environ.get("CHARTMOGUL_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


class ChartMogulResource(dg.ConfigurableResource):
    """The ChartMogul client every call goes through: the account (nested, holding the key) and the
    client-side limits, which run config may change without restating the key."""

    access: ChartMogulAccess
    max_requests_per_second: float = Field(default=35.0, description="Client-side cap (the API allows 40).")
    max_connections: int = Field(default=10, description="Concurrent requests cap (the API allows 20).")
    connect_timeout: float = Field(default=5.0, description="Seconds to wait for a TCP connection.")
    read_timeout: float = Field(default=60.0, description="Seconds to wait for a response.")
    max_retry_seconds: float = Field(
        default=300.0,
        description="Time budget of one call once it retries: no retry starts or runs past it.",
    )

    def resolved_base_url(self) -> str:
        return self.access.resolved_base_url()

    def get_client(self) -> ChartMogulClient:
        """A new client; all threads that share it share one rate limiter."""
        return ChartMogulClient(
            api_key=self.access.api_key,
            base_url=self.resolved_base_url(),
            max_requests_per_second=self.max_requests_per_second,
            max_connections=self.max_connections,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_retry_seconds=self.max_retry_seconds,
        )


class WarehouseResource(dg.ConfigurableResource):
    """The Postgres warehouse: `url`, else WAREHOUSE_URL, else the embedded default."""

    url: str | None = Field(
        default=None,
        description="postgresql+psycopg2:// URL; when unset, WAREHOUSE_URL, else the embedded Postgres.",
    )

    def resolved_url(self) -> str:
        return resolve_url(self.url)

    def redacted_url(self) -> str:
        return redact(self.resolved_url())

    def get_engine(self) -> Engine:
        return make_engine(self.resolved_url())


def build_resources() -> dict:
    """Resources for `Definitions`; secrets come only through EnvVar and are read at run time."""
    return {
        "chartmogul": ChartMogulResource(access=ChartMogulAccess(api_key=dg.EnvVar("CHARTMOGUL_API_KEY"))),
        "warehouse": WarehouseResource(),
        "dbt": build_dbt_resource(),
    }
