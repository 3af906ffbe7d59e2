"""Fixtures for the client's tests over real sockets: a sandbox per test module, its admin control reset
for each test, clients with fast backoff, and helpers that read the sandbox's request log."""

from __future__ import annotations

import base64
import socket
import time
from random import Random

import pytest

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline_tests.conftest import TEST_API_KEY

# The key as it travels: in the Authorization header it is base64("KEY:").
KEY_FORMS = (TEST_API_KEY, base64.b64encode(f"{TEST_API_KEY}:".encode()).decode())

DEFAULT_KNOBS = {
    "latency_ms": 0.0,
    "rate_limit_rps": None,
    "retry_after": None,
    "max_connections": None,
    "fault_rate": 0.0,
    "fault_kinds": ["500", "502", "503", "504"],
    "fault_phase": "before",
    "fault_methods": ["GET", "POST", "PATCH", "PUT", "DELETE"],
    "fault_seed": 0,
    "pagination_fault": None,
}


@pytest.fixture(scope="module")
def server():
    with SandboxServer(customers=30, seed=7, api_key=TEST_API_KEY, port=0) as srv:
        yield srv


@pytest.fixture
def ctl(server):
    """The sandbox's admin control, with default knobs and zeroed counters for each test."""
    control = server.control
    control.configure(**DEFAULT_KNOBS)
    control.reset_stats()
    log = control.requests()
    control.test_log_start = log[-1]["seq"] if log else 0  # the request log is not reset with the stats
    yield control
    control.configure(**DEFAULT_KNOBS)


@pytest.fixture
def make_client(server):
    """Clients with fast backoff so retry tests take fractions of a second; closed after the test."""
    made = []

    def make(**kw):
        opts = {
            "api_key": TEST_API_KEY,
            "base_url": server.base_url,
            "max_requests_per_second": 200,
            "max_connections": 10,
            "connect_timeout": 2.0,
            "read_timeout": 5.0,
            "max_retry_seconds": 10.0,
            "backoff_base": 0.02,
            "backoff_max": 0.2,
            "min_attempt_seconds": 0.05,
            "rng": Random(1),
        }
        opts.update(kw)
        client = ChartMogulClient(**opts)
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()


@pytest.fixture
def client(make_client):
    return make_client()


def api_requests(ctl):
    """Request-log rows of this test for the API (not the admin endpoints)."""
    return [r for r in ctl.requests(since=ctl.test_log_start) if r["path"].startswith("/v1/")]


def drain(ctl, n: int, timeout: float = 5.0) -> list[dict]:
    """Wait until the sandbox has finished (and logged) n API requests of this test; abandoned
    (timed-out) requests keep a server thread busy and would count as in flight in the next test."""
    deadline = time.monotonic() + timeout
    while len(rows := api_requests(ctl)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return rows


def a_customer(ctl) -> dict:
    return next(c for c in ctl.customers() if c.get("email"))


def custom_ds(ctl) -> str:
    """A Custom data source: the API creates customers only in those."""
    return next(d["uuid"] for d in ctl.data_sources() if d["system"] == "Custom")


@pytest.fixture
def closed_port():
    """A local port nothing listens on: every connection is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def unanswered_port():
    """A port whose SYNs go unanswered: a listener that never accepts, its accept queue full (Linux
    then drops new SYNs, so a connect times out instead of being refused)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(16):
        sock = socket.socket()
        sock.settimeout(0.2)
        try:
            sock.connect(("127.0.0.1", port))
        except TimeoutError:
            sock.close()
            break
        fillers.append(sock)
    else:
        pytest.fail("could not fill the accept queue of a local listener")
    yield port
    for sock in fillers:
        sock.close()
    listener.close()


def retry_records(caplog) -> list:
    """The client's retry log records: each retry it decided, with its wait and the call's elapsed time."""
    return [r for r in caplog.records if hasattr(r, "cm_wait")]


def attempt_records(caplog) -> list:
    """The client's DEBUG records of each retry attempt: the budget left and the timeouts it was given."""
    return [r for r in caplog.records if hasattr(r, "cm_timeout")]
