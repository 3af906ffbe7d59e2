"""The ChartMogul Customers API client: its endpoints over one transport, retry policy and rate limiter.

Knows nothing of Dagster. Thread-safe: extraction calls `list_customers_page` from several threads on
one client, so they all share one `RateLimiter` and one connection pool. Each attempt is one exchange
(transport.py); retries follow a tenacity policy (retrying.py); the key is kept out of everything
shown (secrets.py).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from cm_pipeline.chartmogul.errors import (
    APIError,
    NotFoundError,
    UnprocessableEntityError,
    is_duplicate_external_id,
)
from cm_pipeline.chartmogul.landed import holds_fields
from cm_pipeline.chartmogul.pagination import CursorWalker, CustomerPage, page_from_body
from cm_pipeline.chartmogul.ratelimit import RateLimiter
from cm_pipeline.chartmogul.reachability import Reachability
from cm_pipeline.chartmogul.retrying import RetryPolicy, RetryReport
from cm_pipeline.chartmogul.secrets import public_url, scrub, secret_forms
from cm_pipeline.chartmogul.transport import Transport
from cm_pipeline.chartmogul.vocabulary import CUSTOM_ATTRIBUTE_TYPES, MAX_PER_PAGE, status_to_filter

DEFAULT_BASE_URL = "https://api.chartmogul.com/v1"

log = logging.getLogger("cm_pipeline.chartmogul")


@dataclass(frozen=True)
class CreateResult:
    """Outcome of create_customer: the customer as ChartMogul has it, whether this call created it, and
    the HTTP status the POST was answered with (201 created; 422 when it met an existing external_id)."""

    customer: dict
    created: bool
    status: int | None = None
    # The 422 came on a retry after an attempt whose answer was lost: that attempt most likely made it.
    after_lost_answer: bool = False


def _check_connection_settings(api_key: Any, base_url: Any, seconds: dict[str, Any]) -> None:
    """ValueError naming the first bad setting among the key, the base URL and the timeouts."""
    if not isinstance(api_key, str) or not api_key.strip():
        raise ValueError("api_key: must be a non-empty string (set CHARTMOGUL_API_KEY)")
    if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https"):
        raise ValueError("base_url: must be an http:// or https:// URL, e.g. https://api.chartmogul.com/v1")
    if not urlsplit(base_url).hostname:
        raise ValueError("base_url: has no host")
    for name, value in seconds.items():
        if not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{name}: must be a positive number of seconds, got {value!r}")


class ChartMogulClient:
    """ChartMogul Customers API client (HTTP Basic auth: the key as username, empty password)."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        max_requests_per_second: float = 35,
        max_connections: int = 10,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_retry_seconds: float = 300.0,
        *,
        max_attempts: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        min_attempt_seconds: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        seconds = {
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "min_attempt_seconds": min_attempt_seconds,
        }
        _check_connection_settings(api_key, base_url, seconds)
        self.base_url = base_url.rstrip("/")
        self.timeout = (float(connect_timeout), float(read_timeout))
        # A retry is only started with at least min_attempt_seconds of the retry budget left (its
        # timeouts are cut to what is left): no retry is worth less, and none may outlast the budget.
        self.retry_policy = RetryPolicy(
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_retry_seconds=max_retry_seconds,
            min_attempt_seconds=min(min_attempt_seconds, self.timeout[1]),
            rng=rng,
        )
        self.limiter = RateLimiter(max_requests_per_second, max_connections)
        self.reachability = self.retry_policy.reachability = Reachability()
        self._secrets = secret_forms(api_key)
        self._transport = Transport(
            api_key,
            self.base_url,
            timeout=self.timeout,
            min_attempt_seconds=self.retry_policy.min_attempt_seconds,
            limiter=self.limiter,
            secrets=self._secrets,
            reachability=self.reachability,
        )

    # -- plumbing ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"ChartMogulClient(base_url={public_url(self.base_url)!r}, "
            f"max_requests_per_second={self.limiter.max_requests_per_second:g}, "
            f"max_connections={self.limiter.max_connections})"
        )

    def __enter__(self) -> ChartMogulClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._transport.close()

    def fail_fast(self, failures: int = 8, seconds: float = 10.0) -> None:
        """From now on, stop once the API is clearly unreachable: `failures` attempts in a row (from any
        thread) got no HTTP answer over at least `seconds`, or one call used up its retries that way.
        Every call then raises UnreachableError at once instead of retrying (reachability.py)."""
        self.reachability.arm(failures, seconds)

    @property
    def stats(self) -> dict:
        """Counters since creation: requests, retries, rate_limited, by_status, transport_errors, limiter peaks."""
        snap = self._transport.stats.snapshot()
        limiter = self.limiter.stats
        snap["peak_in_flight"] = limiter["peak_in_flight"]
        snap["limiter_wait_seconds"] = limiter["wait_seconds"]
        return snap

    @property
    def last_status(self) -> int | None:
        """HTTP status of the last response received by this thread's most recent call, None if it got none.

        Per thread, so worker threads sharing one client each see their own calls. A retried call
        leaves its final answer's status (e.g. 200 after a 503); a call that ended in a transport
        error without any response leaves None.
        """
        return self._transport.last_status

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        body: Any = None,
        reread: Callable[[], Any] | None = None,
    ) -> Any:
        """Send with retries on 429/5xx/transport errors, as `retry_policy` allows (retrying.py).

        The first attempt gets the configured timeouts; a retry's are cut to what is left of the budget,
        so a call that retries ends within max_retry_seconds of its start. Every attempt takes a limiter
        slot of its own. `reread`: see RetryPolicy.run.
        """
        self._transport.forget_status()  # this call's answer only, never an earlier call's
        report = RetryReport(
            method,
            scrub(path, self._secrets),
            self.retry_policy.max_retry_seconds,
            self.limiter,
            self._transport.stats,
        )

        def send(attempt: int, deadline: float | None) -> Any:
            return self._transport.send(
                method, path, params=params, body=body, deadline=deadline, attempt=attempt
            )

        return self.retry_policy.run(send, report, reread)

    # -- endpoints --------------------------------------------------------------------------------

    @staticmethod
    def _list_params(
        status: str | None,
        data_source_uuid: str | None,
        external_id: str | None,
        system: str | None,
        per_page: int,
        cursor: str | None,
    ) -> dict:
        if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page: must be an integer from 1 to {MAX_PER_PAGE}, got {per_page!r}")
        params: dict[str, Any] = {"per_page": per_page}
        if status is not None:
            params["status"] = status_to_filter(status)
        for name, value in (
            ("data_source_uuid", data_source_uuid),
            ("external_id", external_id),
            ("system", system),
            ("cursor", cursor),
        ):
            if value is not None:
                if not isinstance(value, str) or not value:
                    raise ValueError(f"{name}: must be a non-empty string, got {value!r}")
                params[name] = value
        return params

    def list_customers_page(
        self,
        *,
        status: str | None = None,
        data_source_uuid: str | None = None,
        external_id: str | None = None,
        system: str | None = None,
        per_page: int = MAX_PER_PAGE,
        cursor: str | None = None,
        number: int = 1,
    ) -> CustomerPage:
        """One GET /customers request from `cursor` (None = first page); safe to call from many threads."""
        params = self._list_params(status, data_source_uuid, external_id, system, per_page, cursor)
        body = self._request("GET", "/customers", params=params)
        return page_from_body(body, request_cursor=cursor, number=number)

    def list_customers(
        self,
        *,
        status: str | None = None,
        data_source_uuid: str | None = None,
        external_id: str | None = None,
        system: str | None = None,
        per_page: int = MAX_PER_PAGE,
        cursor: str | None = None,
    ) -> Iterator[CustomerPage]:
        """Every page from `cursor` to the end; raises PaginationError rather than ever looping."""
        base = self._list_params(status, data_source_uuid, external_id, system, per_page, cursor)
        base.pop("cursor", None)

        def fetch(page_cursor: str | None) -> Any:
            params = dict(base)
            if page_cursor is not None:
                params["cursor"] = page_cursor
            return self._request("GET", "/customers", params=params)

        yield from CursorWalker(fetch, start_cursor=cursor)

    def find_customers(self, *, external_id: str, data_source_uuid: str | None = None) -> list[dict]:
        """Customers whose external_id (or a merged one) matches, optionally within one data source."""
        found = []
        for page in self.list_customers(external_id=external_id, data_source_uuid=data_source_uuid):
            for entry in page.entries:
                ids = [entry.get("external_id"), *(entry.get("external_ids") or [])]
                sources = [entry.get("data_source_uuid"), *(entry.get("data_source_uuids") or [])]
                if external_id in ids and (data_source_uuid is None or data_source_uuid in sources):
                    found.append(entry)
        return found

    def list_data_sources(self, *, name: str | None = None, system: str | None = None) -> list[dict]:
        """GET /data_sources: every data source of the account in one answer (no paging)."""
        params = {k: v for k, v in (("name", name), ("system", system)) if v is not None}
        body = self._request("GET", "/data_sources", params=params or None)
        sources = body.get("data_sources") if isinstance(body, dict) else None
        if not isinstance(sources, list) or not all(
            isinstance(s, dict) and isinstance(s.get("uuid"), str) and s["uuid"] for s in sources
        ):
            raise APIError(
                "response has no 'data_sources' list of objects with a uuid",
                status=self.last_status,
                method="GET",
                path="/data_sources",
            )
        return sources

    def search_customers(self, email: str, *, per_page: int = MAX_PER_PAGE) -> list[dict]:
        """GET /customers/search?email=: every customer with this email, all pages; [] when the API
        answers its JSON 404 ("Can't find any customers"). A 404 without the API's JSON body (a proxy)
        is raised, never read as "nobody"."""
        if not isinstance(email, str) or not email.strip():
            raise ValueError(f"email: must be a non-empty string, got {email!r}")
        base = self._list_params(None, None, None, None, per_page, None)

        def fetch(cursor: str | None) -> Any:
            params = {**base, "email": email, **({"cursor": cursor} if cursor else {})}
            return self._request("GET", "/customers/search", params=params)

        try:
            return [entry for page in CursorWalker(fetch) for entry in page.entries]
        except NotFoundError as err:
            if isinstance(err.details, dict) and err.details:
                return []
            raise

    @staticmethod
    def _uuid_path(uuid: str) -> str:
        if not isinstance(uuid, str) or not uuid.strip():
            raise ValueError(f"uuid: must be a non-empty customer UUID string, got {uuid!r}")
        return "/customers/" + quote(uuid, safe="")

    def retrieve_customer(self, uuid: str) -> dict:
        """GET /customers/{uuid}; NotFoundError when it does not exist."""
        return self._request("GET", self._uuid_path(uuid))

    def create_customer(self, body: dict) -> CreateResult:
        """POST /customers without ever making a duplicate.

        A 422 "external_id already exists" — on the first attempt, or on a retry after the first
        attempt was applied but its answer lost — resolves to the existing customer (created=False).
        """
        if not isinstance(body, dict):
            raise ValueError(f"body: must be a dict, got {type(body).__name__}")
        for name in ("data_source_uuid", "external_id"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise ValueError(f"body.{name}: required, must be a non-empty string, got {body.get(name)!r}")
        try:
            customer = self._request("POST", "/customers", body=body)
            return CreateResult(customer, created=True, status=self.last_status)
        except UnprocessableEntityError as err:
            if not is_duplicate_external_id(err):
                raise
            matches = self.find_customers(
                external_id=body["external_id"], data_source_uuid=body["data_source_uuid"]
            )
            if len(matches) != 1:
                raise
            log.info(
                "ChartMogul POST /customers: external_id already exists after %d attempt(s); using customer %s",
                err.attempts,
                matches[0].get("uuid"),
            )
            return CreateResult(
                matches[0], created=False, status=err.status, after_lost_answer=err.after_lost_answer
            )

    def update_customer(self, uuid: str, body: dict, *, landed: Callable[[dict], bool] | None = None) -> dict:
        """PATCH /customers/{uuid}. Note `attributes` replaces ALL tags and custom attributes.

        Before a retry that follows a lost answer (the PATCH may have been applied), the customer is
        read again: when `landed(customer)` (default: every field sent already holds what was sent)
        the PATCH is not sent again and that customer is returned."""
        if not isinstance(body, dict) or not body:
            raise ValueError(f"body: must be a non-empty dict, got {body!r}")
        path = self._uuid_path(uuid)
        check = landed or (lambda live: holds_fields(live, body))

        def reread() -> dict | None:
            live = self._request("GET", path)
            return live if isinstance(live, dict) and check(live) else None

        return self._request("PATCH", path, body=body, reread=reread)

    def add_custom_attributes(self, email: str, custom: list[dict]) -> list[dict]:
        """POST /customers/attributes/custom: typed attributes on every customer with this email; returns entries."""
        if not isinstance(email, str) or not email.strip():
            raise ValueError(f"email: must be a non-empty string, got {email!r}")
        if not isinstance(custom, list) or not custom:
            raise ValueError(
                f"custom: must be a non-empty list of {{type, key, value}} objects, got {custom!r}"
            )
        for i, attr in enumerate(custom):
            if not isinstance(attr, dict):
                raise ValueError(f"custom[{i}]: must be an object, got {type(attr).__name__}")
            if attr.get("type") not in CUSTOM_ATTRIBUTE_TYPES:
                raise ValueError(
                    f"custom[{i}].type: {attr.get('type')!r} is not one of {', '.join(CUSTOM_ATTRIBUTE_TYPES)}"
                )
            if not isinstance(attr.get("key"), str) or not attr["key"]:
                raise ValueError(f"custom[{i}].key: must be a non-empty string, got {attr.get('key')!r}")
            if "value" not in attr:
                raise ValueError(f"custom[{i}].value: missing")
        result = self._request(
            "POST", "/customers/attributes/custom", body={"email": email, "custom": custom}
        )
        entries = result.get("entries") if isinstance(result, dict) else None
        if not isinstance(entries, list):
            raise APIError(
                "response has no 'entries' list",
                status=200,
                method="POST",
                path="/customers/attributes/custom",
            )
        return entries
