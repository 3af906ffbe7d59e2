"""HTTP layer of the sandbox: stdlib ThreadingHTTPServer speaking ChartMogul's customer endpoints.

API routes (HTTP Basic auth, key as username):
  GET /v1/customers, GET/PATCH /v1/customers/{uuid}, POST /v1/customers,
  POST /v1/customers/attributes/custom
Admin routes (no auth, exempt from latency/limits/faults), used by SandboxControl:
  GET /_sandbox/health, GET /_sandbox/stats, POST /_sandbox/stats/reset, GET|POST /_sandbox/config,
  GET /_sandbox/requests?since=N, GET|POST /_sandbox/customers, GET|PATCH|DELETE /_sandbox/customers/{uuid},
  GET /_sandbox/custom_attributes, GET /_sandbox/data_sources
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import socket
import sys
import threading
import time
import traceback
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cm_pipeline.sandbox import validation as v
from cm_pipeline.sandbox.faults import EMPTY_SUCCESS_BODIES, Governor, Knobs, validated_knobs
from cm_pipeline.sandbox.store import Filters, Store, decode_cursor, dumps

ROUTE_LIST = "GET /v1/customers"
ROUTE_GET = "GET /v1/customers/{uuid}"
ROUTE_PATCH = "PATCH /v1/customers/{uuid}"
ROUTE_CREATE = "POST /v1/customers"
ROUTE_ADD_CUSTOM = "POST /v1/customers/attributes/custom"
RATE_LIMIT_BODY = {"code": 429, "message": "Your request rate has exceeded our rate limit.", "param": None}
HTML_500 = (
    b"<!DOCTYPE html>\n<html><head><title>We're sorry, but something went wrong (500)</title></head>"
    b"<body><h1>We're sorry, but something went wrong.</h1></body></html>\n"
)
REQUEST_LOG_MAX = 200_000


def _json(status: int, body: Any) -> tuple[int, bytes, str]:
    return status, dumps(body), "application/json; charset=utf-8"


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, store: Store, knobs: Knobs, api_key: str | None):
        super().__init__(addr, SandboxHandler)
        self.store = store
        self.governor = Governor(knobs)
        self.api_key = api_key
        self.log: deque[dict] = deque(maxlen=REQUEST_LOG_MAX)
        self._seq = itertools.count(1)
        self._log_lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

    def process_request(self, request, client_address):
        with self._conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self.connections)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def record(self, method: str, path: str, query: str, status: int | None, fault: str | None) -> None:
        with self._log_lock:
            self.log.append(
                {
                    "seq": next(self._seq),
                    "ts": time.time(),
                    "method": method,
                    "path": path,
                    "query": query,
                    "status": status,
                    "fault": fault,
                }  # fmt: skip
            )

    def requests_since(self, since: int) -> list[dict]:
        with self._log_lock:
            return [e for e in self.log if e["seq"] > since]


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SandboxHTTPServer
    server_version = "cm-sandbox/1"

    def log_message(self, format, *args):  # silence per-request stderr logging
        pass

    # ------------------------------------------------------------ plumbing

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        head = [
            f"HTTP/1.1 {status} {phrase}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        for name, value in (extra or {}).items():
            head.append(f"{name}: {value}")
        if self.close_connection:
            head.append("Connection: close")
        # The request stops counting as in flight before its response leaves: a client that reads the
        # response and sends its next request at once must not be counted twice (nor 503'd for it).
        self._leave(status)
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def _leave(self, status: int | None) -> None:
        """Release this request's in-flight slot and log it, once, before any response byte leaves
        (no-op outside an API request): a client that has its answer also finds it in the log."""
        pending = getattr(self, "_pending_leave", None)
        if pending:
            self._pending_leave = None
            method, path, query = pending
            self.server.governor.leave(status)
            self.server.record(method, path, query, status, self._fault_kind)

    def _drop(self) -> None:
        self._leave(None)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        if path.startswith("/_sandbox"):
            status, payload, ctype = self._admin(method, path, parts.query, body)
            self._send(status, payload, ctype)
            return
        self._api(method, path, parts.query, body)

    # ------------------------------------------------------------ API

    def _route(self, method: str, path: str) -> tuple[str | None, str | None]:
        if path == "/v1/customers":
            return {"GET": ROUTE_LIST, "POST": ROUTE_CREATE}.get(method), None
        if path == "/v1/customers/attributes/custom":
            return (ROUTE_ADD_CUSTOM if method == "POST" else None), None
        if path.startswith("/v1/customers/") and path.count("/") == 3:
            uuid = unquote(path.rsplit("/", 1)[1])
            return {"GET": ROUTE_GET, "PATCH": ROUTE_PATCH}.get(method), uuid
        return None, None

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            return False
        try:
            user = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        expected = self.server.api_key
        return bool(user) and (expected is None or user == expected)

    def _api(self, method: str, path: str, query: str, body: bytes) -> None:
        srv = self.server
        gov = srv.governor
        route, uuid = self._route(method, path)
        route_key = route or f"{method} {path}"
        verdict = gov.enter(route_key)
        self._pending_leave = (method, path, query)
        self._fault_kind: str | None = None
        status: int | None = None
        try:
            if verdict == "over_capacity":
                status = 503
                self._send(
                    *_json(503, {"code": 503, "message": "Too many parallel connections.", "param": None})
                )
                return
            if verdict == "rate_limited":
                extra = {}
                if gov.knobs.retry_after is not None:
                    ra = gov.knobs.retry_after
                    extra["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
                status = 429
                self._send(*_json(429, RATE_LIMIT_BODY), extra=extra)
                return
            latency = gov.knobs.latency_ms
            if latency:
                time.sleep(latency / 1000.0)
            if not self._authorised():
                status = 401
                self._send(*_json(401, {"code": 401, "message": "No valid API key provided", "param": None}))
                return
            fault = gov.pick_fault(method)
            if fault is not None and fault[1] == "before":
                self._fault_kind = fault[0]
                status = self._fault(self._fault_kind, route)
                return
            status, payload, ctype = self._handle(route, uuid, method, query, body)
            if fault is not None:
                self._fault_kind = fault[0]
                status = self._fault(self._fault_kind, route)
                return
            self._send(status, payload, ctype)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._leave(status)  # when nothing was sent (e.g. the client went away)

    def _fault(self, kind: str, route: str | None) -> int | None:
        """Send the answer of fault `kind` (see faults.py) instead of the real one; its status, None if dropped."""
        if kind in EMPTY_SUCCESS_BODIES:
            status = 201 if route == ROUTE_CREATE else 200
            self._send(status, EMPTY_SUCCESS_BODIES[kind], "application/json; charset=utf-8")
            return status
        if kind == "drop":
            self._drop()
            return None
        if kind == "html500":
            self._send(500, HTML_500, "text/html; charset=utf-8")
            return 500
        code = int(kind)
        phrase = {520: "Web Server Returned an Unknown Error", 524: "A Timeout Occurred"}.get(code)
        message = phrase or HTTPStatus(code).phrase
        self._send(*_json(code, {"code": code, "message": message, "param": None}))
        return code

    def _handle(self, route, uuid, method, query, body) -> tuple[int, bytes, str]:
        store = self.server.store
        try:
            if route is None:
                return _json(
                    404, {"code": 404, "message": f"No route for {method} {self.path}", "param": None}
                )
            if route == ROUTE_LIST:
                return self._list(query)
            if route == ROUTE_GET:
                return 200, store.get_bytes(uuid), "application/json; charset=utf-8"
            data = self._parse_json(body)
            if route == ROUTE_CREATE:
                return _json(201, store.create(data))
            if route == ROUTE_PATCH:
                return _json(200, store.update(uuid, data))
            if route == ROUTE_ADD_CUSTOM:
                return _json(200, {"entries": store.add_custom_by_email(data)})
        except v.ApiFailure as exc:
            return _json(exc.status, exc.body)
        except (
            Exception
        ):  # a sandbox bug answers as the API's own failures do (an HTML 500), not a dropped line
            traceback.print_exc(file=sys.stderr)
            return 500, HTML_500, "text/html; charset=utf-8"
        return _json(404, {"code": 404, "message": "Not found", "param": None})

    @staticmethod
    def _parse_json(body: bytes) -> Any:
        if not body:
            raise v.bad_param("Request body is missing", None)
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise v.bad_param(f"Request body is not valid JSON: {exc}", None) from None

    def _list(self, query: str) -> tuple[int, bytes, str]:
        q = {k: vals[-1] for k, vals in parse_qs(query, keep_blank_values=True).items()}
        per_page = v.parse_per_page(q.get("per_page"))
        status = q.get("status") or None
        filters = Filters(
            data_source_uuid=q.get("data_source_uuid") or None,
            external_id=q.get("external_id") or None,
            status=v.status_from_filter(status) if status else None,
            system=q.get("system") or None,
        )
        after = None
        cursor = q.get("cursor") or None
        if cursor:
            after, cursor_filters = decode_cursor(cursor)
            given = [x for x in filters.as_list() if x is not None]
            if given and filters != cursor_filters:
                raise v.bad_param("cursor was issued for different filters than this request's", "cursor")
            filters = cursor_filters
        store = self.server.store
        page = store.page(filters, per_page, after)
        next_cursor, has_more = page.cursor, page.has_more
        fault = self.server.governor.knobs.pagination_fault
        if fault is not None and cursor:
            next_cursor, has_more = self._pagination_fault(fault, cursor, filters, per_page, page)
        tail = (
            b'"cursor":'
            + (json.dumps(next_cursor).encode())
            + b',"has_more":'
            + (b"true" if has_more else b"false")
        )
        # First pages carry the deprecated paging fields, except external_id look-ups, which answer
        # exactly {"entries": [...], "has_more": ..., "cursor": ...} (README facts).
        if page.total is not None and filters.external_id is None:
            total_pages = (page.total + per_page - 1) // per_page
            tail = (
                f'"per_page":{per_page},"page":1,"current_page":1,"total_pages":{total_pages},'.encode()
                + tail
            )
        payload = b'{"entries":[' + b",".join(page.entries) + b"]," + tail + b"}"
        return 200, payload, "application/json; charset=utf-8"

    def _pagination_fault(
        self, fault: str, cursor: str, filters: Filters, per_page: int, page
    ) -> tuple[str | None, bool]:
        """(cursor, has_more) of a continuation page under the pagination_fault knob (see faults.py)."""
        if fault == "rewind_cursor":
            first = self.server.store.page(filters, per_page, None).cursor
            if first is None or first == cursor:
                return page.cursor, page.has_more
            self._fault_kind = fault
            self.server.governor.count_fault()
            return first, True
        self._fault_kind = fault
        self.server.governor.count_fault()
        if fault == "repeat_cursor":
            return cursor, True
        return None, True  # has_more_without_cursor

    # ------------------------------------------------------------ admin

    def _admin(self, method: str, path: str, query: str, body: bytes) -> tuple[int, bytes, str]:
        srv = self.server
        store = srv.store
        q = {k: vals[-1] for k, vals in parse_qs(query).items()}
        try:
            data = json.loads(body) if body else {}
        except ValueError as exc:
            return _json(400, {"error": f"invalid JSON: {exc}"})
        try:
            if path == "/_sandbox/health":
                return _json(200, {"ok": True, "customers": len(store)})
            if path == "/_sandbox/stats":
                return _json(200, {**srv.governor.snapshot(), "writes_applied": store.writes_applied})
            if path == "/_sandbox/stats/reset" and method == "POST":
                srv.governor.reset_stats()
                with store.lock:
                    store.writes_applied = 0
                return _json(200, {"ok": True})
            if path == "/_sandbox/config":
                if method == "POST":
                    srv.governor.configure(data)
                return _json(200, srv.governor.knobs.as_dict())
            if path == "/_sandbox/requests":
                return _json(200, {"entries": srv.requests_since(int(q.get("since", 0)))})
            if path == "/_sandbox/custom_attributes":
                with store.lock:
                    return _json(200, dict(store.definitions))
            if path == "/_sandbox/data_sources":
                with store.lock:
                    return _json(200, {"entries": list(store.data_sources.values())})
            if path == "/_sandbox/customers":
                if method == "POST":
                    return _json(201, store.admin_insert(data))
                return _json(200, {"entries": store.all()})
            if path.startswith("/_sandbox/customers/"):
                uuid = unquote(path.rsplit("/", 1)[1])
                if method == "GET":
                    doc = store.get(uuid)
                    return _json(200, doc) if doc is not None else _json(404, {"error": "not found"})
                if method == "PATCH":
                    return _json(200, store.admin_modify(uuid, data))
                if method == "DELETE":
                    store.admin_delete(uuid)
                    return _json(200, {"ok": True})
        except v.ApiFailure as exc:
            return _json(exc.status, exc.body)
        except (ValueError, TypeError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(404, {"error": f"no admin route {method} {path}"})


def make_http_server(
    host: str, port: int, store: Store, knobs: Knobs, api_key: str | None
) -> SandboxHTTPServer:
    return SandboxHTTPServer((host, port), store, validated_knobs(knobs, {}), api_key)
