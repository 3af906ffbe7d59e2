"""One HTTP exchange with the API: the pooled session, a shared limiter slot, timeouts, typed errors.

Thread-safe: many threads send through one Transport, so they share one RateLimiter and one pool.
"""

from __future__ import annotations

import logging
import threading
import time
from importlib import metadata
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError
from urllib3.util import Timeout

from cm_pipeline.chartmogul.errors import (
    ChartMogulError,
    TransportError,
    error_from_response,
    html_excerpt,
)
from cm_pipeline.chartmogul.ratelimit import RateLimiter
from cm_pipeline.chartmogul.reachability import Reachability
from cm_pipeline.chartmogul.retrying import attempt_timeout, parse_retry_after
from cm_pipeline.chartmogul.secrets import scrub, scrub_error

log = logging.getLogger("cm_pipeline.chartmogul")


def _version() -> str:
    try:
        return metadata.version("cm_pipeline")
    except metadata.PackageNotFoundError:
        return "0+unknown"


USER_AGENT = f"cm_pipeline/{_version()}"


def make_session(api_key: str, max_connections: int, base_url: str) -> requests.Session:
    """A session with Basic auth (the key as username, empty password) and a pool of `max_connections`.

    The environment's proxy and CA settings for `base_url` (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...)
    are read once, here, rather than by requests on every call (which walked os.environ each time: a
    seventh of a fast refresh's CPU time)."""
    session = requests.Session()
    settings = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies.update(settings["proxies"])
    session.verify = settings["verify"]
    session.cert = settings["cert"]
    session.trust_env = False
    session.auth = (api_key, "")
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    # max_retries=0: retries run around the limiter (retrying.py), so that each attempt takes a slot.
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max_connections, pool_block=True, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


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


def transport_error(
    exc: requests.exceptions.RequestException, method: str, path: str, timeout: tuple, reason: str
) -> TransportError:
    """The typed error for a requests exception (`reason`: its scrubbed text); it never references
    `exc`, whose `.request` carries the Authorization header."""
    name = type(exc).__name__
    where = {"method": method, "path": path}
    if isinstance(exc, requests.exceptions.SSLError):
        return TransportError(f"TLS error: {name}", kind="ssl", retriable=False, **where)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransportError(f"connect timed out after {timeout[0]:g} s", kind="connect_timeout", **where)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return TransportError(
            f"no response within the {timeout[1]:g} s read timeout", kind="timeout", **where
        )
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError):
        # A connection never made (refused, no route, DNS) carried no request: nothing can have landed.
        reached = not isinstance(
            getattr(exc.args[0] if exc.args else None, "reason", None), NewConnectionError
        )
        return TransportError(f"connection failed or dropped ({name}: {reason})", reached=reached, **where)
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return TransportError(f"undecodable response body ({name}: {reason})", kind="protocol", **where)
    return TransportError(
        f"request could not be sent ({name}: {reason})", kind="request", retriable=False, **where
    )


class Transport:
    """Sends one request through a limiter slot and turns the answer into JSON or a typed, scrubbed error.

    `last_status` is per thread: the HTTP status of the last response this thread received.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: tuple[float, float],
        min_attempt_seconds: float,
        limiter: RateLimiter,
        secrets: tuple[str, ...],
        reachability: Reachability | None = None,
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.min_attempt_seconds = min_attempt_seconds
        self.limiter = limiter
        self.stats = ClientStats()
        self.reachability = reachability or Reachability()
        self._secrets = secrets
        self._local = threading.local()
        self._session = make_session(api_key, limiter.max_connections, base_url)

    def close(self) -> None:
        self._session.close()

    @property
    def last_status(self) -> int | None:
        return getattr(self._local, "last_status", None)

    def forget_status(self) -> None:
        self._local.last_status = None

    def send(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        body: Any = None,
        deadline: float | None = None,
        attempt: int = 1,
    ) -> Any:
        """One HTTP exchange through the limiter; returns parsed JSON or raises a ChartMogulError.

        `deadline` (monotonic seconds; None on a first attempt) cuts this attempt's timeouts to the
        retry budget left once it holds its limiter slot.
        """
        failure: Exception | None = None
        shown = self.timeout
        try:
            with self.limiter.slot():
                timeout, shown = self._timeouts(method, path, deadline, attempt)
                resp = self._session.request(
                    method,
                    self.base_url + path,
                    params=params,
                    json=body,
                    timeout=timeout,
                    allow_redirects=False,
                )
                content = resp.content  # read the body while holding the slot
        except requests.exceptions.InvalidJSONError as exc:
            failure = ValueError(f"body: must be JSON-serialisable ({self._reason(exc)})")
        except requests.exceptions.RequestException as exc:
            self.stats.record_transport_error()
            failure = transport_error(exc, method, path, shown, self._reason(exc))
            if failure.kind != "protocol":  # an undecodable body is still an answer
                self.reachability.no_answer(f"{failure.message} on {method} {scrub(path, self._secrets)}")
        if failure is not None:
            # Raised here, outside the except clause, so it has no __context__ pointing at the requests
            # exception (whose .request holds the Authorization header).
            if isinstance(failure, ChartMogulError):
                raise scrub_error(failure, self._secrets)
            raise failure
        return self._answer(method, path, resp.status_code, resp.headers, content)

    def _reason(self, exc: Exception) -> str:
        return scrub(str(exc.args[0] if exc.args else exc), self._secrets)[:200]

    def _timeouts(self, method: str, path: str, deadline: float | None, attempt: int) -> tuple[Any, tuple]:
        """(the timeout for requests, (connect, read) as errors show it): the configured ones on a first
        attempt; on a retry, cut to the budget left (logged at DEBUG with what was decided)."""
        if deadline is None:
            return self.timeout, self.timeout
        left = deadline - time.monotonic()
        connect, read, total = attempt_timeout(*self.timeout, left, self.min_attempt_seconds)
        log_path = scrub(path, self._secrets)
        log.debug(
            "ChartMogul %s %s: attempt %d with %.2f s of the retry budget left: timeouts connect %.2f s, read %.2f s",
            method,
            log_path,
            attempt,
            left,
            connect,
            read,
            extra={
                "cm_method": method,
                "cm_path": log_path,
                "cm_attempt": attempt,
                "cm_left": left,
                "cm_timeout": (connect, read),
            },
        )
        return Timeout(connect=connect, read=read, total=total), (connect, read)

    def _answer(self, method: str, path: str, status: int, headers: Any, content: bytes) -> Any:
        """Parsed JSON of a 2xx ({} for an empty body); the typed, scrubbed error of anything else."""
        self.stats.record_response(status)
        self.reachability.answered()
        self._local.last_status = status
        if 200 <= status < 300:
            if not content.strip():
                return {}
            try:
                return orjson.loads(content)  # about half of a refresh's own CPU time with json.loads
            except ValueError:  # orjson.JSONDecodeError is a ValueError
                pass
            # A 2xx whose body does not parse was cut short on the way: worth another attempt.
            excerpt = html_excerpt(content.decode("utf-8", "replace"), 80)
            raise scrub_error(
                TransportError(
                    f"HTTP {status} with an unreadable body: {excerpt!r}",
                    kind="protocol",
                    method=method,
                    path=path,
                ),
                self._secrets,
            )
        err = error_from_response(status, content, headers.get("Content-Type"), method=method, path=path)
        err.retry_after = parse_retry_after(headers.get("Retry-After"))
        raise scrub_error(err, self._secrets)
