"""The sandbox's API over real sockets, changing: PATCH /v1/customers/{uuid}, add custom attributes by email."""

from __future__ import annotations

import pytest

from cm_pipeline_tests.sandbox.conftest import add_custom, patch

# ---------------------------------------------------------------- PATCH


@pytest.fixture
def patch_target(fresh_sandbox):
    ctl = fresh_sandbox.control
    c = ctl.insert_customer(
        name="Patchy", email="patchy@example.com", status="Active", mrr=1000,
        tags=["vip", "keep-me"], custom={"CAC": 10, "channel": "Facebook", "salesRep": "Gabi"},
    )  # fmt: skip
    return fresh_sandbox, c


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
