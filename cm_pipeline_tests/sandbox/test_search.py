"""GET /v1/customers/search?email= over real sockets, as the reference README describes it: every customer
with that email (any case), paged by cursor like List Customers, 404 when nobody has it."""

from __future__ import annotations

import pytest

from cm_pipeline.sandbox.seed import DOCS_DATA_SOURCE
from cm_pipeline_tests.sandbox.conftest import add_custom, search

SHARED = "Shared.Mail@Example.com"


@pytest.fixture
def sharers(fresh_sandbox):
    """Five customers with one email in mixed cases, the first inserted after a customer of another email."""
    ctl = fresh_sandbox.control
    ctl.insert_customer(email="someone.else@example.com")
    cases = (SHARED, SHARED.lower(), SHARED.upper(), SHARED, "shared.mail@EXAMPLE.com")
    return fresh_sandbox, [
        ctl.insert_customer(email=e, external_id=f"sh_{n}")["uuid"] for n, e in enumerate(cases)
    ]


def test_search_finds_every_customer_with_the_email_in_any_case(sharers, http):
    srv, uuids = sharers
    for email in (SHARED, SHARED.lower(), SHARED.upper()):
        r = search(srv, http, email)
        assert r.status_code == 200, r.text
        body = r.json()
        assert [e["uuid"] for e in body["entries"]] == uuids and body["has_more"] is False
        assert body["cursor"] is None
        assert body["entries"][0] == srv.control.customer(uuids[0]), "entries have the retrieve shape"
    assert srv.control.stats()["by_route"]["GET /v1/customers/search"] == 3


def test_search_matches_emails_as_add_by_email_does(sharers, http):
    """Both compare str.lower() of the two emails: what the search finds is what the POST changes."""
    srv, uuids = sharers
    r = add_custom(
        srv, http, {"email": SHARED.swapcase(), "custom": [{"type": "String", "key": "k1", "value": "v"}]}
    )
    assert r.status_code == 200
    assert sorted(e["uuid"] for e in r.json()["entries"]) == sorted(uuids)
    assert sorted(e["uuid"] for e in search(srv, http, SHARED.swapcase()).json()["entries"]) == sorted(uuids)


def test_search_pages_by_cursor_like_list_customers(sharers, http):
    srv, uuids = sharers
    first = search(srv, http, SHARED, per_page=2).json()
    assert set(first) == {"entries", "per_page", "page", "current_page", "total_pages", "cursor", "has_more"}
    assert first["total_pages"] == 3 and first["has_more"] is True
    seen, body = [e["uuid"] for e in first["entries"]], first
    pages = [first]
    while body["has_more"]:
        body = search(srv, http, SHARED.lower(), per_page=2, cursor=body["cursor"]).json()
        assert set(body) == {"entries", "cursor", "has_more"}
        seen += [e["uuid"] for e in body["entries"]]
        pages.append(body)
    assert seen == uuids and len(pages) == 3
    srv.control.configure(legacy_page_fields=False)
    assert set(search(srv, http, SHARED, per_page=2).json()) == {"entries", "cursor", "has_more"}


def test_search_validates_per_page_and_cursor(sharers, http):
    srv, _ = sharers
    for bad in ("201", "0", "x"):
        r = search(srv, http, SHARED, per_page=bad)
        assert r.status_code == 400 and r.json()["param"] == "per_page"
    assert len(search(srv, http, SHARED).json()["entries"]) == 5, "per_page defaults to 200"
    cursor = search(srv, http, SHARED, per_page=1).json()["cursor"]
    r = search(srv, http, "someone.else@example.com", cursor=cursor)
    assert r.status_code == 400 and r.json()["param"] == "cursor", "a cursor of another email"
    r = http.get(f"{srv.base_url}/customers", params={"cursor": cursor})
    assert r.status_code == 400 and r.json()["param"] == "cursor", "a search cursor does not list customers"
    list_cursor = http.get(f"{srv.base_url}/customers", params={"per_page": 1}).json()["cursor"]
    r = search(srv, http, SHARED, cursor=list_cursor)
    assert r.status_code == 400 and r.json()["param"] == "cursor", "a list cursor does not search"
    assert search(srv, http, SHARED, cursor="garbage").json()["param"] == "cursor"


@pytest.mark.parametrize("params", [{}, {"email": ""}, {"email": "   "}])
def test_search_without_an_email_is_a_400_naming_email(sandbox, http, params):
    r = http.get(f"{sandbox.base_url}/customers/search", params=params)
    assert r.status_code == 400
    assert r.json() == {"code": 400, "message": 'Parameter "email" is missing', "param": "email"}


def test_search_with_no_match_is_the_documented_404(sandbox, http):
    email = 'nobody "quoted"@example.com'
    r = search(sandbox, http, email)
    assert r.status_code == 404
    assert r.json() == {
        "code": 404,
        "message": 'Can\'t find any customers with email: "nobody "quoted"@example.com"',
        "param": "email",
    }


def test_search_is_not_a_customer_uuid(sandbox, http):
    """/v1/customers/search must not be read as GET /v1/customers/{uuid} with uuid "search"."""
    c = sandbox.control.customers()[3]
    r = http.get(f"{sandbox.base_url}/customers/search", params={"email": c["email"]})
    assert r.status_code == 200 and c["uuid"] in {e["uuid"] for e in r.json()["entries"]}
    assert http.get(f"{sandbox.base_url}/customers/{c['uuid']}").json() == c
    r = http.patch(f"{sandbox.base_url}/customers/search", json={"name": "x"})
    assert r.status_code == 404 and r.json()["param"] == "customer_uuid", "no customer has uuid 'search'"


def test_search_sees_writes_at_once(fresh_sandbox, http):
    email = "late.comer@example.com"
    assert search(fresh_sandbox, http, email).status_code == 404
    r = http.post(
        f"{fresh_sandbox.base_url}/customers",
        json={"data_source_uuid": DOCS_DATA_SOURCE, "external_id": "late_1", "email": email},
    )
    assert r.status_code == 201
    assert [e["uuid"] for e in search(fresh_sandbox, http, email).json()["entries"]] == [r.json()["uuid"]]
    r2 = http.patch(
        f"{fresh_sandbox.base_url}/customers/{r.json()['uuid']}", json={"email": "moved@example.com"}
    )
    assert r2.status_code == 200
    assert search(fresh_sandbox, http, email).status_code == 404


def test_search_takes_auth_latency_and_faults(fresh_sandbox, http):
    import requests

    email = fresh_sandbox.control.customers()[0]["email"]
    assert (
        requests.get(f"{fresh_sandbox.base_url}/customers/search", params={"email": email}).status_code == 401
    )
    fresh_sandbox.control.configure(fault_rate=1.0, fault_kinds=["503"], fault_methods=["GET"])
    assert search(fresh_sandbox, http, email).status_code == 503
