"""Typed ChartMogul errors, classed retriable or fatal, carrying the API's own message and param.

Error bodies come in several documented shapes (see the project's API README); `parse_error_body`
reads all of them. No error built here ever holds the API key, the auth header or the session.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

# Statuses worth another attempt: rate limit, server errors and the Cloudflare 52x the API sits behind.
RETRIABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 524})

_EXCERPT_CHARS = 200


def _rebuild(cls, message, state):
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class ChartMogulError(Exception):
    """Base of every error the client raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        details: dict | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.details = details
        self.method = method
        self.path = path
        self.attempts = 1
        self.retry_after: float | None = None
        # Set by the retry loop: an earlier attempt of this call may have been applied, its answer lost.
        self.after_lost_answer = False

    def __str__(self) -> str:
        where = f" on {self.method} {self.path}" if self.method and self.path else ""
        head = (
            f"HTTP {self.status}{where}: " if self.status is not None else (f"{where[4:]}: " if where else "")
        )
        param = f" (param {self.param!r})" if self.param else ""
        tries = f" [after {self.attempts} attempts]" if self.attempts > 1 else ""
        return f"{head}{self.message}{param}{tries}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, message={self.message!r}, param={self.param!r})"
        )

    def __reduce__(self):
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


class TransportError(ChartMogulError):
    """No usable HTTP response: connection refused or dropped, timeout, truncated body, unsendable request."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "connection",
        retriable: bool = True,
        reached: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.kind = kind  # "connection" | "timeout" | "connect_timeout" | "protocol" | "ssl" | "request"
        self.retriable = retriable
        # False when the request surely never reached the API (refused, no connection, never sent).
        self.reached = reached and kind not in ("connect_timeout", "ssl", "request")


class UnreachableError(TransportError):
    """The API is clearly unreachable: attempts in a row, from any thread, got no HTTP answer (see
    reachability.py). Raised only by a client whose `fail_fast` is armed; never retried."""

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("kind", "unreachable")
        super().__init__(message, retriable=False, **kw)


class APIError(ChartMogulError):
    """The API answered with a non-2xx status (or an unreadable 2xx body)."""


class BadRequestError(APIError):
    """400: a bad or missing parameter."""


class AuthenticationError(APIError):
    """401: the API key was refused."""


class ForbiddenError(APIError):
    """402/403: the account may not do this."""


class NotFoundError(APIError):
    """404: no such customer or route."""


class UnprocessableEntityError(APIError):
    """422: a semantic error, e.g. a duplicate external_id or an invalid attribute value."""


class RateLimitError(APIError):
    """429: over the account's request or compute-time limit."""


class ServerError(APIError):
    """5xx: the API (or the proxy in front of it) failed."""


class PaginationError(ChartMogulError):
    """The cursor walk cannot continue safely (repeated cursor, has_more without a cursor, bad shape)."""


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: ForbiddenError,
    403: ForbiddenError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_class_for(status: int) -> type[APIError]:
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    if status >= 500:
        return ServerError
    return APIError


def is_retriable(exc: BaseException) -> bool:
    """True when another attempt of the same request may succeed."""
    if isinstance(exc, TransportError):
        return exc.retriable
    if isinstance(exc, APIError):
        return exc.status in RETRIABLE_STATUSES
    return False


def may_have_landed(exc: BaseException) -> bool:
    """Whether a failed write may have been applied all the same: its answer was lost (dropped, timed out,
    cut short, a server error) rather than refused before it was processed (429, 4xx, no connection)."""
    if isinstance(exc, TransportError):
        return exc.reached
    if isinstance(exc, APIError):
        return exc.status is not None and exc.status >= 500
    return False


