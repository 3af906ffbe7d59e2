"""Keeping the API key out of everything the client shows: URL redaction, the key's text forms, scrubbing."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from cm_pipeline.chartmogul.errors import ChartMogulError


def public_url(url: str) -> str:
    """`url` without any user:password@ part (nor query or fragment), for logs and reprs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


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


def scrub_error(err: ChartMogulError, secrets: tuple[str, ...]) -> ChartMogulError:
    """`err` with every text part scrubbed of the key, and no exception chain (a requests exception's
    `.request` carries the Authorization header)."""
    for name in ("message", "param", "path", "method"):
        value = getattr(err, name, None)
        if isinstance(value, str):
            setattr(err, name, scrub(value, secrets))
    if err.details is not None:
        err.details = scrub(err.details, secrets)
    err.args = (err.message,)
    err.__cause__ = None
    err.__context__ = None
    return err
