"""The sandbox's misbehaviour knobs, observed over real sockets: 429, 503, faults, latency, counters."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from cm_pipeline.sandbox import SandboxControlError, SandboxServer
from cm_pipeline.sandbox.faults import PAGINATION_FAULTS
from cm_pipeline.sandbox.seed import DOCS_DATA_SOURCE
from cm_pipeline_tests.sandbox.conftest import session


def test_rate_limit_429_with_retry_after(fresh_sandbox, http):
    fresh_sandbox.control.configure(rate_limit_rps=3, retry_after=2)
    codes = [http.get(f"{fresh_sandbox.base_url}/customers", params={"per_page": 1}) for _ in range(10)]
    limited = [r for r in codes if r.status_code == 429]
    assert [r.status_code for r in codes[:3]] == [200, 200, 200] and limited
    assert limited[0].json() == {
        "code": 429,
        "message": "Your request rate has exceeded our rate limit.",
        "param": None,
    }
    assert limited[0].headers["Retry-After"] == "2"
    stats = fresh_sandbox.control.stats()
    assert stats["rate_limited"] == len(limited)
    assert stats["by_status"] == {"200": 10 - len(limited), "429": len(limited)}


def test_rate_limit_429_without_retry_after_and_window_recovers(fresh_sandbox, http):
    fresh_sandbox.control.configure(rate_limit_rps=2)
    rs = [http.get(f"{fresh_sandbox.base_url}/customers", params={"per_page": 1}) for _ in range(8)]
    limited = [r for r in rs if r.status_code == 429]
    assert limited and all("Retry-After" not in r.headers for r in limited)
    time.sleep(1.05)
    assert http.get(f"{fresh_sandbox.base_url}/customers", params={"per_page": 1}).status_code == 200
    assert fresh_sandbox.control.stats()["peak_requests_per_second"] >= 3


def test_over_capacity_503(fresh_sandbox):
    fresh_sandbox.control.configure(max_connections=2, latency_ms=300)
    url = f"{fresh_sandbox.base_url}/customers"

    def one(_):
        with session() as s:
            return s.get(url, params={"per_page": 1}).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(one, range(6)))
    assert codes.count(200) >= 2 and 503 in codes
    stats = fresh_sandbox.control.stats()
    assert stats["over_capacity"] == codes.count(503)
    assert stats["peak_concurrency"] >= 3


def test_latency(fresh_sandbox, http):
    fresh_sandbox.control.configure(latency_ms=1000)
    started = time.perf_counter()
    assert http.get(f"{fresh_sandbox.base_url}/customers", params={"per_page": 1}).ok
    assert time.perf_counter() - started >= 1.0
    started = time.perf_counter()
    fresh_sandbox.control.stats()  # admin endpoints are exempt: well under the latency, even on a loaded machine
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("kind", ["500", "502", "503", "504", "520", "524"])
def test_json_5xx_faults(fresh_sandbox, http, kind):
    fresh_sandbox.control.configure(fault_rate=1.0, fault_kinds=[kind])
    r = http.get(f"{fresh_sandbox.base_url}/customers")
    assert r.status_code == int(kind)
    assert r.json()["code"] == int(kind) and r.json()["message"]
    log = fresh_sandbox.control.requests()
    assert log[-1]["fault"] == kind and log[-1]["status"] == int(kind) and log[-1]["path"] == "/v1/customers"


def test_html_500_fault(fresh_sandbox, http):
    fresh_sandbox.control.configure(fault_rate=1.0, fault_kinds=["html500"])
    r = http.get(f"{fresh_sandbox.base_url}/customers")
    assert r.status_code == 500 and r.headers["Content-Type"].startswith("text/html")
    assert r.text.lstrip().startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError):
        r.json()


def test_drop_fault_closes_the_socket_without_a_response(fresh_sandbox, http):
    fresh_sandbox.control.configure(fault_rate=1.0, fault_kinds=["drop"])
    with pytest.raises(requests.ConnectionError):
        http.get(f"{fresh_sandbox.base_url}/customers")
    assert fresh_sandbox.control.requests()[-1]["fault"] == "drop"
    fresh_sandbox.control.configure(fault_rate=0.0)
    assert http.get(f"{fresh_sandbox.base_url}/customers").ok, "the server keeps serving after a drop"


@pytest.mark.parametrize(("kind", "body"), [("empty_body", b""), ("empty_object", b"{}")])
def test_empty_success_faults_answer_2xx_without_the_resource(fresh_sandbox, http, kind, body):
    ctl = fresh_sandbox.control
    target = ctl.customers()[0]
    ctl.configure(fault_rate=1.0, fault_kinds=[kind], fault_methods=["GET"])
    for url in (
        f"{fresh_sandbox.base_url}/customers",
        f"{fresh_sandbox.base_url}/customers/{target['uuid']}",
    ):
        r = http.get(url)
        assert (r.status_code, r.content) == (200, body)
        assert r.headers["Content-Type"].startswith("application/json")
    assert [(row["fault"], row["status"]) for row in ctl.requests()[-2:]] == [(kind, 200)] * 2

    # "before" (the default phase): a create is answered 201 with nothing, and not applied
    ctl.configure(fault_methods=["POST"])
    r = http.post(
        f"{fresh_sandbox.base_url}/customers",
        json={"data_source_uuid": DOCS_DATA_SOURCE, "external_id": f"{kind}_1"},
    )
    assert (r.status_code, r.content) == (201, body)
    assert not [c for c in ctl.customers() if c["external_id"] == f"{kind}_1"]
    # "after": the PATCH is applied and its answer is replaced by the empty success
    ctl.configure(fault_methods=["PATCH"], fault_phase="after")
    r = http.patch(
        f"{fresh_sandbox.base_url}/customers/{target['uuid']}", json={"attributes": {"tags": [kind]}}
    )
    assert (r.status_code, r.content) == (200, body)
    assert ctl.customer(target["uuid"])["attributes"]["tags"] == [kind]


def test_fault_phase_before_does_not_apply_the_write(fresh_sandbox, http):
    fresh_sandbox.control.configure(fault_rate=1.0, fault_kinds=["502"], fault_phase="before")
    r = http.post(
        f"{fresh_sandbox.base_url}/customers",
        json={"data_source_uuid": DOCS_DATA_SOURCE, "external_id": "before_1"},
    )
    assert r.status_code == 502
    assert not [c for c in fresh_sandbox.control.customers() if c["external_id"] == "before_1"]
    assert fresh_sandbox.control.stats()["writes_applied"] == 0


def test_fault_phase_after_applies_the_write_then_loses_the_response(fresh_sandbox, http):
    ctl = fresh_sandbox.control
    target = ctl.customers()[0]
    ctl.configure(fault_rate=1.0, fault_kinds=["drop"], fault_phase="after", fault_methods=["PATCH", "POST"])
    with pytest.raises(requests.ConnectionError):
        http.patch(
            f"{fresh_sandbox.base_url}/customers/{target['uuid']}", json={"attributes": {"tags": ["after"]}}
        )
    assert ctl.customer(target["uuid"])["attributes"]["tags"] == ["after"]
    with pytest.raises(requests.ConnectionError):
        http.post(
            f"{fresh_sandbox.base_url}/customers",
            json={"data_source_uuid": DOCS_DATA_SOURCE, "external_id": "after_1"},
        )
    assert [c["external_id"] for c in ctl.customers() if c["external_id"] == "after_1"] == ["after_1"]
    # GETs are not in fault_methods, so they pass
    assert http.get(f"{fresh_sandbox.base_url}/customers/{target['uuid']}").ok
    assert ctl.stats()["writes_applied"] == 2 and ctl.stats()["faults"] == 2


def test_faults_are_seeded_and_rate_is_respected():
    def pattern():
        with SandboxServer(customers=3, fault_rate=0.3, fault_kinds=["500", "503"], fault_seed=11) as srv:
            with session() as s:
                return [s.get(f"{srv.base_url}/customers").status_code for _ in range(60)]

    first, second = pattern(), pattern()
    assert first == second
    assert 5 <= sum(c != 200 for c in first) <= 35
    assert set(first) <= {200, 500, 503}


def test_admin_endpoints_are_exempt_and_configure_validates(fresh_sandbox):
    ctl = fresh_sandbox.control
    ctl.configure(fault_rate=1.0, fault_kinds=["drop"], rate_limit_rps=1, max_connections=1)
    for _ in range(5):
        assert ctl.health()["ok"]
    with pytest.raises(SandboxControlError) as info:
        ctl.configure(fault_kinds=["418"])
    assert info.value.status == 400 and "fault_kinds" in str(info.value)
    with pytest.raises(SandboxControlError):
        ctl.configure(no_such_knob=1)
    with pytest.raises(SandboxControlError):
        ctl.configure(fault_rate=2)
    cfg = ctl.configure(fault_rate=0.0, rate_limit_rps=None, max_connections=None)
    assert cfg["fault_rate"] == 0.0 and cfg["rate_limit_rps"] is None and cfg["fault_kinds"] == ["drop"]


def test_stats_routes_log_and_reset(fresh_sandbox, http):
    ctl = fresh_sandbox.control
    uuid = ctl.customers()[0]["uuid"]
    base = fresh_sandbox.base_url
    http.get(f"{base}/customers")
    http.get(f"{base}/customers/{uuid}")
    http.patch(f"{base}/customers/{uuid}", json={"company": "X"})
    http.post(f"{base}/customers", json={"data_source_uuid": DOCS_DATA_SOURCE, "external_id": "stats_1"})
    http.post(
        f"{base}/customers/attributes/custom",
        json={"email": "nobody@x.y", "custom": [{"type": "String", "key": "a", "value": "b"}]},
    )
    stats = ctl.stats()
    assert stats["requests"] == 5
    assert stats["by_route"] == {
        "GET /v1/customers": 1,
        "GET /v1/customers/{uuid}": 1,
        "PATCH /v1/customers/{uuid}": 1,
        "POST /v1/customers": 1,
        "POST /v1/customers/attributes/custom": 1,
    }
    assert stats["by_status"] == {"200": 3, "201": 1, "404": 1}
    assert stats["writes_applied"] == 2 and stats["peak_concurrency"] == 1
    log = ctl.requests()
    assert [e["method"] for e in log] == ["GET", "GET", "PATCH", "POST", "POST"]
    assert [e["seq"] for e in log] == sorted(e["seq"] for e in log)
    assert ctl.requests(since=log[2]["seq"]) == log[3:]
    assert set(log[0]) == {"seq", "ts", "method", "path", "query", "status", "fault"}
    ctl.reset_stats()
    assert ctl.stats()["requests"] == 0 and ctl.stats()["writes_applied"] == 0


@pytest.mark.parametrize("fault", PAGINATION_FAULTS)
def test_pagination_faults_break_continuation_pages_only(fresh_sandbox, http, fault):
    ctl = fresh_sandbox.control
    assert ctl.configure(pagination_fault=fault)["pagination_fault"] == fault
    url = f"{fresh_sandbox.base_url}/customers"
    first = http.get(url, params={"per_page": 10}).json()
    assert len(first["entries"]) == 10 and first["has_more"] is True and first["cursor"], "page 1 intact"
    second = http.get(url, params={"per_page": 10, "cursor": first["cursor"]}).json()
    assert len(second["entries"]) == 10 and second["has_more"] is True
    if fault == "repeat_cursor":
        assert second["cursor"] == first["cursor"]
    elif fault == "has_more_without_cursor":
        assert second["cursor"] is None
    else:  # rewind_cursor: the page after the first page's cursor is answered normally, then it cycles
        assert second["cursor"] and second["cursor"] != first["cursor"]
        third = http.get(url, params={"per_page": 10, "cursor": second["cursor"]}).json()
        assert third["has_more"] is True and third["cursor"] == first["cursor"]
        assert len(third["entries"]) == 10
    assert [e["fault"] for e in ctl.requests()][-1] == fault
    assert ctl.stats()["faults"] == 1
    # off again: the same cursor walk ends normally after 3 pages of 30 distinct customers
    ctl.configure(pagination_fault=None)
    seen, cursor = [], None
    for _ in range(5):
        body = http.get(url, params={"per_page": 10, **({"cursor": cursor} if cursor else {})}).json()
        seen += [e["uuid"] for e in body["entries"]]
        if not body["has_more"]:
            break
        cursor = body["cursor"]
    assert len(seen) == len(set(seen)) == 30 and body["cursor"] is None


def test_pagination_fault_is_validated(fresh_sandbox):
    with pytest.raises(SandboxControlError) as info:
        fresh_sandbox.control.configure(pagination_fault="loop_forever")
    assert info.value.status == 400 and "pagination_fault" in str(info.value)
    assert fresh_sandbox.control.config()["pagination_fault"] is None
