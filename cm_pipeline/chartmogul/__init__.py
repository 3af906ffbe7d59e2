"""ChartMogul Customers API client: auth, timeouts, retries, rate limit, pagination. No Dagster here.

Import what you need from its modules (`cm_pipeline.chartmogul.client`, `.vocabulary`, ...): this package
imports nothing itself, so the pure `vocabulary` can be used without loading the HTTP stack.
"""
