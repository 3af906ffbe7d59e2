"""ChartMogul Customers API client: auth, timeouts, retries, rate limit, pagination. No Dagster here."""

from cm_pipeline.chartmogul.client import DEFAULT_BASE_URL, USER_AGENT, ChartMogulClient
from cm_pipeline.chartmogul.models import CreateResult, Customer
from cm_pipeline.chartmogul.pagination import CustomerPage
from cm_pipeline.chartmogul.ratelimit import RateLimiter

__all__ = [
    "DEFAULT_BASE_URL",
    "USER_AGENT",
    "ChartMogulClient",
    "CreateResult",
    "Customer",
    "CustomerPage",
    "RateLimiter",
]