def html_excerpt(text: str, limit: int = _EXCERPT_CHARS) -> str:
    """Visible text of an HTML (or plain) body: scripts/styles dropped, tags stripped, whitespace collapsed."""
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
    text = re.sub(r"(?s)<!--.*?-->", " ", text)
    text = re.sub(r"(?s)<[^>]*>", " ", text)
    text = html.unescape(text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(_as_text(v) for v in value)
    return json.dumps(value, ensure_ascii=False, default=str)


def parse_error_body(
    body: str | bytes | None, content_type: str | None = None
) -> tuple[str, str | None, dict | None]:
    """(message, param, details) from an error body of any documented shape.

    Shapes: {code, message, param}; {errors: {field: msg}}; {error: "..."};
    {field: [...], error_details: [{param, code, message}]}; HTML (500s); anything else as a text excerpt.
    """
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    body = body or ""
    stripped = body.strip()
    if not stripped:
        return ("empty response body", None, None)
    looks_json = stripped[:1] in "{[" and "html" not in (content_type or "").lower()
    data: Any = None
    if looks_json:
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
    if not isinstance(data, dict):
        excerpt = html_excerpt(stripped)
        return (excerpt or "unreadable response body", None, None)

    # {field: [...], error_details: [{param, code, message}, ...]}
    details_list = data.get("error_details")
    if isinstance(details_list, list) and details_list:
        items = [d for d in details_list if isinstance(d, dict)]
        messages = [str(d.get("message") or d.get("code") or "") for d in items]
        message = "; ".join(m for m in messages if m)
        param = next((str(d["param"]) for d in items if d.get("param")), None)
        if not message:
            message = _field_messages(data) or "request failed"
        return (message, param, data)
    # {code, message, param}
    if isinstance(data.get("message"), str | list) and data.get("message"):
        param = data.get("param")
        return (_as_text(data["message"]), str(param) if param else None, data)
    # {errors: {field: msg}} (422) — also tolerate a list or a string
    errors = data.get("errors")
    if isinstance(errors, dict) and errors:
        message = "; ".join(f"{k}: {_as_text(v)}" for k, v in errors.items())
        return (message, str(next(iter(errors))), data)
    if isinstance(errors, list | str) and errors:
        return (_as_text(errors), None, data)
    # {error: "..."}
    if data.get("error"):
        return (_as_text(data["error"]), None, data)
    fields = _field_messages(data)
    if fields:
        return (fields, next(k for k, v in data.items() if isinstance(v, list) and v), data)
    return (html_excerpt(json.dumps(data, ensure_ascii=False)), None, data)


def _field_messages(data: dict) -> str:
    return "; ".join(
        f"{k}: {_as_text(v)}" for k, v in data.items() if isinstance(v, list) and v and k != "error_details"
    )


def error_from_response(
    status: int,
    body: str | bytes | None,
    content_type: str | None = None,
    *,
    method: str | None = None,
    path: str | None = None,
) -> APIError:
    """The typed error for a non-2xx response."""
    message, param, details = parse_error_body(body, content_type)
    return error_class_for(status)(
        message, status=status, param=param, details=details, method=method, path=path
    )


def is_duplicate_external_id(exc: ChartMogulError) -> bool:
    """A 422 saying the external_id already exists (the create was already applied)."""
    if not isinstance(exc, UnprocessableEntityError):
        return False
    texts: list[str] = []
    details = exc.details or {}
    errors = details.get("errors") if isinstance(details, dict) else None
    if isinstance(errors, dict) and "external_id" in errors:
        texts.append(_as_text(errors["external_id"]))
    if exc.param == "external_id":
        texts.append(exc.message)
    for d in details.get("error_details") or [] if isinstance(details, dict) else []:
        if isinstance(d, dict) and d.get("param") == "external_id":
            texts.append(str(d.get("message") or d.get("code") or ""))
    if isinstance(details, dict) and isinstance(details.get("external_id"), list):
        texts.append(_as_text(details["external_id"]))
    return any(re.search(r"already (exists|been taken|in use)|duplicate|taken", t, re.I) for t in texts)
