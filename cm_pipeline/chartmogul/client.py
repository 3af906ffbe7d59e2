"""The ChartMogul HTTP client: one session owning auth, timeouts, retries and the shared rate limiter.

Knows nothing of Dagster. Thread-safe: extraction calls `list_customers_page` from several threads
on one client, so they all share one `RateLimiter` and one connection pool. `last_status` is kept
per thread: it is the HTTP status of the last response this thread's most recent call received.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Timeout

from cm_pipeline.chartmogul.errors import (
    APIError,
    ChartMogulError,
    TransportError,
    UnprocessableEntityError,
    error_from_response,
    html_excerpt,
    is_duplicate_external_id,
    is_retriable,
)
from cm_pipeline.chartmogul.pagination import CursorWalker, CustomerPage, page_from_body
from cm_pipeline.chartmogul.ratelimit import RateLimiter
from cm_pipeline.chartmogul.vocabulary import CUSTOM_ATTRIBUTE_TYPES, MAX_PER_PAGE, status_to_filter

DEFAULT_BASE_URL = "https://api.chartmogul.com/v1"

log = logging.getLogger("cm_pipeline.chartmogul")


def _version() -> str:
    try:
        return metadata.version("cm_pipeline")
    except metadata.PackageNotFoundError:
        return "0+unknown"


USER_AGENT = f"cm_pipeline/{_version()}"


@dataclass(frozen=True)
class CreateResult:
    """Outcome of create_customer: the customer as ChartMogul has it, whether this call created it, and
    the HTTP status the POST was answered with (201 created; 422 when it met an existing external_id)."""

    customer: dict
    created: bool
    status: int | None = None


def backoff_delay(attempt: int, base: float, cap: float, rand: float) -> float:
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2**(attempt-1))), with rand in [0, 1)."""
    return rand * min(cap, base * (2 ** max(0, attempt - 1)))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


def secret_forms(api_key: str) -> tuple[str, ...]:
    """Every text form of the key worth scrubbing, longest first: the key, its Basic-auth token
    base64("KEY:") with and without padding, base64 of the bare key, and the percent-encoded key."""
    token = base64.b64encode(f"{api_key}:".encode()).decode("ascii")
    bare = base64.b64encode(api_key.encode()).decode("ascii")
    forms = {api_key, token, token.rstrip("="), bare, bare.rstrip("="), quote(api_key, safe="")}
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


def scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    """`value` with every secret form replaced by ***: strings, and the strings inside dicts/lists."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(v, secrets) for v in value)
    return value


def attempt_timeout(connect: float, read: float, left: float, minimum: float) -> tuple[float, float, float]:
    """(connect, read, total) seconds for a retry with `left` seconds of the retry budget remaining:
    each cut to what is left, but never below `minimum`."""
    left = max(left, minimum)
    return (min(connect, left), min(read, left), left)


def _safe_base_url(url: str) -> str:
    """The base URL without any user:password@ part, for reprs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class ClientStats:
    """Thread-safe request counters; `snapshot()` returns a plain dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.rate_limited = 0
        self.transport_errors = 0
        self.retry_wait_seconds = 0.0
        self.by_status: dict[str, int] = {}

    def record_response(self, status: int) -> None:
        with self._lock:
            self.requests += 1
            key = str(status)
            self.by_status[key] = self.by_status.get(key, 0) + 1
            if status == 429:
                self.rate_limited += 1

    def record_transport_error(self) -> None:
        with self._lock:
            self.requests += 1
            self.transport_errors += 1

    def record_retry(self, wait: float) -> None:
        with self._lock:
            self.retries += 1
            self.retry_wait_seconds += wait

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "by_status": dict(self.by_status),
                "transport_errors": self.transport_errors,
                "retry_wait_seconds": round(self.retry_wait_seconds, 3),
            }


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
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key: must be a non-empty string (set CHARTMOGUL_API_KEY)")
        if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(
                "base_url: must be an http:// or https:// URL, e.g. https://api.chartmogul.com/v1"
            )
        if not urlsplit(base_url).hostname:
            raise ValueError("base_url: has no host")
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
        ):
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name}: must be a positive number of seconds, got {value!r}")
        if not isinstance(max_retry_seconds, int | float) or max_retry_seconds < 0:
            raise ValueError(f"max_retry_seconds: must be >= 0, got {max_retry_seconds!r}")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts: must be an integer >= 1, got {max_attempts!r}")
        if backoff_base <= 0 or backoff_max <= 0:
            raise ValueError("backoff_base/backoff_max: must be positive")
        if not isinstance(min_attempt_seconds, int | float) or min_attempt_seconds <= 0:
            raise ValueError(f"min_attempt_seconds: must be a positive number, got {min_attempt_seconds!r}")

        self._api_key = api_key
        self._secrets = secret_forms(api_key)
        self.base_url = base_url.rstrip("/")
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.max_retry_seconds = float(max_retry_seconds)
        self.max_attempts = max_attempts
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        # A retry is only started with at least this much of the retry budget left (its timeouts are
        # cut to what is left): no retry is worth less than this, and none may outlast the budget.
        self.min_attempt_seconds = min(float(min_attempt_seconds), float(read_timeout))
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self.limiter = RateLimiter(max_requests_per_second, max_connections)
        self._stats = ClientStats()
        self._local = threading.local()  # per-thread last_status

        session = requests.Session()
        session.auth = (api_key, "")
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        # max_retries=0: retries live in _request, around the rate limiter, so that every retry
        # attempt takes a limiter slot again. urllib3's Retry inside the adapter would re-send
        # without passing through the limiter and could burst past the API's 40 req/s and 20 conns.
        adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=max_connections, pool_block=True, max_retries=0
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self._session = session

    # -- plumbing ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"ChartMogulClient(base_url={_safe_base_url(self.base_url)!r}, "
            f"max_requests_per_second={self.limiter.max_requests_per_second:g}, "
            f"max_connections={self.limiter.max_connections})"
        )

    def __enter__(self) -> ChartMogulClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    @property
    def stats(self) -> dict:
        """Counters since creation: requests, retries, rate_limited, by_status, transport_errors, limiter peaks."""
        snap = self._stats.snapshot()
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
        return getattr(self._local, "last_status", None)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _scrub_error(self, err: ChartMogulError) -> ChartMogulError:
        """`err` with every text part scrubbed of the key, and no exception chain."""
        for name in ("message", "param", "path", "method"):
            value = getattr(err, name, None)
            if isinstance(value, str):
                setattr(err, name, scrub(value, self._secrets))
        if err.details is not None:
            err.details = scrub(err.details, self._secrets)
        err.args = (err.message,)
        err.__cause__ = None
        err.__context__ = None
        return err

    def _transport_error(
        self, exc: requests.exceptions.RequestException, method: str, path: str, timeout: tuple
    ) -> ChartMogulError:
        """The typed error for a requests exception; it never references `exc` (whose `.request`
        carries the Authorization header)."""
        name = type(exc).__name__
        if isinstance(exc, requests.exceptions.SSLError):
            return TransportError(f"TLS error: {name}", kind="ssl", retriable=False, method=method, path=path)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return TransportError(
                f"connect timed out after {timeout[0]:g} s", kind="connect_timeout", method=method, path=path
            )
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return TransportError(
                f"no response within the {timeout[1]:g} s read timeout",
                kind="timeout",
                method=method,
                path=path,
            )
        reason = self._scrub(str(exc.args[0] if exc.args else exc))[:200]
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError):
            return TransportError(
                f"connection failed or dropped ({name}: {reason})", method=method, path=path
            )
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            return TransportError(
                f"undecodable response body ({name}: {reason})", kind="protocol", method=method, path=path
            )
        return TransportError(
            f"request could not be sent ({name}: {reason})",
            kind="request",
            retriable=False,
            method=method,
            path=path,
        )

    def _send_once(
        self, method: str, path: str, params: dict | None, body: Any, deadline: float | None = None
    ) -> Any:
        """One HTTP exchange through the limiter; returns parsed JSON or raises a ChartMogulError.

        `deadline` (monotonic seconds; None on a first attempt) cuts this attempt's timeouts to the
        retry budget left once it holds its limiter slot.
        """
        url = self.base_url + path
        failure: Exception | None = None
        timeout: Any = self.timeout
        shown = self.timeout
        try:
            with self.limiter.slot():
                if deadline is not None:
                    left = deadline - time.monotonic()
                    connect, read, total = attempt_timeout(*self.timeout, left, self.min_attempt_seconds)
                    shown = (connect, read)
                    timeout = Timeout(connect=connect, read=read, total=total)
                resp = self._session.request(
                    method, url, params=params, json=body, timeout=timeout, allow_redirects=False
                )
                content = resp.content  # read the body while holding the slot
        except requests.exceptions.InvalidJSONError as exc:
            reason = self._scrub(str(exc.args[0] if exc.args else exc))[:200]
            failure = ValueError(f"body: must be JSON-serialisable ({reason})")
        except requests.exceptions.RequestException as exc:
            self._stats.record_transport_error()
            failure = self._transport_error(exc, method, path, shown)
        if failure is not None:
            # Raised here, outside the except clause, so it has no __context__ pointing at the requests
            # exception (whose .request holds the Authorization header).
            if isinstance(failure, ChartMogulError):
                raise self._scrub_error(failure)
            raise failure

        status = resp.status_code
        self._stats.record_response(status)
        self._local.last_status = status
        if 200 <= status < 300:
            if not content.strip():
                return {}
            try:
                return json.loads(content)
            except ValueError:
                pass
            # A 2xx whose body does not parse was cut short on the way: worth another attempt.
            raise self._scrub_error(
                TransportError(
                    f"HTTP {status} with an unreadable body: {html_excerpt(content.decode('utf-8', 'replace'), 80)!r}",
                    kind="protocol",
                    method=method,
                    path=path,
                )
            )
        err = error_from_response(status, content, resp.headers.get("Content-Type"), method=method, path=path)
        err.retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        raise self._scrub_error(err)

    def _next_wait(self, err: ChartMogulError, attempt: int) -> float:
        if err.retry_after is not None:
            return err.retry_after
        with self._rng_lock:
            rand = self._rng.random()
        return backoff_delay(attempt, self.backoff_base, self.backoff_max, rand)

    def _request(self, method: str, path: str, *, params: dict | None = None, body: Any = None) -> Any:
        """Send with retries on 429/5xx/transport errors, bounded by max_attempts and max_retry_seconds.

        The first attempt gets the configured timeouts. A retry starts only when at least
        `min_attempt_seconds` of the budget is left after its wait, and its timeouts are cut to
        what is left, so a call that retries ends within max_retry_seconds of its start.
        """
        started = time.monotonic()
        self._local.last_status = None  # this call's answer only, never an earlier call's
        deadline: float | None = None  # set once retrying: no retry may outlast the budget
        attempt = 0
        log_path = self._scrub(path)
        while True:
            attempt += 1
            try:
                return self._send_once(method, path, params, body, deadline)
            except ChartMogulError as err:
                err.attempts = attempt
                if not is_retriable(err):
                    raise
                wait = self._next_wait(err, attempt)
                elapsed = time.monotonic() - started
                what = (
                    f"HTTP {err.status}"
                    if err.status is not None
                    else f"{getattr(err, 'kind', 'transport')} error"
                )
                left = self.max_retry_seconds - elapsed - wait
                if attempt >= self.max_attempts or left < self.min_attempt_seconds:
                    log.warning(
                        "ChartMogul %s %s: %s, giving up after %d attempt(s) in %.1f s (retry budget %.0f s)",
                        method,
                        log_path,
                        what,
                        attempt,
                        elapsed,
                        self.max_retry_seconds,
                        extra={
                            "cm_method": method,
                            "cm_path": log_path,
                            "cm_status": err.status,
                            "cm_attempt": attempt,
                        },
                    )
                    raise
                if err.status == 429 and err.retry_after is not None:
                    self.limiter.pause(err.retry_after)  # every thread holds off, not just this one
                self._stats.record_retry(wait)
                log.log(
                    logging.INFO if err.status == 429 else logging.WARNING,
                    "ChartMogul %s %s: %s (%s), retry %d in %.2f s%s",
                    method,
                    log_path,
                    what,
                    err.message[:120],
                    attempt,
                    wait,
                    " (Retry-After)" if err.retry_after is not None else "",
                    extra={
                        "cm_method": method,
                        "cm_path": log_path,
                        "cm_status": err.status,
                        "cm_wait": wait,
                        "cm_attempt": attempt,
                    },
                )
                deadline = started + self.max_retry_seconds
                time.sleep(wait)

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
            return CreateResult(matches[0], created=False, status=err.status)

    def update_customer(self, uuid: str, body: dict) -> dict:
        """PATCH /customers/{uuid}. Note `attributes` replaces ALL tags and custom attributes."""
        if not isinstance(body, dict) or not body:
            raise ValueError(f"body: must be a non-empty dict, got {body!r}")
        return self._request("PATCH", self._uuid_path(uuid), body=body)

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
