"""SandboxControl: a small stdlib client for the sandbox's unauthenticated /_sandbox/ admin endpoints."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote


class SandboxControlError(RuntimeError):
    """An admin call failed; carries the HTTP status and the body the sandbox sent."""

    def __init__(self, status: int, body: Any, what: str):
        super().__init__(f"sandbox admin {what} failed with {status}: {body}")
        self.status = status
        self.body = body


class SandboxControl:
    """Reads and steers a running sandbox (stats, knobs, request log, raw customer state)."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        root = base_url.rstrip("/")
        if root.endswith("/v1"):
            root = root[: -len("/v1")]
        self.root = root
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SandboxControl({self.root!r})"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.root + "/_sandbox" + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
            raise SandboxControlError(exc.code, parsed, f"{method} {path}") from None

    def health(self) -> dict:
        return self._call("GET", "/health")

    def stats(self) -> dict:
        return self._call("GET", "/stats")

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset", {})

    def configure(self, **knobs: Any) -> dict:
        """Change knobs (latency_ms, rate_limit_rps, retry_after, max_connections, fault_*, pagination_fault,
        legacy_page_fields: see cm_pipeline.sandbox.faults) while the sandbox runs; returns the config."""
        return self._call("POST", "/config", knobs)

    def config(self) -> dict:
        return self._call("GET", "/config")

    def requests(self, since: int = 0) -> list[dict]:
        return self._call("GET", f"/requests?since={int(since)}")["entries"]

    def insert_customer(self, **fields: Any) -> dict:
        """A customer with `fields` as given, unvalidated (aliases such as billing_system_type allowed).
        data_source_uuids / external_ids of two entries make a merged customer; tags may hold system
        tags (`merged-customer`, ...); unknown data sources and custom keys are created."""
        return self._call("POST", "/customers", fields)

    def merge_customers(self, from_uuid: str, into_uuid: str) -> dict:
        """ChartMogul's merge: `from_uuid` goes, `into_uuid` gains its data sources, external ids and MRR
        and the `merged-customer` tag. Returns the merged customer."""
        return self._call("POST", "/customers/merge", {"from": from_uuid, "into": into_uuid})

    def modify_customer(self, uuid: str, **fields: Any) -> dict:
        return self._call("PATCH", f"/customers/{quote(uuid, safe='')}", fields)

    def delete_customer(self, uuid: str) -> None:
        self._call("DELETE", f"/customers/{quote(uuid, safe='')}")

    def customer(self, uuid: str) -> dict | None:
        try:
            return self._call("GET", f"/customers/{quote(uuid, safe='')}")
        except SandboxControlError as exc:
            if exc.status == 404:
                return None
            raise

    def customers(self) -> list[dict]:
        return self._call("GET", "/customers")["entries"]

    def custom_attribute_definitions(self) -> dict[str, str]:
        return self._call("GET", "/custom_attributes")

    def data_sources(self) -> list[dict]:
        """Every data source (uuid, name, system, created_at, status), without auth, latency or faults."""
        return self._call("GET", "/data_sources")["entries"]
