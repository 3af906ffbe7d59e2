"""ChartMogul's official Python client (PyPI `chartmogul`, test-only) against the sandbox: list, retrieve,
create, update and add custom attributes, without error and with the values it parses."""

from __future__ import annotations

from datetime import datetime

import chartmogul  # a dev dependency (pyproject's dev extra): missing, the suite fails rather than skips
import pytest

from cm_pipeline.sandbox import SandboxServer
from cm_pipeline.sandbox.seed import DOCS_DATA_SOURCE

KEY = "official-client-key"


@pytest.fixture(scope="module")
def srv():
    with SandboxServer(customers=120, seed=9, api_key=KEY) as server:
        yield server


@pytest.fixture(scope="module")
def config(srv):
    cfg = chartmogul.Config(KEY, request_timeout=10, max_retries=0)
    cfg.uri = srv.base_url  # Config.uri is the base every resource path is appended to
    return cfg


def test_list_walks_every_page(srv, config):
    seen, cursor = [], None
    while True:
        kwargs = {"per_page": 50, **({"cursor": cursor} if cursor else {})}
        page = chartmogul.Customer.all(config, **kwargs).get()
        seen += page.entries
        if not page.has_more:
            break
        cursor = page.cursor
    assert len(seen) == 120 and len({c.uuid for c in seen}) == 120
    first = seen[0]
    assert isinstance(first, chartmogul.Customer) and first.uuid.startswith("cus_")
    assert isinstance(first.attributes.tags, list) and isinstance(first.attributes.custom, dict)
    leads = chartmogul.Customer.all(config, status="New_Lead").get().entries
    assert leads and all(c.status == "New Lead" for c in leads)


def test_retrieve(srv, config):
    raw = srv.control.customers()[3]
    c = chartmogul.Customer.retrieve(config, uuid=raw["uuid"]).get()
    assert c.uuid == raw["uuid"] and c.email == raw["email"] and c.mrr == raw["mrr"]
    assert c.address.city == raw["address"]["city"]


def test_create_update_and_add_custom_attributes(srv, config):
    created = chartmogul.Customer.create(
        config,
        data={
            "data_source_uuid": DOCS_DATA_SOURCE,
            "external_id": "official_0001",
            "name": "Adam Smith",
            "email": "official@example.com",
            "country": "US",
            "state": "US-NY",
            "city": "New York",
            "company": "Pinata Technologies",
            "lead_created_at": "2022-10-14",
            "free_trial_started_at": "2022-11-01",
            "attributes": {
                "tags": ["important", "Prio1"],
                "custom": [
                    {"type": "String", "key": "channel", "value": "Facebook", "source": "integration"},
                    {"type": "Integer", "key": "age", "value": 18},
                ],
            },
            "website_url": "example.com",
        },
    ).get()
    assert created.state == "NY" and created.website_url == "https://example.com"
    assert created.lead_created_at == datetime.fromisoformat("2022-10-14T00:00:00+00:00")
    assert created.attributes.custom == {"channel": "Facebook", "age": 18}

    updated = chartmogul.Customer.modify(
        config,
        uuid=created.uuid,
        data={
            "city": "San Francisco",
            "state": "US-CA",
            "attributes": {
                "tags": ["high-value"],
                "custom": {"age": 19, "channel": {"value": "Twitter", "source": "x"}},
            },
        },
    ).get()
    assert updated.state == "CA" and updated.city == "San Francisco"
    assert updated.attributes.tags == ["high-value"]
    assert updated.attributes.custom == {"age": 19, "channel": "Twitter"}

    result = chartmogul.CustomAttributes.add_by_email(
        config,
        data={
            "email": "official@example.com",
            "custom": [{"type": "Boolean", "key": "vip_flag", "value": "true"}],
        },
    ).get()
    assert [c.uuid for c in result.entries] == [created.uuid]
    assert result.entries[0].attributes.custom["vip_flag"] is True
    assert srv.control.customer(created.uuid)["attributes"]["custom"] == {
        "age": 19,
        "channel": "Twitter",
        "vip_flag": True,
    }


def test_errors_surface_as_the_clients_exceptions(srv, config):
    with pytest.raises(chartmogul.errors.APIError) as info:
        chartmogul.Customer.retrieve(config, uuid="cus_missing").get()
    assert info.value.__cause__.response.status_code == 404
    assert b"Customer not found" in info.value.args[0]
    bad = chartmogul.Config("wrong-key", request_timeout=10, max_retries=0)
    bad.uri = srv.base_url
    with pytest.raises(chartmogul.errors.APIError) as info:
        chartmogul.Customer.all(bad).get()
    assert info.value.__cause__.response.status_code == 401
