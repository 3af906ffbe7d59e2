"""GET /v1/data_sources over real sockets: every data source in one answer, filters, and the knobs."""

from __future__ import annotations

import time

import requests

from cm_pipeline.sandbox.seed import DATA_SOURCES, DOCS_DATA_SOURCE, REALISTIC_DATA_SOURCES
from cm_pipeline_tests.sandbox.conftest import walk

KEYS = {"uuid", "name", "system", "created_at", "status"}


def test_every_data_source_in_one_answer(sandbox, http):
    r = http.get(f"{sandbox.base_url}/data_sources")
    assert r.status_code == 200 and list(r.json()) == ["data_sources"]
    sources = r.json()["data_sources"]
    assert [(d["uuid"], d["name"], d["system"]) for d in sources] == list(DATA_SOURCES)
    for d in sources:
        assert set(d) == KEYS and d["status"] == "idle"
        assert d["created_at"] == "2018-01-01T00:00:00.000Z"
    assert sources == sandbox.control.data_sources()


def test_data_sources_name_every_customer_s_source(realistic, http):
    """A plan split by data source is complete: each customer lists under a data source the endpoint names."""
    sources = http.get(f"{realistic.base_url}/data_sources").json()["data_sources"]
    assert [(d["uuid"], d["name"], d["system"]) for d in sources] == list(REALISTIC_DATA_SOURCES)
    named = {d["uuid"] for d in sources}
    entries, _ = walk(http, realistic.base_url)
    assert {ds for e in entries for ds in e["data_source_uuids"]} <= named
    empty = [d for d in sources if d["status"] == "never_imported"]
    assert len(empty) == 1 and walk(http, realistic.base_url, data_source_uuid=empty[0]["uuid"])[0] == []
    assert [d["system"] for d in sources].count("Custom") == 1


def test_name_and_system_filters(realistic, http):
    url = f"{realistic.base_url}/data_sources"
    stripe = http.get(url, params={"system": "Stripe"}).json()["data_sources"]
    assert [d["name"] for d in stripe] == ["Stripe", "Stripe (test mode)"]
    assert http.get(url, params={"name": "Recurly"}).json()["data_sources"][0]["system"] == "Recurly"
    both = http.get(url, params={"name": "Stripe", "system": "Stripe"}).json()["data_sources"]
    assert [d["name"] for d in both] == ["Stripe"]
    assert http.get(url, params={"system": "stripe"}).json() == {"data_sources": []}, "case-sensitive"
    assert http.get(url, params={"name": "Nope"}).json() == {"data_sources": []}
    assert len(http.get(url, params={"system": ""}).json()["data_sources"]) == len(REALISTIC_DATA_SOURCES)


def test_admin_inserted_customers_add_their_data_source(fresh_sandbox, http):
    fresh_sandbox.control.insert_customer(data_source_uuid="ds_from_admin", billing_system_type="Paddle")
    sources = http.get(f"{fresh_sandbox.base_url}/data_sources").json()["data_sources"]
    added = sources[-1]
    assert added["uuid"] == "ds_from_admin" and added["system"] == "Paddle" and set(added) == KEYS
    assert added["created_at"].endswith("Z") and added["status"] == "idle"
    assert DOCS_DATA_SOURCE in {d["uuid"] for d in sources}


def test_data_sources_take_auth_latency_rate_limit_and_faults(fresh_sandbox, http):
    url = f"{fresh_sandbox.base_url}/data_sources"
    assert requests.get(url).status_code == 401
    assert http.post(url, json={"name": "x"}).status_code == 404, "only GET is served"
    ctl = fresh_sandbox.control
    ctl.configure(latency_ms=300)
    started = time.perf_counter()
    assert http.get(url).ok and time.perf_counter() - started >= 0.3
    ctl.configure(latency_ms=0, rate_limit_rps=2)
    codes = [http.get(url).status_code for _ in range(5)]
    assert codes[:2] == [200, 200] and 429 in codes
    time.sleep(1.05)
    ctl.configure(rate_limit_rps=None, fault_rate=1.0, fault_kinds=["html500"])
    r = http.get(url)
    assert r.status_code == 500 and r.headers["Content-Type"].startswith("text/html")
    stats = ctl.stats()
    assert stats["by_route"]["GET /v1/data_sources"] >= 8 and stats["faults"] == 1
