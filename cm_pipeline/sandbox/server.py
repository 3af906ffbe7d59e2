"""HTTP plumbing of the sandbox: a stdlib ThreadingHTTPServer that authenticates API requests, applies
the knobs (latency, rate limit, capacity, faults: see faults.py) and logs every request. The answers come
from api.py (/v1) and admin.py (/_sandbox, no auth, exempt from the knobs)."""

from __future__ import annotations

import base64
import binascii
import itertools
import socket
import threading
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from cm_pipeline.sandbox.admin import admin_answer
from cm_pipeline.sandbox.api import ROUTE_CREATE, ApiRequest, api_answer
from cm_pipeline.sandbox.faults import EMPTY_SUCCESS_BODIES, Governor, Knobs
from cm_pipeline.sandbox.responses import HTML_500, HTML_TYPE, JSON_TYPE, error_body, json_response
from cm_pipeline.sandbox.store import Store

RATE_LIMIT_BODY = error_body(429, "Your request rate has exceeded our rate limit.")
REQUEST_LOG_MAX = 200_000


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

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
        except (ValueError, OSError):
            self.close_connection = True
            return
        if path.startswith("/_sandbox"):
            self._send(*admin_answer(self.server, method, path, parts.query, body))
            return
        self._api(ApiRequest(method, self.path, path, parts.query, body))

    # ------------------------------------------------------------ sending

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

    # ------------------------------------------------------------ API requests

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

    def _api(self, request: ApiRequest) -> None:
        gov = self.server.governor
        route, _ = request.route()
        verdict = gov.enter(route or f"{request.method} {request.path}")
        self._pending_leave = (request.method, request.path, request.query)
        self._fault_kind: str | None = None
        status: int | None = None
        try:
            status = self._refusal(verdict)
            if status is not None:
                return
            fault = gov.pick_fault(request.method)
            if fault is not None and fault[1] == "before":
                self._fault_kind = fault[0]
                status = self._fault(self._fault_kind, route)
                return
            (status, payload, ctype), self._fault_kind = api_answer(self.server.store, gov, request)
            if fault is not None:
                self._fault_kind = fault[0]
                status = self._fault(self._fault_kind, route)
                return
            self._send(status, payload, ctype)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._leave(status)  # when nothing was sent (e.g. the client went away)

    def _refusal(self, verdict: str | None) -> int | None:
        """Send the answer to a request the knobs or the key refuse (503, 429, 401); its status, or None."""
        gov = self.server.governor
        if verdict == "over_capacity":
            self._send(*json_response(503, error_body(503, "Too many parallel connections.")))
            return 503
        if verdict == "rate_limited":
            extra = {}
            if gov.knobs.retry_after is not None:
                ra = gov.knobs.retry_after
                extra["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
            self._send(*json_response(429, RATE_LIMIT_BODY), extra=extra)
            return 429
        latency = gov.knobs.latency_ms
        if latency:
            time.sleep(latency / 1000.0)
        if not self._authorised():
            self._send(*json_response(401, error_body(401, "No valid API key provided")))
            return 401
        return None

    def _fault(self, kind: str, route: str | None) -> int | None:
        """Send the answer of fault `kind` (see faults.py) instead of the real one; its status, None if dropped."""
        if kind in EMPTY_SUCCESS_BODIES:
            status = 201 if route == ROUTE_CREATE else 200
            self._send(status, EMPTY_SUCCESS_BODIES[kind], JSON_TYPE)
            return status
        if kind == "drop":
            self._drop()
            return None
        if kind == "html500":
            self._send(500, HTML_500, HTML_TYPE)
            return 500
        code = int(kind)
        phrase = {520: "Web Server Returned an Unknown Error", 524: "A Timeout Occurred"}.get(code)
        self._send(*json_response(code, error_body(code, phrase or HTTPStatus(code).phrase)))
        return code
