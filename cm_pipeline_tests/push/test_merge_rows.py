"""Merge, equality, row parsing and fingerprints: the pure decisions of the reverse ETL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from cm_pipeline.push.live import MalformedCustomer, live_state
from cm_pipeline.push.merge import (
    Changes,
    attribute_entries,
    custom_equal,
    merge_state,
    missing_keys,
    needs_change,
    state_equal,
    stored_types,
    values_equal,
)
from cm_pipeline.push.rows import (
    RowRejected,
    parse_email_row,
    parse_new_customer_row,
    parse_update_row,
    update_fingerprint,
)


def test_merge_keeps_unmentioned_tags_and_attributes():
    changes = Changes(
        add_tags=("vip", "b"), remove_tags=("old",), set_custom={"CAC": 30}, remove_custom=("gone",)
    )
    tags, custom = merge_state(["a", "old", "b"], {"CAC": 25, "channel": "Facebook", "gone": 1}, changes)
    assert tags == ["a", "b", "vip"]
    assert custom == {"CAC": 30, "channel": "Facebook"}


def test_merge_from_nothing_and_remove_wins_over_add():
    tags, custom = merge_state(None, None, Changes(add_tags=("x", "y"), remove_tags=("y",)))
    assert tags == ["x"] and custom == {}


def test_equality_ignores_tag_order_and_compares_typed_values():
    assert state_equal(["a", "b"], {"n": 25}, ["b", "a"], {"n": 25.0})
    assert not state_equal(["a"], {}, ["a", "b"], {})
    assert values_equal(True, "true") and values_equal("t", True) and not values_equal(True, False)
    assert values_equal("2024-05-01T00:00:00Z", "2024-05-01T02:00:00+02:00", "Timestamp")
    assert values_equal("2024-05-01T00:00:00.000Z", datetime(2024, 5, 1, tzinfo=timezone.utc), "Timestamp")
    assert values_equal(
        datetime(2024, 5, 1, tzinfo=timezone.utc),
        datetime(2024, 5, 1, 2, tzinfo=timezone(timedelta(hours=2))),
    )
    assert values_equal(12, "12") and not values_equal(12, "12a")
    assert not values_equal("Facebook", "facebook")
    assert not values_equal(0, None) and values_equal(None, None)
    assert not custom_equal({"a": 1}, {"a": 1, "b": 2})


def test_date_like_strings_are_instants_only_for_timestamp_attributes():
    # A String attribute changing form is a change; the same pair under Timestamp is one instant.
    assert not values_equal("2024-01-01", "2024-01-01T00:00:00Z")
    assert not values_equal("2024-01-01", "2024-01-01T00:00:00Z", "String")
    assert values_equal("2024-01-01", "2024-01-01T00:00:00Z", "Timestamp")
    assert not values_equal("2024-01-01", "2024-01-02T00:00:00Z", "Timestamp")
    assert values_equal("2024-01-01", "2024-01-01", "String")
    assert not custom_equal({"d": "2024-01-01"}, {"d": "2024-01-01T00:00:00Z"})
    assert custom_equal({"d": "2024-01-01"}, {"d": "2024-01-01T00:00:00Z"}, {"d": "Timestamp"})
    # row level: an undeclared date-like value is compared exactly, a declared Timestamp as an instant
    undeclared = parse_update_row({"customer_uuid": "c", "custom_attributes": {"d": "2024-01-01T00:00:00Z"}})
    assert undeclared.changes.declared == {} and undeclared.changes.types == {"d": "Timestamp"}
    assert needs_change([], {"d": "2024-01-01"}, undeclared.changes)
    declared = parse_update_row(
        {
            "customer_uuid": "c",
            "custom_attributes": {"d": "2024-01-01T00:00:00Z"},
            "attribute_types": {"d": "timestamp"},
        }
    )
    assert declared.changes.declared == {"d": "Timestamp"}
    assert not needs_change([], {"d": "2024-01-01 00:00:00"}, declared.changes)
    # a PATCH answer normalising an undeclared timestamp string is the same instant, not a failed write
    assert stored_types(undeclared.changes, {"d": "2024-01-01T00:00:00Z"}) == {"d": "Timestamp"}
    assert stored_types(undeclared.changes, {"d": "soon"}) == {}


WELL_FORMED = {"uuid": "cus_1", "email": "a@x.example", "attributes": {"tags": ["a"], "custom": {"k": 1}}}


def test_live_state_accepts_a_well_formed_customer():
    assert live_state(WELL_FORMED, "cus_1", "GET") == (["a"], {"k": 1})
    assert live_state(WELL_FORMED, None, "entry") == (["a"], {"k": 1})
    empty = {"uuid": "cus_1", "attributes": {"tags": [], "custom": {}, "stripe": {}}}
    assert live_state(empty, "cus_1", "GET") == ([], {})  # really no tags: that is an answer too


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ({}, "empty"),
        (None, "NoneType, not a customer"),
        ([WELL_FORMED], "list, not a customer"),
        ({"attributes": {"tags": [], "custom": {}}}, "no customer uuid"),
        ({**WELL_FORMED, "uuid": "cus_2"}, "for customer cus_2, not cus_1"),
        ({"uuid": "cus_1"}, "attributes is None"),
        ({"uuid": "cus_1", "attributes": []}, "attributes is []"),
        ({"uuid": "cus_1", "attributes": {"custom": {}}}, "attributes.tags is None"),
        ({"uuid": "cus_1", "attributes": {"tags": "a", "custom": {}}}, "attributes.tags is 'a'"),
        ({"uuid": "cus_1", "attributes": {"tags": [1], "custom": {}}}, "attributes.tags is [1]"),
        ({"uuid": "cus_1", "attributes": {"tags": []}}, "attributes.custom is None"),
        ({"uuid": "cus_1", "attributes": {"tags": [], "custom": None}}, "attributes.custom is None"),
        ({"uuid": "cus_1", "attributes": {"tags": [], "custom": []}}, "attributes.custom is []"),
    ],
)
def test_live_state_refuses_what_is_not_a_customer(answer, fragment):
    with pytest.raises(MalformedCustomer) as caught:
        live_state(answer, "cus_1", "GET /customers/cus_1")
    assert fragment in str(caught.value) and "GET /customers/cus_1" in str(caught.value)


def test_needs_change_and_missing_keys():
    changes = Changes(
        add_tags=("vip",), set_custom={"CAC": 25, "rank": 3}, types={"CAC": "Integer", "rank": "Integer"}
    )
    assert not needs_change(["vip"], {"CAC": 25.0, "rank": 3}, changes)
    assert needs_change(["vip"], {"CAC": 25}, changes)
    assert missing_keys(changes, {}, ["CAC", "other"]) == ["rank"]
    assert missing_keys(changes, {"rank": 1}, ["CAC"]) == []  # the customer holds it: the key exists
    assert attribute_entries(changes, ["rank"], "dbt") == [
        {"type": "Integer", "key": "rank", "value": 3, "source": "dbt"}
    ]


def test_parse_update_row_types_values_and_fingerprints():
    row = {
        "customer_uuid": "cus_1",
        "add_tags": ["vip"],
        "remove_tags": None,
        "custom_attributes": {"seats": "12", "churn_risk": None, "renewal": "2024-06-01"},
        "attribute_types": {"seats": "Integer"},
    }
    req = parse_update_row(row)
    assert req.changes.set_custom == {"seats": 12, "renewal": "2024-06-01"}  # undeclared: sent as given
    assert req.changes.types == {"seats": "Integer", "renewal": "Timestamp"}
    assert req.changes.remove_custom == ("churn_risk",)
    same = dict(row, add_tags=["vip"])
    assert update_fingerprint(same) == req.fingerprint
    assert update_fingerprint(dict(row, custom_attributes={"seats": "13"})) != req.fingerprint


def test_parse_update_row_lists_every_problem():
    row = {
        "customer_uuid": "cus_1",
        "add_tags": "vip",
        "custom_attributes": {"seats": "twelve", "ok": 1, "when": "soon"},
        "attribute_types": {"seats": "Integer", "when": "Timestamp", "x": "Money"},
    }
    with pytest.raises(RowRejected) as info:
        parse_update_row(row)
    text = str(info.value)
    for fragment in ("add_tags", "'seats'", "'twelve'", "'when'", "'soon'", "'Money'"):
        assert fragment in text


def test_parse_email_row():
    attr = parse_email_row(
        {"email": "a@x.io", "key": "age", "type": "Integer", "value": "8", "source": "dbt"}
    )
    assert attr.entry() == {"type": "Integer", "key": "age", "value": 8, "source": "dbt"}
    with pytest.raises(RowRejected, match="'age'.*'eight'"):
        parse_email_row({"email": "a@x.io", "key": "age", "type": "Integer", "value": "eight"})
    with pytest.raises(RowRejected, match="email"):
        parse_email_row({"email": "nobody", "key": "age", "type": "Integer", "value": 1})


def test_parse_new_customer_row():
    row = {
        "data_source_uuid": "ds_1",
        "external_id": "ext_1",
        "name": "Ada",
        "email": "ada@x.io",
        "lead_created_at": datetime(2023, 1, 1, tzinfo=timezone.utc),
        "tags": ["lead"],
        "custom": [{"type": "Integer", "key": "age", "value": "18"}],
        "primary_contact": {"first_name": "Ada"},
    }
    new = parse_new_customer_row(row)
    assert new.body["attributes"] == {
        "tags": ["lead"],
        "custom": [{"type": "Integer", "key": "age", "value": 18}],
    }
    assert new.body["lead_created_at"] == "2023-01-01T00:00:00Z"
    assert "company" not in new.body
    with pytest.raises(RowRejected) as info:
        parse_new_customer_row(
            dict(
                row,
                external_id=None,
                lead_created_at="2999-01-01",
                custom=[{"type": "Boolean", "key": "b", "value": "yes"}],
            )
        )
    text = str(info.value)
    assert "external_id" in text and "future" in text and "'yes'" in text
