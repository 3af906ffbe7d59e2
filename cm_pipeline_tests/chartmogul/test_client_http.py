"""The client against the sandbox over real sockets: endpoints, error shapes, retries, limiter, idempotency."""

from __future__ import annotations

import base64
import logging
import re
import socket
import threading
import time
import traceback
from random import Random

import pytest
import requests

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.chartmogul.errors import (
    AuthenticationError,
    BadRequestError,
    ChartMogulError,
    NotFoundError,
    PaginationError,
    RateLimitError,
    ServerError,
    TransportError,
    UnprocessableEntityError,
)
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


# ---------------------------------------------------------------------------------------- endpoints


def test_list_customers_walks_every_page_with_checkpointable_cursors(client, ctl):
    pages = list(client.list_customers(per_page=7))
    assert [p.number for p in pages] == [1, 2, 3, 4, 5]
    assert [len(p.entries) for p in pages] == [7, 7, 7, 7, 2]
    assert [p.has_more for p in pages] == [True, True, True, True, False]
    assert pages[0].request_cursor is None
    assert [p.request_cursor for p in pages[1:]] == [p.cursor for p in pages[:-1]]
    uuids = [e["uuid"] for p in pages for e in p.entries]
    assert len(uuids) == len(set(uuids)) == 30
    assert set(uuids) == {c["uuid"] for c in ctl.customers()}
    assert ctl.stats()["by_route"] == {"GET /v1/customers": 5}


def test_list_customers_page_resumes_from_a_cursor(client):
    first = client.list_customers_page(per_page=12)
    assert first.number == 1 and first.has_more and first.cursor
    rest = list(client.list_customers(per_page=12, cursor=first.cursor))
    assert rest[0].request_cursor == first.cursor
    uuids = [e["uuid"] for e in first.entries] + [e["uuid"] for p in rest for e in p.entries]
    assert len(uuids) == len(set(uuids)) == 30


def test_list_filters(client, ctl):
    everyone = ctl.customers()
    by_status: dict[str, set] = {}
    for c in everyone:
        by_status.setdefault(c["status"], set()).add(c["uuid"])
    status, expected = max(by_status.items(), key=lambda kv: len(kv[1]))
    got = {e["uuid"] for p in client.list_customers(status=status, per_page=5) for e in p.entries}
    assert got == expected

    someone = everyone[3]
    page = client.list_customers_page(
        external_id=someone["external_id"], data_source_uuid=someone["data_source_uuid"]
    )
    assert [e["uuid"] for e in page.entries] == [someone["uuid"]]

    system = someone["billing-system-type"]
    got = {e["uuid"] for p in client.list_customers(system=system) for e in p.entries}
    assert someone["uuid"] in got and all(
        c["billing-system-type"] == system for c in everyone if c["uuid"] in got
    )

    none = client.list_customers_page(external_id="no-such-external-id")
    assert (none.entries, none.has_more, none.cursor) == ([], False, None)


def test_retrieve_customer(client, ctl):
    someone = a_customer(ctl)
    got = client.retrieve_customer(someone["uuid"])
    assert got["uuid"] == someone["uuid"] and got["external_id"] == someone["external_id"]


def test_create_update_and_add_custom_attributes(client, ctl):
    ds = custom_ds(ctl)
    result = client.create_customer(
        {
            "data_source_uuid": ds,
            "external_id": "client-test-1",
            "name": "Zoë O'Brien; DROP TABLE x",
            "email": "client-test-1@example.com",
            "state": "US-NY",
            "country": "US",
        }
    )
    assert result.created is True
    uuid = result.customer["uuid"]
    assert result.customer["state"] == "NY"
    assert ctl.customer(uuid)["name"] == "Zoë O'Brien; DROP TABLE x"

    entries = client.add_custom_attributes(
        "client-test-1@example.com",
        [{"type": "Integer", "key": "client_test_seats", "value": 12}],
    )
    assert [e["uuid"] for e in entries] == [uuid]
    assert entries[0]["attributes"]["custom"]["client_test_seats"] == 12
    assert ctl.custom_attribute_definitions()["client_test_seats"] == "Integer"

    updated = client.update_customer(
        uuid, {"attributes": {"tags": ["vip", "beta"], "custom": {"client_test_seats": 13}}}
    )
    assert updated["attributes"]["tags"] == ["vip", "beta"]
    assert ctl.customer(uuid)["attributes"]["custom"]["client_test_seats"] == 13

    again = client.create_customer({"data_source_uuid": ds, "external_id": "client-test-1", "name": "x"})
    assert again.created is False and again.customer["uuid"] == uuid
    assert sum(1 for c in ctl.customers() if c["external_id"] == "client-test-1") == 1


