"""Behaviour of the sandbox's API over real sockets: auth, paging, filters, validation, PATCH, add-by-email."""

from __future__ import annotations

import threading

import pytest
import requests

from cm_pipeline.sandbox import SandboxServer
from cm_pipeline.sandbox.seed import DOCS_DATA_SOURCE
from cm_pipeline_tests.sandbox.conftest import session

STRIPE_DS = "ds_1a7c2e10-0b1f-11ee-9a41-2f5d3c1b0001"
CRM_DS = "ds_1a7c2e10-0b1f-11ee-9a41-2f5d3c1b0006"  # the seeded account's second Custom data source


def walk(http, base_url, per_page=200, **filters):
    """All entries of a cursor walk, plus the list of raw page bodies."""
    entries, pages, cursor = [], [], None
    while True:
        params = {"per_page": per_page, **filters}
        if cursor:
            params["cursor"] = cursor
        r = http.get(f"{base_url}/customers", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body)
        entries += body["entries"]
        if not body["has_more"]:
            return entries, pages
        cursor = body["cursor"]
        assert cursor


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


# ---------------------------------------------------------------- create


def create(srv, http, **body):
    return http.post(f"{srv.base_url}/customers", json=body)


def test_create_requires_data_source_and_external_id(sandbox, http):
    r = create(sandbox, http, external_id="x1")
    assert r.status_code == 400
    assert r.json() == {
        "code": 400,
        "message": 'Parameter "data_source_uuid" is missing',
        "param": "data_source_uuid",
    }
    r = create(sandbox, http, data_source_uuid=DOCS_DATA_SOURCE)
    assert r.status_code == 400 and r.json()["param"] == "external_id"
    r = http.post(
        f"{sandbox.base_url}/customers", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "JSON" in r.json()["message"]


def test_create_unknown_data_source_and_duplicates(sandbox, http):
    r = create(sandbox, http, data_source_uuid="ds_nope", external_id="x2")
    assert r.status_code == 422 and r.json() == {"error": "Data source not found"}
    assert create(sandbox, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="dup_1").status_code == 201
    r = create(sandbox, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="dup_1")
    assert r.status_code == 422
    assert r.json() == {
        "errors": {"external_id": "The external ID for this customer already exists in our system."}
    }
    # the same external_id in another (Custom) data source is a different customer
    assert create(sandbox, http, data_source_uuid=CRM_DS, external_id="dup_1").status_code == 201


def test_create_only_into_a_custom_data_source(sandbox, http):
    """list-customers.txt: customers created through the API belong to Custom data sources."""
    before = len(sandbox.control.customers())
    for ds in sandbox.control.data_sources():
        if ds["system"] == "Custom":
            continue
        r = create(sandbox, http, data_source_uuid=ds["uuid"], external_id="not_custom_1")
        assert r.status_code == 422, ds
        assert set(r.json()) == {"errors"} and list(r.json()["errors"]) == ["data_source_uuid"]
        assert ds["uuid"] in r.json()["errors"]["data_source_uuid"]
        assert ds["system"] in r.json()["errors"]["data_source_uuid"]
    assert len(sandbox.control.customers()) == before, "a rejected create stores nothing"
    r = create(sandbox, http, data_source_uuid=CRM_DS, external_id="custom_ok_1")
    assert r.status_code == 201 and r.json()["billing-system-type"] == "Custom"


def test_create_validates_timestamps_and_custom_attributes(sandbox, http):
    base = {"data_source_uuid": DOCS_DATA_SOURCE}
    r = create(sandbox, http, **base, external_id="t1", lead_created_at="2999-01-01")
    assert r.status_code == 422 and "lead_created_at" in r.json() and r.json()["error_details"]
    r = create(
        sandbox,
        http,
        **base,
        external_id="t2",
        lead_created_at="2023-02-01",
        free_trial_started_at="2023-01-01",
    )
    assert r.status_code == 422 and "free_trial_started_at" in r.json()
    r = create(
        sandbox,
        http,
        **base,
        external_id="t3",
        attributes={"custom": [{"type": "Integer", "key": "n", "value": "x"}]},
    )
    assert r.status_code == 422 and "n" in r.json()
    r = create(
        sandbox,
        http,
        **base,
        external_id="t4",
        attributes={"custom": [{"type": "String", "key": "bad key", "value": "x"}]},
    )
    assert r.status_code == 422 and "bad key" in r.json()
    r = create(
        sandbox, http, **base, external_id="t5", attributes={"custom": [{"type": "Integer", "key": "CAC"}]}
    )
    assert r.status_code == 400 and r.json()["param"] == "attributes.custom[0].value"
    r = create(
        sandbox,
        http,
        **base,
        external_id="t6",
        attributes={"custom": [{"type": "String", "key": "CAC", "value": "x"}]},
    )
    assert r.status_code == 422 and "CAC" in r.json() and "Integer" in r.json()["CAC"][0]
    r = create(sandbox, http, **base, external_id="t7", name=12)
    assert r.status_code == 422 and "name" in r.json()
    assert not any(
        c["external_id"].startswith("t") and c["external_id"][1:].isdigit()
        for c in sandbox.control.customers()
    )


def test_create_normalises_state_and_website(sandbox, http):
    r = create(
        sandbox, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="norm_1", country="US", state="US-CA",
        website_url="example.org", company="Norm Co",
    )  # fmt: skip
    assert r.status_code == 201
    c = r.json()
    assert c["state"] == "CA" and c["address"]["state"] == "California"
    assert c["address"]["country"] == "US" and c["country"] == "US"  # alpha-2 (see sandbox/__init__.py)
    assert c["website_url"] == "https://example.org"
    assert sandbox.control.customer(c["uuid"]) == c


# ---------------------------------------------------------------- PATCH


@pytest.fixture
def patch_target(fresh_sandbox):
    ctl = fresh_sandbox.control
    c = ctl.insert_customer(
        name="Patchy", email="patchy@example.com", status="Active", mrr=1000,
        tags=["vip", "keep-me"], custom={"CAC": 10, "channel": "Facebook", "salesRep": "Gabi"},
    )  # fmt: skip
    return fresh_sandbox, c


def patch(srv, http, uuid, body):
    return http.patch(f"{srv.base_url}/customers/{uuid}", json=body)


def test_patch_attributes_replace_all_tags_and_custom(patch_target, http):
    srv, c = patch_target
    r = patch(srv, http, c["uuid"], {"attributes": {"tags": ["webinar"], "custom": {"CAC": 25}}})
    assert r.status_code == 200
    body = r.json()
    assert body["attributes"]["tags"] == ["webinar"]
    assert body["attributes"]["custom"] == {"CAC": 25}, "keys not sent are removed"
    assert srv.control.customer(c["uuid"]) == body
    assert body["mrr"] == 1000 and body["status"] == "Active" and body["name"] == "Patchy"


def test_patch_attributes_without_custom_deletes_custom(patch_target, http):
    """Documented choice (update-customer.txt): the attributes object overwrites both; what it omits is deleted."""
    srv, c = patch_target
    body = patch(srv, http, c["uuid"], {"attributes": {"tags": ["a"]}}).json()
    assert body["attributes"]["tags"] == ["a"] and body["attributes"]["custom"] == {}
    body = patch(srv, http, c["uuid"], {"attributes": {"custom": {"channel": "Twitter"}}}).json()
    assert body["attributes"]["tags"] == [] and body["attributes"]["custom"] == {"channel": "Twitter"}


def test_patch_without_attributes_keeps_tags_and_custom(patch_target, http):
    srv, c = patch_target
    body = patch(
        srv, http, c["uuid"], {"company": "NewCo", "state": "US-NY", "website_url": "newco.io"}
    ).json()
    assert body["attributes"]["tags"] == ["vip", "keep-me"]
    assert body["attributes"]["custom"] == {"CAC": 10, "channel": "Facebook", "salesRep": "Gabi"}
    assert body["company"] == "NewCo" and body["state"] == "NY" and body["address"]["state"] == "New York"
    assert body["website_url"] == "https://newco.io"


def test_patch_custom_values_are_checked_against_definitions(patch_target, http):
    srv, c = patch_target
    r = patch(srv, http, c["uuid"], {"attributes": {"custom": {"neverDefined": 1}}})
    assert (
        r.status_code == 422
        and "neverDefined" in r.json()
        and "does not exist" in r.json()["neverDefined"][0]
    )
    r = patch(srv, http, c["uuid"], {"attributes": {"custom": {"CAC": "a lot"}}})
    assert r.status_code == 422 and "CAC" in r.json()
    r = patch(srv, http, c["uuid"], {"attributes": {"custom": {"pro": "yes"}}})
    assert r.status_code == 422 and "pro" in r.json()
    assert srv.control.customer(c["uuid"])["attributes"]["custom"]["CAC"] == 10, (
        "a rejected PATCH changes nothing"
    )
    r = patch(
        srv,
        http,
        c["uuid"],
        {
            "attributes": {
                "custom": {"channel": {"value": "Twitter", "source": "crm"}, "pro": "t", "CAC": "25"}
            }
        },
    )
    assert r.status_code == 200
    assert r.json()["attributes"]["custom"] == {"channel": "Twitter", "pro": True, "CAC": 25}


def test_patch_status_only_lead_statuses(patch_target, http):
    srv, c = patch_target
    for bad in ("Active", "Past Due", "Cancelled", "Bogus"):
        r = patch(srv, http, c["uuid"], {"status": bad})
        assert r.status_code == 422 and "status" in r.json()
    r = patch(srv, http, c["uuid"], {"status": "Qualified Lead"})
    assert r.status_code == 200 and r.json()["status"] == "Qualified Lead"


def test_patch_timestamps_and_404(patch_target, http):
    srv, c = patch_target
    r = patch(srv, http, c["uuid"], {"lead_created_at": "2999-01-01 00:00:00"})
    assert r.status_code == 422 and "lead_created_at" in r.json()
    r = patch(
        srv,
        http,
        c["uuid"],
        {"lead_created_at": "2023-01-01 00:00:00", "free_trial_started_at": "2023-06-13 15:45:13"},
    )
    assert r.json()["lead_created_at"] == "2023-01-01T00:00:00.000Z"
    assert r.json()["free_trial_started_at"] == "2023-06-13T15:45:13.000Z"
    r = patch(srv, http, "cus_missing", {"name": "x"})
    assert r.status_code == 404 and r.json()["param"] == "customer_uuid"


# ---------------------------------------------------------------- add custom attributes by email


def add_custom(srv, http, body):
    return http.post(f"{srv.base_url}/customers/attributes/custom", json=body)


def test_add_by_email_applies_to_every_customer_with_the_email(fresh_sandbox, http):
    ctl = fresh_sandbox.control
    a = ctl.insert_customer(email="shared@example.com", custom={"CAC": 1})
    b = ctl.insert_customer(email="Shared@Example.COM", custom={})
    other = ctl.insert_customer(email="other@example.com")
    r = add_custom(
        fresh_sandbox, http,
        {"email": "shared@example.com", "custom": [
            {"type": "String", "key": "plan_tier", "value": "gold", "source": "integration"},
            {"type": "Integer", "key": "age", "value": 8},
        ]},
    )  # fmt: skip
    assert r.status_code == 200
    entries = r.json()["entries"]
    assert {e["uuid"] for e in entries} == {a["uuid"], b["uuid"]}
    assert entries[0]["attributes"]["custom"] == {"CAC": 1, "plan_tier": "gold", "age": 8}
    assert set(entries[0]["attributes"]) == {"tags", "stripe", "clearbit", "custom"}
    assert ctl.customer(b["uuid"])["attributes"]["custom"] == {"plan_tier": "gold", "age": 8}
    assert ctl.customer(other["uuid"])["attributes"]["custom"] == {}
    defs = ctl.custom_attribute_definitions()
    assert defs["plan_tier"] == "String" and defs["age"] == "Integer"
    # once defined, PATCH may set the new key
    assert (
        patch(fresh_sandbox, http, other["uuid"], {"attributes": {"custom": {"age": 9}}}).status_code == 200
    )


def test_add_by_email_to_a_customer_whose_custom_is_null_answers_the_pages_shape(fresh_sandbox, http):
    """A customer nulled through the admin API (custom: null) gets the keys, not a 500."""
    ctl = fresh_sandbox.control
    c = ctl.insert_customer(email="nulled@example.com", tags=["keep"], custom={"CAC": 1})
    ctl.modify_customer(c["uuid"], custom=None)
    assert ctl.customer(c["uuid"])["attributes"]["custom"] is None
    r = add_custom(
        fresh_sandbox,
        http,
        {"email": "nulled@example.com", "custom": [{"type": "Integer", "key": "age", "value": 8}]},
    )
    assert r.status_code == 200, r.text
    (entry,) = r.json()["entries"]
    assert entry["uuid"] == c["uuid"] and entry["email"] == "nulled@example.com"
    assert entry["attributes"] == {"tags": ["keep"], "stripe": {}, "clearbit": {}, "custom": {"age": 8}}
    assert ctl.customer(c["uuid"])["attributes"]["custom"] == {"age": 8}
    assert ctl.customer(c["uuid"])["attributes"]["tags"] == ["keep"]


def test_add_by_email_type_conflict_and_errors(fresh_sandbox, http):
    ctl = fresh_sandbox.control
    c = ctl.insert_customer(email="conflict@example.com", custom={"CAC": 5})
    r = add_custom(
        fresh_sandbox,
        http,
        {"email": "conflict@example.com", "custom": [{"type": "String", "key": "CAC", "value": "x"}]},
    )
    assert r.status_code == 422 and "CAC" in r.json() and "Integer" in r.json()["CAC"][0]
    assert ctl.customer(c["uuid"])["attributes"]["custom"] == {"CAC": 5}
    r = add_custom(
        fresh_sandbox,
        http,
        {"email": "nobody@example.com", "custom": [{"type": "String", "key": "k", "value": "x"}]},
    )
    assert r.status_code == 404 and r.json()["param"] == "email"
    assert "k" not in ctl.custom_attribute_definitions(), "a failed call defines nothing"
    r = add_custom(fresh_sandbox, http, {"custom": [{"type": "String", "key": "k", "value": "x"}]})
    assert r.status_code == 400 and r.json()["param"] == "email"
    r = add_custom(fresh_sandbox, http, {"email": "conflict@example.com"})
    assert r.status_code == 400 and r.json()["param"] == "custom"
    r = add_custom(
        fresh_sandbox,
        http,
        {"email": "conflict@example.com", "custom": [{"type": "String", "key": "long", "value": "x" * 256}]},
    )
    assert r.status_code == 422 and "255" in r.json()["long"][0]
    r = add_custom(
        fresh_sandbox,
        http,
        {"email": "conflict@example.com", "custom": [{"type": "Timestamp", "key": "when", "value": "soon"}]},
    )
    assert r.status_code == 422 and "when" in r.json()
    for item in (
        {"type": "String", "key": "label", "value": 42},
        {"type": "Integer", "key": "seats", "value": "+5"},
        {"type": "Integer", "key": "seats", "value": "\u0665"},
        {"type": "Integer", "key": "seats", "value": 2.5},
        {"type": "Integer", "key": "seats", "value": True},
        {"type": "Decimal", "key": "healthScore", "value": "1_000"},
        {"type": "Decimal", "key": "healthScore", "value": "nan"},
        {"type": "Decimal", "key": "healthScore", "value": False},
    ):
        r = add_custom(fresh_sandbox, http, {"email": "conflict@example.com", "custom": [item]})
        assert r.status_code == 422, item
        assert set(r.json()) == {item["key"], "error_details"}, item
        assert r.json()["error_details"][0]["param"] == item["key"]
    assert ctl.customer(c["uuid"])["attributes"]["custom"] == {"CAC": 5}, "rejected values change nothing"
    assert "label" not in ctl.custom_attribute_definitions()


def test_timestamp_attributes_answer_in_the_pages_form(fresh_sandbox, http):
    """list/retrieve-customer.txt show a Timestamp custom attribute as "2023-09-08 00:00:00"."""
    ctl = fresh_sandbox.control
    c = ctl.insert_customer(email="ts@example.com")
    r = add_custom(
        fresh_sandbox, http,
        {"email": "ts@example.com", "custom": [
            {"type": "Timestamp", "key": "convertedAt", "value": "2023-09-08T02:00:00+02:00"},
            {"type": "Timestamp", "key": "renewedAt", "value": "2024-01-31T10:20:30.500Z"},
        ]},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    custom = r.json()["entries"][0]["attributes"]["custom"]
    assert custom == {"convertedAt": "2023-09-08 00:00:00", "renewedAt": "2024-01-31 10:20:30.5"}
    got = http.get(f"{fresh_sandbox.base_url}/customers/{c['uuid']}").json()
    assert got["attributes"]["custom"] == custom
    patched = patch(
        fresh_sandbox, http, c["uuid"], {"attributes": {"custom": {"convertedAt": "2023-09-09"}}}
    ).json()
    assert patched["attributes"]["custom"] == {"convertedAt": "2023-09-09 00:00:00"}


# ---------------------------------------------------------------- odd characters


ODD = [
    "Robert'); DROP TABLE customers;--",
    'The "Quoted" Company',
    "Back\\slash \\N",
    "Tab\there & new\nline",
    "100% off; -- $$ dollar $$",
    "🚀 Émoji 東京 Zoë's Café",
]


def test_odd_characters_round_trip(fresh_sandbox, http):
    srv = fresh_sandbox
    r = create(
        srv, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="odd-1", name=ODD[0], company=ODD[1],
        email="odd@example.com", city=ODD[5], attributes={"tags": ODD, "custom": [{"type": "String", "key": "note", "value": ODD[3]}]},
    )  # fmt: skip
    assert r.status_code == 201
    uuid = r.json()["uuid"]
    got = http.get(f"{srv.base_url}/customers/{uuid}").json()
    assert got["name"] == ODD[0] and got["company"] == ODD[1] and got["city"] == ODD[5]
    assert got["attributes"]["tags"] == ODD and got["attributes"]["custom"]["note"] == ODD[3]
    body = patch(
        srv, http, uuid, {"attributes": {"tags": list(reversed(ODD)), "custom": {"note": ODD[2]}}}
    ).json()
    assert (
        body["attributes"]["tags"] == list(reversed(ODD)) and body["attributes"]["custom"]["note"] == ODD[2]
    )
    listed = http.get(f"{srv.base_url}/customers", params={"external_id": "odd-1"}).json()["entries"]
    assert listed == [body]


def test_a_sandbox_bug_answers_an_html_500_instead_of_dropping_the_connection():
    """An unexpected exception in a handler answers like the API's own failures: 500 with an HTML body."""
    import requests

    from cm_pipeline.sandbox import SandboxServer

    with SandboxServer(customers=3, seed=1) as srv:

        def broken(uuid):
            raise RuntimeError("sandbox bug")

        srv.store.get_bytes = broken  # the store is the sandbox's own; no HTTP or database is faked
        answer = requests.get(f"{srv.base_url}/customers/cus_x", auth=("k", ""), timeout=10)
        assert answer.status_code == 500
        assert answer.headers["Content-Type"].startswith("text/html")
        listed = requests.get(f"{srv.base_url}/customers", auth=("k", ""), timeout=10)
        assert listed.status_code == 200 and len(listed.json()["entries"]) == 3
