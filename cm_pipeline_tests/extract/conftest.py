"""Fixtures and helpers for the extraction tests: a sandbox over real sockets, databases, a refresh runner."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from cm_pipeline.extract.asset import chartmogul_customers
from cm_pipeline.extract.checks import EXTRACT_CHECKS
from cm_pipeline.resources import ChartMogulAccess, ChartMogulResource, WarehouseResource
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline.warehouse.schema import CUSTOMER_DATA_COLUMNS
from cm_pipeline_tests.conftest import TEST_API_KEY


@pytest.fixture
def sandbox():
    """A small seeded sandbox that requires TEST_API_KEY."""
    with SandboxServer(customers=300, seed=7, api_key=TEST_API_KEY) as srv:
        yield srv


@pytest.fixture
def other_db(postgres):
    """A second database, for comparing two runs side by side."""
    url = postgres.create_database("cm_t2")
    yield url
    postgres.drop_database(url)


def chartmogul_resource(base_url: str, api_key: str = TEST_API_KEY, **kw) -> ChartMogulResource:
    settings = {
        "max_requests_per_second": 500.0,
        "max_connections": 10,
        "read_timeout": 10.0,
        "max_retry_seconds": 60.0,
    }
    return ChartMogulResource(
        access=ChartMogulAccess(api_key=api_key, base_url=base_url), **{**settings, **kw}
    )


def refresh(
    base_url: str,
    db_url: str,
    *,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    api_key: str = TEST_API_KEY,
    client: dict | None = None,
    **config,
) -> dg.ExecuteInProcessResult:
    """Materialise chartmogul_customers (and its checks) against `base_url` into `db_url`."""
    run_config = {"per_page": 20, "progress_interval_seconds": 0.5, **config}
    return dg.materialize(
        [chartmogul_customers, *EXTRACT_CHECKS],
        resources={
            "chartmogul": chartmogul_resource(base_url, api_key, **(client or {})),
            "warehouse": WarehouseResource(url=db_url),
        },
        run_config={"ops": {"chartmogul_customers": {"config": run_config}}},
        instance=instance,
        raise_on_error=raise_on_error,
    )


def materialization_metadata(result: dg.ExecuteInProcessResult) -> dict:
    """The materialization's metadata values, with the counts of its "run" JSON entry alongside."""
    [mat] = result.asset_materializations_for_node("chartmogul_customers")
    values = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return {**values, **values.get("run", {})}


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def snapshot(db_url: str) -> list[tuple]:
    """The table's data columns and deletion flag, by uuid (what two equivalent runs must agree on)."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            cols = ", ".join(CUSTOMER_DATA_COLUMNS)
            return [
                tuple(r)
                for r in conn.execute(
                    sa.text(f"SELECT {cols}, deleted_at IS NOT NULL FROM chartmogul.customers ORDER BY uuid")
                )
            ]
    finally:
        engine.dispose()


def exact_table(db_url: str) -> list[tuple]:
    """Every column plus each row's physical version: equal only if nothing was written."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    sa.text("SELECT *, xmin::text, ctid::text FROM chartmogul.customers ORDER BY uuid")
                )
            ]
    finally:
        engine.dispose()


def query(db_url: str, sql: str, **params):
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).all()
    finally:
        engine.dispose()


def row_by_uuid(db_url: str, uuid: str) -> dict:
    """The published row of one customer, column by column."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            sql = sa.text("SELECT * FROM chartmogul.customers WHERE uuid = :u")
            return dict(conn.execute(sql, {"u": uuid}).mappings().one())
    finally:
        engine.dispose()


class Gateway:
    """A gateway in front of the sandbox, over real sockets: forwards every request unchanged, except those
    `answer(method, path, query)` answers itself with (status, body bytes, content type) — what a proxy,
    a CDN or an API version the sandbox does not model would send."""

    def __init__(self, upstream_base_url: str, answer):
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        up = urlsplit(upstream_base_url)
        self.answered: list[tuple[str, str]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _relay(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path, _, query = self.path.partition("?")
                own = answer(method, path, query)
                if own is not None:
                    status, payload, ctype = own
                    gateway.answered.append((method, self.path))
                    headers = {"Content-Type": ctype}
                else:
                    conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                    try:
                        fwd = {
                            k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                        }
                        conn.request(method, self.path, body=body, headers=fwd)
                        resp = conn.getresponse()
                        status, payload = resp.status, resp.read()
                        headers = {
                            k: v for k, v in resp.getheaders() if k.lower() in ("content-type", "retry-after")
                        }
                    finally:
                        conn.close()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._relay("GET")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}{up.path}"

    def __enter__(self) -> Gateway:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def json_answer(status: int, body: dict) -> tuple[int, bytes, str]:
    import json

    return status, json.dumps(body).encode(), "application/json; charset=utf-8"


class ListLog:
    """A Log that keeps its lines (info and warning), for asserting what a run logged."""

    def __init__(self):
        import threading

        self.lines: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def info(self, msg: str) -> None:
        with self._lock:
            self.lines.append(("info", msg))

    def warning(self, msg: str) -> None:
        with self._lock:
            self.lines.append(("warning", msg))

    def matching(self, text: str) -> list[str]:
        with self._lock:
            return [m for _, m in self.lines if text in m]