# ------------------------------------------------------------------------ last_status, per thread


def test_last_status_is_the_status_of_this_threads_last_answer(client, ctl):
    assert client.last_status is None  # no call yet
    someone = a_customer(ctl)
    client.retrieve_customer(someone["uuid"])
    assert client.last_status == 200
    created = client.create_customer(
        {"data_source_uuid": custom_ds(ctl), "external_id": "last-status-1", "name": "Last Status"}
    )
    assert created.created is True and client.last_status == 201 and created.status == 201
    # A duplicate: the POST met a 422 and a lookup (GET, 200) found the customer; the result keeps the POST's.
    again = client.create_customer({"data_source_uuid": custom_ds(ctl), "external_id": "last-status-1"})
    assert again.created is False and again.status == 422 and client.last_status == 200
    with pytest.raises(NotFoundError):
        client.retrieve_customer("cus_00000000-0000-0000-0000-000000000000")
    assert client.last_status == 404


def test_last_status_is_kept_per_thread(client, ctl):
    """Two threads on one client, each reading after BOTH calls are done: each sees its own call's status."""
    someone = a_customer(ctl)
    ds = custom_ds(ctl)
    both_done = threading.Barrier(2, timeout=10)
    seen: dict[str, int | None] = {}

    def reader():
        client.retrieve_customer(someone["uuid"])
        both_done.wait()
        seen["GET"] = client.last_status

    def creator():
        client.create_customer({"data_source_uuid": ds, "external_id": "last-status-thread", "name": "T"})
        both_done.wait()
        seen["POST"] = client.last_status

    threads = [threading.Thread(target=reader), threading.Thread(target=creator)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert seen == {"GET": 200, "POST": 201}
    assert client.last_status is None  # this (main) thread made no call


def test_last_status_of_a_retried_call_is_its_final_answer(make_client, ctl):
    ctl.configure(fault_rate=0.5, fault_kinds=["503"], fault_seed=11)
    client = make_client()
    someone = a_customer(ctl)["uuid"]
    for _ in range(6):
        client.retrieve_customer(someone)
        assert client.last_status == 200
    assert client.stats["by_status"]["503"] >= 1


# --------------------------------------------------------------- empty 2xx answers (empty body, {})


@pytest.mark.parametrize("kind", ["empty_body", "empty_object"])
def test_an_empty_2xx_list_page_fails_loudly_naming_entries(client, ctl, kind):
    first = client.list_customers_page(per_page=10)
    assert first.has_more and len(first.entries) == 10
    ctl.configure(fault_rate=1.0, fault_kinds=[kind], fault_methods=["GET"])
    before = ctl.stats()["requests"]
    with pytest.raises(PaginationError, match=r"no 'entries' \(an empty object\)") as info:
        list(client.list_customers(per_page=10, cursor=first.cursor))  # mid-walk: never a silent end
    assert "page 1: 'entries' must be a list" in str(info.value)
    with pytest.raises(PaginationError, match="'entries'"):
        client.list_customers_page(per_page=10)
    assert ctl.stats()["requests"] - before == 2  # refused at once, not retried
    assert client.last_status == 200


@pytest.mark.parametrize("kind", ["empty_body", "empty_object"])
def test_an_empty_2xx_customer_answer_reaches_the_caller_as_an_empty_dict(client, ctl, kind):
    """The client turns an empty 2xx body into {}; callers validate it (reverse_etl/live.py refuses it)."""
    ctl.configure(fault_rate=1.0, fault_kinds=[kind], fault_methods=["GET"])
    assert client.retrieve_customer(a_customer(ctl)["uuid"]) == {}
    assert client.last_status == 200


# ------------------------------------------------------------------- error shapes, never retried


def test_404_not_found_is_not_retried(client, ctl):
    with pytest.raises(NotFoundError) as info:
        client.retrieve_customer("cus_00000000-0000-0000-0000-000000000000")
    err = info.value
    assert (err.status, err.message, err.param) == (404, "Customer not found", "customer_uuid")
    assert "(param 'customer_uuid')" in str(err)
    assert info.value.path == "/customers/cus_00000000-0000-0000-0000-000000000000"
    assert len(api_requests(ctl)) == 1


def test_401_bad_key_is_not_retried(make_client, ctl):
    wrong = make_client(api_key="wrong-key-123")
    with pytest.raises(AuthenticationError) as info:
        wrong.list_customers_page()
    assert info.value.status == 401
    assert "wrong-key-123" not in str(info.value) + repr(info.value)
    assert len(api_requests(ctl)) == 1


def test_400_code_message_param_is_not_retried(client, ctl):
    uuid = a_customer(ctl)["uuid"]
    with pytest.raises(BadRequestError) as info:
        client.update_customer(uuid, {"attributes": "not an object"})
    assert (info.value.status, info.value.param) == (400, "attributes")
    assert "attributes" in info.value.message
    assert len(api_requests(ctl)) == 1


def test_422_error_string_shape_is_not_retried(client, ctl):
    with pytest.raises(UnprocessableEntityError) as info:
        client.create_customer({"data_source_uuid": "ds_nope", "external_id": "e1", "name": "n"})
    assert info.value.message == "Data source not found"
    assert len(api_requests(ctl)) == 1


def test_422_field_list_shape_is_not_retried(client, ctl):
    email = a_customer(ctl)["email"]
    with pytest.raises(UnprocessableEntityError) as info:
        client.add_custom_attributes(email, [{"type": "Integer", "key": "client_test_bad", "value": "abc"}])
    assert info.value.param and info.value.message
    assert "error_details" in info.value.details
    assert len(api_requests(ctl)) == 1


def test_422_errors_object_shape_reaches_the_caller_when_the_duplicate_is_ambiguous(client, ctl):
    # Two customers already share the external_id, so create_customer cannot resolve the duplicate
    # 422 to one of them: the API's {"errors": {...}} error must reach the caller as it came.
    ds = custom_ds(ctl)
    for _ in range(2):
        ctl.insert_customer(data_source_uuid=ds, external_id="client-test-twice", name="Twice")
    with pytest.raises(UnprocessableEntityError) as info:
        client.create_customer({"data_source_uuid": ds, "external_id": "client-test-twice", "name": "n"})
    err = info.value
    message = "The external ID for this customer already exists in our system."
    assert (err.status, err.param) == (422, "external_id")
    assert err.message == f"external_id: {message}"
    assert err.details == {"errors": {"external_id": message}}
    assert err.attempts == 1
    routes = [(r["method"], r["path"], r["status"]) for r in api_requests(ctl)]
    assert routes == [("POST", "/v1/customers", 422), ("GET", "/v1/customers", 200)]


# ---------------------------------------------------------------------------------------- retries


def test_429_with_retry_after_is_honoured(make_client, ctl, caplog):
    ctl.configure(rate_limit_rps=2, retry_after=0.4)
    client = make_client()
    caplog.set_level(logging.INFO, logger="cm_pipeline.chartmogul")
    t0 = time.monotonic()
    for _ in range(5):
        client.list_customers_page(per_page=1)
    elapsed = time.monotonic() - t0
    stats = client.stats
    assert stats["rate_limited"] >= 1 and stats["retries"] == stats["rate_limited"]
    waits = [r.cm_wait for r in caplog.records if hasattr(r, "cm_wait")]
    assert waits and all(w == pytest.approx(0.4) for w in waits)
    assert elapsed >= 0.4 * len(waits) * 0.9
    log = api_requests(ctl)
    for prev, nxt in zip(log, log[1:], strict=False):
        if prev["status"] == 429:
            assert nxt["ts"] - prev["ts"] >= 0.35, "retried before Retry-After elapsed"


def test_429_without_retry_after_backs_off_exponentially_with_jitter(make_client, ctl, caplog):
    ctl.configure(rate_limit_rps=2, retry_after=None)
    client = make_client(backoff_base=0.1, backoff_max=2.0, rng=Random(5))
    caplog.set_level(logging.INFO, logger="cm_pipeline.chartmogul")
    for _ in range(4):
        client.list_customers_page(per_page=1)
    retries = [r for r in caplog.records if hasattr(r, "cm_wait")]
    assert retries and all(r.cm_status == 429 for r in retries)
    # the waits are the full-jitter draws of Random(5) over a growing ceiling, per call
    rng = Random(5)
    expected = []
    for r in retries:
        expected.append(rng.random() * min(2.0, 0.1 * 2 ** (r.cm_attempt - 1)))
    assert [r.cm_wait for r in retries] == pytest.approx(expected)
    assert max(r.cm_attempt for r in retries) >= 2
    # the sandbox saw each retry no sooner than the wait the client logged
    log = api_requests(ctl)
    gaps = [b["ts"] - a["ts"] for a, b in zip(log, log[1:], strict=False) if a["status"] == 429]
    assert len(gaps) == len(retries)
    for gap, wait in zip(gaps, [r.cm_wait for r in retries], strict=True):
        assert gap >= wait - 0.05  # server timestamps are taken as it logs, after the response


@pytest.mark.parametrize("kind", ["500", "502", "503", "504", "520", "524", "html500", "drop"])
def test_transient_faults_are_retried(make_client, ctl, kind):
    ctl.configure(fault_rate=0.5, fault_kinds=[kind], fault_seed=11)
    client = make_client()
    someone = ctl.customers()[0]["uuid"]
    for _ in range(6):
        assert client.retrieve_customer(someone)["uuid"] == someone
    faults = ctl.stats()["faults"]
    assert faults >= 1
    stats = client.stats
    assert stats["retries"] == faults
    assert stats["requests"] == 6 + faults
    if kind == "drop":
        assert stats["transport_errors"] == faults
    else:
        status = "500" if kind == "html500" else kind
        assert stats["by_status"][status] == faults


def test_html_500_keeps_a_text_excerpt(make_client, ctl):
    ctl.configure(fault_rate=1.0, fault_kinds=["html500"])
    client = make_client(max_attempts=2)
    with pytest.raises(ServerError) as info:
        client.list_customers_page()
    err = info.value
    assert err.status == 500 and err.attempts == 2
    assert "<" not in err.message and 0 < len(err.message) <= 200
    assert len(api_requests(ctl)) == 2


def test_attempts_are_capped(make_client, ctl):
    ctl.configure(fault_rate=1.0, fault_kinds=["503"])
    client = make_client(max_attempts=3)
    with pytest.raises(ServerError) as info:
        client.list_customers_page()
    assert info.value.attempts == 3 and "after 3 attempts" in str(info.value)
    assert len(api_requests(ctl)) == 3


def test_total_retry_time_is_bounded(make_client, ctl):
    ctl.configure(fault_rate=1.0, fault_kinds=["502", "drop"])
    client = make_client(max_retry_seconds=1.0, max_attempts=1000, backoff_base=0.05, backoff_max=0.3)
    t0 = time.monotonic()
    with pytest.raises(ChartMogulError):
        client.list_customers_page()
    elapsed = time.monotonic() - t0
    assert elapsed <= 1.0 + 0.15  # the budget, plus scheduling slack
    assert client.stats["retries"] >= 3


def test_read_timeout_is_retried_then_gives_up_within_budget(make_client, ctl):
    ctl.configure(latency_ms=800)
    client = make_client(read_timeout=0.25, max_retry_seconds=0.9, backoff_base=0.05, backoff_max=0.1)
    t0 = time.monotonic()
    with pytest.raises(TransportError) as info:
        client.list_customers_page()
    elapsed = time.monotonic() - t0
    assert info.value.kind == "timeout" and info.value.attempts >= 2
    assert elapsed <= 0.9 + 0.15
    assert ctl.stats()["requests"] == info.value.attempts
    assert len(drain(ctl, info.value.attempts)) == info.value.attempts


def test_slow_but_within_read_timeout_succeeds(make_client, ctl):
    ctl.configure(latency_ms=150)
    client = make_client(read_timeout=1.0)
    assert client.list_customers_page(per_page=2).entries
    assert client.stats["retries"] == 0


def test_the_last_attempt_is_cut_to_the_retry_budget(make_client, ctl):
    # Responses take longer than the whole budget. Uncut, the second attempt would get the full
    # 0.8 s read timeout and the call would end near 0.8 + 0.8 s; cut, it ends at the 1.0 s budget.
    ctl.configure(latency_ms=1200)
    client = make_client(read_timeout=0.8, max_retry_seconds=1.0)
    t0 = time.monotonic()
    with pytest.raises(TransportError) as info:
        client.list_customers_page(per_page=1)
    elapsed = time.monotonic() - t0
    err = info.value
    assert err.kind == "timeout" and err.attempts >= 2
    assert 0.8 <= elapsed <= 1.0 + 0.12
    cut = float(re.search(r"within the ([0-9.]+) s read timeout", err.message).group(1))
    assert cut < 0.3, err.message  # the last attempt's read timeout was what was left of the budget
    assert len(drain(ctl, err.attempts)) == err.attempts


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


def test_connect_timeout_is_retried_then_raised_typed(make_client, unanswered_port):
    client = make_client(
        base_url=f"http://127.0.0.1:{unanswered_port}/v1", connect_timeout=0.2, max_attempts=3
    )
    t0 = time.monotonic()
    with pytest.raises(TransportError) as info:
        client.retrieve_customer("cus_1")
    elapsed = time.monotonic() - t0
    err = info.value
    assert (err.kind, err.attempts, err.status) == ("connect_timeout", 3, None)
    assert "connect timed out after 0.2 s" in str(err) and "after 3 attempts" in str(err)
    stats = client.stats
    assert (stats["transport_errors"], stats["retries"]) == (3, 2)
    assert 3 * 0.2 <= elapsed <= 3 * 0.2 + 2 * 0.04 + 0.15  # three timeouts and two short backoffs


def test_connect_timeouts_stay_within_the_retry_budget(make_client, unanswered_port):
    client = make_client(
        base_url=f"http://127.0.0.1:{unanswered_port}/v1",
        connect_timeout=0.3,
        max_retry_seconds=0.8,
        max_attempts=100,
    )
    t0 = time.monotonic()
    with pytest.raises(TransportError) as info:
        client.retrieve_customer("cus_1")
    elapsed = time.monotonic() - t0
    assert info.value.kind == "connect_timeout" and info.value.attempts >= 3
    assert 0.8 - 0.06 <= elapsed <= 0.8 + 0.12


def test_connection_refused_is_a_transport_error(make_client):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        client = make_client(base_url=f"http://127.0.0.1:{port}/v1", max_attempts=2)
        with pytest.raises(TransportError) as info:
            client.list_customers_page()
    assert info.value.attempts == 2 and client.stats["transport_errors"] == 2


# ---------------------------------------------------------------------------------- create idempotency


def test_create_whose_response_is_lost_after_applying_makes_no_duplicate(make_client, ctl):
    ctl.configure(
        fault_rate=0.5,
        fault_phase="after",
        fault_methods=["POST"],
        fault_kinds=["500", "drop", "504"],
        fault_seed=4,
    )
    client = make_client()
    ds = custom_ds(ctl)
    before = len(ctl.customers())
    results = [
        client.create_customer({"data_source_uuid": ds, "external_id": f"idem-{i}", "name": f"Idem {i}"})
        for i in range(8)
    ]
    assert len(ctl.customers()) == before + 8
    for i, r in enumerate(results):
        matches = [c for c in ctl.customers() if c["external_id"] == f"idem-{i}"]
        assert len(matches) == 1, f"idem-{i} stored {len(matches)} times"
        assert r.customer["uuid"] == matches[0]["uuid"]
    assert ctl.stats()["faults"] >= 1
    lost_first = sum(1 for r in results if not r.created)
    assert lost_first >= 1
    assert client.stats["retries"] >= lost_first


# ---------------------------------------------------------------------------------------- limiter


def test_limiter_bounds_rate_and_concurrency_measured_at_the_server(make_client, ctl):
    # Concurrency binds here: 3 connections of 350 ms allow under 9 requests/s, below the 10/s cap.
    ctl.configure(latency_ms=350, rate_limit_rps=10, max_connections=3)
    client = make_client(max_requests_per_second=10, max_connections=3)
    errors = []

    def hammer():
        try:
            for _ in range(3):
                client.list_customers_page(per_page=1)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = ctl.stats()
    assert stats["requests"] >= 24
    assert stats["peak_concurrency"] <= 3
    assert stats["peak_requests_per_second"] <= 10
    assert stats["rate_limited"] == 0 and stats["over_capacity"] == 0
    assert client.stats["peak_in_flight"] == 3  # the cap is used, not just respected
    assert client.stats["retries"] == 0


def peak_in_any_second(stamps: list[float]) -> int:
    """Most timestamps in any one-second window [t, t + 1)."""
    stamps = sorted(stamps)
    best = lo = 0
    for hi, t in enumerate(stamps):
        while stamps[lo] <= t - 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_limiter_bounds_the_rate_when_the_rate_binds(make_client, ctl):
    # No latency and 10 connections: only the 20 requests/s cap can hold 5 threads back.
    rate, threads_n, per_thread = 20, 5, 10
    total = threads_n * per_thread
    ctl.configure(latency_ms=0, rate_limit_rps=rate, max_connections=10)
    client = make_client(max_requests_per_second=rate, max_connections=10)
    errors = []

    def hammer():
        try:
            for _ in range(per_thread):
                client.list_customers_page(per_page=1)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(threads_n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert not errors
    stats = ctl.stats()
    assert stats["requests"] == total and stats["rate_limited"] == 0 and stats["over_capacity"] == 0
    assert rate - 1 <= stats["peak_requests_per_second"] <= rate  # the cap is reached, never passed
    log = drain(ctl, total)
    assert len(log) == total
    assert peak_in_any_second([r["ts"] for r in log]) <= rate
    assert elapsed >= (total - rate) / rate  # what the rate implies, less one second's burst
    assert client.stats["retries"] == 0 and client.stats["limiter_wait_seconds"] > 0


# ---------------------------------------------------------------------------------------- secrecy


def test_api_key_never_appears_in_errors_reprs_or_logs(make_client, ctl, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(max_attempts=2)
    raised: list[BaseException] = []

    def capture(fn, *a, **kw):
        try:
            fn(*a, **kw)
        except ChartMogulError as exc:
            raised.append(exc)

    capture(client.retrieve_customer, "cus_missing")
    capture(client.create_customer, {"data_source_uuid": "ds_nope", "external_id": "k1"})
    capture(make_client(api_key=TEST_API_KEY + "x").list_customers_page)
    ctl.configure(fault_rate=1.0, fault_kinds=["html500", "drop", "503"])
    capture(client.list_customers_page)
    ctl.configure(fault_rate=0.0, latency_ms=400)
    capture(make_client(read_timeout=0.1, max_attempts=2).list_customers_page)
    ctl.configure(latency_ms=0)
    drain(ctl, ctl.stats()["requests"])
    assert len(raised) == 5
    texts = [repr(client), repr(client.limiter), str(client.stats), caplog.text]
    for exc in raised:
        texts += [
            str(exc),
            repr(exc),
            "".join(traceback.format_exception(exc)),
            str(exc.details),
            str(exc.__dict__),
        ]
    blob = "\n".join(texts)
    for form in KEY_FORMS:
        assert form not in blob
    assert "Authorization" not in blob and "Basic " not in blob


def exception_chain(exc: BaseException) -> list[BaseException]:
    """exc and every exception reachable from it through __cause__ and __context__."""
    found: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is f for f in found):
            continue
        found.append(e)
        todo += [e.__cause__, e.__context__]
    return found


def test_transport_errors_keep_no_chain_to_the_request_and_its_auth_header(make_client, ctl, unanswered_port):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # bound, not listening
        provokers = {
            "refused": make_client(base_url=refused, max_attempts=2).list_customers_page,
            "connect_timeout": make_client(
                base_url=f"http://127.0.0.1:{unanswered_port}/v1", connect_timeout=0.1, max_attempts=2
            ).list_customers_page,
        }
        raised: dict[str, TransportError] = {}
        for name, call in provokers.items():
            with pytest.raises(TransportError) as info:
                call()
            raised[name] = info.value
    ctl.configure(fault_rate=1.0, fault_kinds=["drop"])
    with pytest.raises(TransportError) as info:
        make_client(max_attempts=2).list_customers_page()
    raised["dropped"] = info.value
    ctl.configure(fault_rate=0.0, latency_ms=300)
    with pytest.raises(TransportError) as info:
        make_client(read_timeout=0.1, max_attempts=2).list_customers_page()
    raised["read_timeout"] = info.value
    ctl.configure(latency_ms=0)
    drain(ctl, ctl.stats()["requests"])

    kinds = {name: err.kind for name, err in raised.items()}
    assert kinds == {
        "refused": "connection",
        "connect_timeout": "connect_timeout",
        "dropped": "connection",
        "read_timeout": "timeout",
    }
    for name, err in raised.items():
        chain = exception_chain(err)
        assert chain == [err], f"{name}: {err!r} chains to {chain[1:]!r}"
        assert not any(isinstance(e, requests.exceptions.RequestException) for e in chain)
        text = "\n".join([str(err), repr(err), str(vars(err)), "".join(traceback.format_exception(err))])
        for form in KEY_FORMS:
            assert form not in text, name
        assert "Authorization" not in text


def test_key_echoed_in_an_error_param_and_message_is_scrubbed(client, ctl):
    # The sandbox echoes an invalid custom-attribute key as the param, and a bad value in the message.
    email = a_customer(ctl)["email"]
    with pytest.raises(UnprocessableEntityError) as info:
        client.add_custom_attributes(email, [{"type": "String", "key": TEST_API_KEY, "value": "v"}])
    err = info.value
    assert err.param == "***" and "***" in err.message
    token = KEY_FORMS[1]
    with pytest.raises(UnprocessableEntityError) as info2:
        client.add_custom_attributes(
            email, [{"type": "Integer", "key": "client_test_tok", "value": f"Basic {token}"}]
        )
    assert "Basic ***" in info2.value.message
    for e in (err, info2.value):
        text = "\n".join(
            [str(e), repr(e), str(e.details), str(vars(e)), "".join(traceback.format_exception(e))]
        )
        for form in KEY_FORMS:
            assert form not in text


def test_retry_after_beyond_the_budget_gives_up_at_once(make_client, ctl):
    ctl.configure(rate_limit_rps=1, retry_after=30)
    client = make_client(max_retry_seconds=2.0)
    t0 = time.monotonic()
    with pytest.raises(RateLimitError) as info:
        for _ in range(3):  # the second call at the latest is over 1 request/s
            client.list_customers_page(per_page=1)
    assert time.monotonic() - t0 < 1.0, "waited although Retry-After exceeds the retry budget"
    assert info.value.status == 429 and info.value.retry_after == 30 and info.value.attempts == 1
    assert client.stats["retries"] == 0 and client.stats["rate_limited"] == 1
