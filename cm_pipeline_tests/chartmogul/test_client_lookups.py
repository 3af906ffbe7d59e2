"""The client's account lookups over real sockets: List Data Sources, and Search for Customers by email
(every page; the API's JSON 404 is "nobody", a proxy's 404 is an error)."""

from __future__ import annotations

import pytest

from cm_pipeline.chartmogul.errors import APIError, NotFoundError
from cm_pipeline_tests.extract.conftest import Gateway, json_answer


def test_data_sources_come_in_one_answer_with_their_fields(make_client, ctl):
    client = make_client()
    sources = client.list_data_sources()
    assert {s["uuid"] for s in sources} == {s["uuid"] for s in ctl.data_sources()}
    assert all({"uuid", "name", "system", "created_at", "status"} <= s.keys() for s in sources)
    stripe = client.list_data_sources(system="Stripe")
    assert stripe and all(s["system"] == "Stripe" for s in stripe)


def test_a_data_sources_answer_without_its_list_is_refused(make_client, server):
    with Gateway(
        server.base_url, lambda m, p, q: json_answer(200, {}) if p.endswith("/data_sources") else None
    ) as gw:
        with pytest.raises(APIError, match="data_sources"):
            make_client(base_url=gw.base_url).list_data_sources()


def test_search_finds_every_customer_with_the_email_across_pages(make_client, ctl):
    made = [ctl.insert_customer(email="Shared.Search@example.com", name=f"s{i}") for i in range(5)]
    ctl.insert_customer(email="other@example.com")
    found = make_client().search_customers("shared.search@EXAMPLE.com", per_page=2)
    assert sorted(c["uuid"] for c in found) == sorted(c["uuid"] for c in made)


def test_no_match_is_an_empty_list_but_a_proxys_404_is_an_error(make_client, server):
    client = make_client()
    assert client.search_customers("nobody-at-all@example.com") == []
    html_404 = (404, b"<html><body>Not Found</body></html>", "text/html")
    with Gateway(server.base_url, lambda m, p, q: html_404 if p.endswith("/search") else None) as gw:
        with pytest.raises(NotFoundError):
            make_client(base_url=gw.base_url).search_customers("nobody-at-all@example.com")
    with pytest.raises(ValueError, match="email"):
        client.search_customers(" ")
