"""The sandbox's API over real sockets, reading: auth, listing and cursor paging, filters, retrieve."""

from __future__ import annotations

import threading

import pytest
import requests

from cm_pipeline.sandbox import SandboxServer
from cm_pipeline.sandbox.seed import DOCS_DATA_SOURCE
from cm_pipeline_tests.sandbox.conftest import session, walk

STRIPE_DS = "ds_1a7c2e10-0b1f-11ee-9a41-2f5d3c1b0001"


# ---------------------------------------------------------------- auth


def test_auth_requires_a_non_empty_key(sandbox):
    url = f"{sandbox.base_url}/customers"
    r = requests.get(url)
    assert r.status_code == 401
    assert r.json() == {"code": 401, "message": "No valid API key provided", "param": None}
    assert requests.get(url, auth=("", "")).status_code == 401
    assert requests.get(url, headers={"Authorization": "Basic !!notbase64"}).status_code == 401
    assert requests.get(url, auth=("any-key", "")).status_code == 200
    # admin endpoints take no auth
    assert sandbox.control.health()["ok"] is True


def test_auth_with_a_configured_key():
    with SandboxServer(customers=3, api_key="right") as srv:
        url = f"{srv.base_url}/customers"
        assert requests.get(url, auth=("wrong", "")).status_code == 401
        assert requests.get(url, auth=("right", "")).status_code == 200
        assert requests.post(url, auth=("wrong", ""), json={}).status_code == 401
        assert srv.control.stats()["by_status"] == {"401": 2, "200": 1}


# ---------------------------------------------------------------- listing and paging


def test_first_page_carries_deprecated_fields_later_pages_do_not(sandbox, http):
    entries, pages = walk(http, sandbox.base_url, per_page=50)
    first, later = pages[0], pages[1:]
    assert set(first) == {"entries", "per_page", "page", "current_page", "total_pages", "cursor", "has_more"}
    assert first["per_page"] == 50 and first["page"] == 1 and first["current_page"] == 1
    assert first["total_pages"] == len(pages)
    assert later and all(set(p) == {"entries", "cursor", "has_more"} for p in later)
    assert pages[-1]["cursor"] is None and pages[-1]["has_more"] is False
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {e["uuid"] for e in entries} == {c["uuid"] for c in sandbox.control.customers()}


def test_per_page_defaults_to_200_and_is_bounded(sandbox, http):
    body = http.get(f"{sandbox.base_url}/customers").json()
    assert len(body["entries"]) == 200 and body["per_page"] == 200 and body["has_more"] is True
    for bad in ("201", "0", "-1", "x"):
        r = http.get(f"{sandbox.base_url}/customers", params={"per_page": bad})
        assert r.status_code == 400
        assert r.json()["code"] == 400 and r.json()["param"] == "per_page" and r.json()["message"]


def test_bad_cursor_is_a_400(sandbox, http):
    for bad in ("garbage", "AjMx90kC0yMVQwNNwoYToyNC4wMDAwMDAwMDBgks68k", "eyJ4IjoxfQ"):
        r = http.get(f"{sandbox.base_url}/customers", params={"cursor": bad})
        assert r.status_code == 400
        assert r.json()["param"] == "cursor"
    cursor = http.get(f"{sandbox.base_url}/customers", params={"per_page": 5, "status": "Active"}).json()[
        "cursor"
    ]
    r = http.get(f"{sandbox.base_url}/customers", params={"cursor": cursor, "status": "Cancelled"})
    assert r.status_code == 400 and r.json()["param"] == "cursor"
    # the same filters again, or none at all, continue the walk
    assert http.get(f"{sandbox.base_url}/customers", params={"cursor": cursor, "status": "Active"}).ok
    assert http.get(f"{sandbox.base_url}/customers", params={"cursor": cursor}).ok


def test_walk_is_stable_while_customers_are_inserted_and_deleted(fresh_sandbox, http):
    ctl = fresh_sandbox.control
    before = {c["uuid"] for c in ctl.customers()}
    doomed = sorted(ctl.customers(), key=lambda c: c["id"])[-3]["uuid"]
    seen, cursor, inserted, page_no = [], None, [], 0
    while True:
        params = {"per_page": 4, **({"cursor": cursor} if cursor else {})}
        body = http.get(f"{fresh_sandbox.base_url}/customers", params=params).json()
        seen += [e["uuid"] for e in body["entries"]]
        page_no += 1
        # between pages: one insert through the API and one through the admin door
        r = http.post(
            f"{fresh_sandbox.base_url}/customers",
            json={"data_source_uuid": DOCS_DATA_SOURCE, "external_id": f"walk_{page_no}"},
        )
        assert r.status_code == 201
        inserted.append(r.json()["uuid"])
        if page_no == 2:
            ctl.delete_customer(doomed)
        if not body["has_more"] or page_no > 50:
            break
        cursor = body["cursor"]
    assert len(seen) == len(set(seen)), "a customer was returned twice"
    assert before - {doomed} <= set(seen), "an existing customer was skipped"
    assert doomed not in seen
    assert set(seen) - before <= set(inserted)


def test_walk_is_stable_under_a_concurrent_writer(fresh_sandbox):
    ctl = fresh_sandbox.control
    before = {c["uuid"] for c in ctl.customers()}
    stop = threading.Event()

    def writer():
        s, n = session(), 0
        while not stop.is_set() and n < 300:
            n += 1
            s.post(
                f"{fresh_sandbox.base_url}/customers",
                json={"data_source_uuid": DOCS_DATA_SOURCE, "external_id": f"conc_{n}"},
            )

    t = threading.Thread(target=writer)
    t.start()
    try:
        with session() as s:
            entries, _ = walk(s, fresh_sandbox.base_url, per_page=3)
    finally:
        stop.set()
        t.join()
    uuids = [e["uuid"] for e in entries]
    assert len(uuids) == len(set(uuids))
    assert before <= set(uuids)


# ---------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("New_Lead", "New Lead"),
        ("Working_Lead", "Working Lead"),
        ("Qualified_Lead", "Qualified Lead"),
        ("Unqualified_Lead", "Unqualified Lead"),
        ("Active", "Active"),
        ("Past_Due", "Past Due"),
        ("Cancelled", "Cancelled"),
    ],
)
def test_status_filter_takes_underscores_and_answers_spaces(sandbox, http, query, status):
    expected = {c["uuid"] for c in sandbox.control.customers() if c["status"] == status}
    entries, _ = walk(http, sandbox.base_url, per_page=37, status=query)
    assert expected and {e["uuid"] for e in entries} == expected
    assert all(e["status"] == status for e in entries)


def test_status_filter_rejects_unknown_values(sandbox, http):
    r = http.get(f"{sandbox.base_url}/customers", params={"status": "Past Due"})
    assert r.status_code == 400 and r.json()["param"] == "status"


def test_data_source_and_system_filters(sandbox, http):
    everyone = sandbox.control.customers()
    entries, _ = walk(http, sandbox.base_url, per_page=50, data_source_uuid=STRIPE_DS)
    assert {e["uuid"] for e in entries} == {c["uuid"] for c in everyone if c["data_source_uuid"] == STRIPE_DS}
    stripe, _ = walk(http, sandbox.base_url, per_page=50, system="Stripe")
    expected = {c["uuid"] for c in everyone if c["billing-system-type"] == "Stripe"}
    assert {e["uuid"] for e in stripe} == expected and len(expected) > len(entries)
    lower, _ = walk(http, sandbox.base_url, system="stripe")
    assert lower == [], "system is case-sensitive"
    combined, _ = walk(http, sandbox.base_url, per_page=10, system="Stripe", status="Active")
    assert {e["uuid"] for e in combined} == {
        c["uuid"] for c in everyone if c["billing-system-type"] == "Stripe" and c["status"] == "Active"
    }


def test_external_id_filter(sandbox, http):
    target = sandbox.control.customers()[17]
    body = http.get(f"{sandbox.base_url}/customers", params={"external_id": target["external_id"]}).json()
    assert [e["uuid"] for e in body["entries"]] == [target["uuid"]]
    assert body["has_more"] is False
    none = http.get(f"{sandbox.base_url}/customers", params={"external_id": "no-such-id"})
    assert none.status_code == 200
    assert none.json() == {"entries": [], "has_more": False, "cursor": None}


# ---------------------------------------------------------------- retrieve


def test_retrieve_and_404(sandbox, http):
    c = sandbox.control.customers()[5]
    r = http.get(f"{sandbox.base_url}/customers/{c['uuid']}")
    assert r.status_code == 200 and r.json() == c
    r = http.get(f"{sandbox.base_url}/customers/cus_00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404
    assert r.json() == {"code": 404, "message": "Customer not found", "param": "customer_uuid"}


def test_deleted_customer_answers_404(fresh_sandbox, http):
    ctl = fresh_sandbox.control
    uuid = ctl.customers()[0]["uuid"]
    ctl.delete_customer(uuid)
    assert http.get(f"{fresh_sandbox.base_url}/customers/{uuid}").status_code == 404
    assert ctl.customer(uuid) is None
    assert uuid not in {e["uuid"] for e in walk(http, fresh_sandbox.base_url)[0]}


def test_a_sandbox_bug_answers_an_html_500_instead_of_dropping_the_connection():
    """An unexpected exception in a handler answers like the API's own failures: 500 with an HTML body."""
    with SandboxServer(customers=3, seed=1) as srv:

        def broken(uuid):
            raise RuntimeError("sandbox bug")

        srv.store.get_bytes = broken  # the store is the sandbox's own; no HTTP or database is faked
        answer = requests.get(f"{srv.base_url}/customers/cus_x", auth=("k", ""), timeout=10)
        assert answer.status_code == 500
        assert answer.headers["Content-Type"].startswith("text/html")
        listed = requests.get(f"{srv.base_url}/customers", auth=("k", ""), timeout=10)
        assert listed.status_code == 200 and len(listed.json()["entries"]) == 3
