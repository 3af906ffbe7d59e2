"""Pure validators of the sandbox, tested directly (no server)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cm_pipeline.sandbox import attributes as a
from cm_pipeline.sandbox import validation as v
from cm_pipeline.sandbox.responses import ApiFailure

NOW = datetime(2025, 6, 1, tzinfo=timezone.utc)


def failure(fn, *args):
    with pytest.raises(ApiFailure) as info:
        fn(*args)
    return info.value


@pytest.mark.parametrize(
    ("attr_type", "value", "stored"),
    [
        ("String", "Facebook", "Facebook"),
        ("String", "social media 1", "social media 1"),
        ("String", "x" * 255, "x" * 255),
        ("String", "", ""),
        ("Integer", 8, 8),
        ("Integer", 0, 0),
        ("Integer", "18", 18),
        ("Integer", "-3", -3),
        ("Integer", "007", 7),
        ("Integer", 10**20, 10**20),
        ("Decimal", 1.5, 1.5),
        ("Decimal", "2.25", 2.25),
        ("Decimal", 3, 3),
        ("Decimal", "-.5", -0.5),
        ("Decimal", "+1.", 1.0),
        ("Decimal", "1e3", 1000.0),
        ("Decimal", "12", 12.0),
        # list/retrieve-customer.txt answer Timestamps as "2023-09-08 00:00:00" (UTC), whatever ISO form came in
        ("Timestamp", "2023-09-08 00:00:00", "2023-09-08 00:00:00"),
        ("Timestamp", "2023-09-08T02:00:00+02:00", "2023-09-08 00:00:00"),
        ("Timestamp", "2023-09-08", "2023-09-08 00:00:00"),
        ("Timestamp", "2023-09-08T00:00:00Z", "2023-09-08 00:00:00"),
        ("Timestamp", "2023-09-08T00:00:00.000Z", "2023-09-08 00:00:00"),
        ("Timestamp", "2023-09-08T12:30:00.250Z", "2023-09-08 12:30:00.25"),
        ("Timestamp", "2023-09-08T12:30:00.123456+00:00", "2023-09-08 12:30:00.123456"),
        ("Boolean", True, True),
        ("Boolean", False, False),
        *[("Boolean", s, True) for s in ("TRUE", "true", "t", "1")],
        *[("Boolean", s, False) for s in ("FALSE", "false", "f", "0")],
        ("Boolean", 1, True),
        ("Integer", None, None),
    ],
)
def test_coerce_value_accepts_documented_formats(attr_type, value, stored):
    assert a.coerce_value(attr_type, value, "k") == stored
    assert type(a.coerce_value(attr_type, value, "k")) is type(stored)


@pytest.mark.parametrize(
    ("attr_type", "value", "fragment"),
    [
        ("String", "x" * 256, "at most 255"),
        ("String", True, "expected a string, not a JSON boolean"),
        ("String", 42, "expected a string, not a JSON number"),
        ("String", 4.2, "expected a string, not a JSON number"),
        ("String", {"a": 1}, "expected a string, not a JSON object"),
        ("String", ["a"], "expected a string, not a JSON array"),
        ("Integer", "12a", "numeric characters 0-9 only"),
        ("Integer", "+5", "numeric characters 0-9 only"),
        ("Integer", "\u0663", "numeric characters 0-9 only"),  # ARABIC-INDIC DIGIT THREE
        ("Integer", "\uff15", "numeric characters 0-9 only"),  # FULLWIDTH DIGIT FIVE
        ("Integer", " 8", "numeric characters 0-9 only"),
        ("Integer", "8\n", "numeric characters 0-9 only"),
        ("Integer", "", "numeric characters 0-9 only"),
        ("Integer", "-", "numeric characters 0-9 only"),
        ("Integer", "1_000", "numeric characters 0-9 only"),
        ("Integer", "7.0", "numeric characters 0-9 only"),
        ("Integer", 7.0, "numeric characters 0-9 only"),
        ("Integer", 1.5, "numeric characters 0-9 only"),
        ("Integer", True, "not a boolean"),
        ("Integer", False, "not a boolean"),
        ("Integer", [1], "numeric characters 0-9 only"),
        ("Decimal", "abc", "decimal number"),
        ("Decimal", "nan", "decimal number"),
        ("Decimal", "inf", "decimal number"),
        ("Decimal", "-Infinity", "decimal number"),
        ("Decimal", "1_000", "decimal number"),
        ("Decimal", "1,5", "decimal number"),
        ("Decimal", ".", "decimal number"),
        ("Decimal", "\u0661.5", "decimal number"),
        ("Decimal", "1e999", "within range"),
        ("Decimal", float("nan"), "finite"),
        ("Decimal", float("inf"), "finite"),
        ("Decimal", True, "not a boolean"),
        ("Decimal", {"v": 1}, "decimal number"),
        ("Timestamp", "yesterday", "ISO 8601"),
        ("Timestamp", 12345, "ISO 8601"),
        ("Boolean", "yes", "TRUE, true, t, 1"),
        ("Boolean", "True", "TRUE, true, t, 1"),
        ("Boolean", 2, "TRUE, true, t, 1"),
    ],
)
def test_coerce_value_rejects_bad_values_naming_the_key(attr_type, value, fragment):
    exc = failure(a.coerce_value, attr_type, value, "myKey")
    assert exc.status == 422
    assert set(exc.body) == {"myKey", "error_details"}, "the documented {field: [...], error_details} shape"
    assert fragment in exc.body["myKey"][0] and "myKey" in exc.body["myKey"][0]
    assert exc.body["error_details"] == [
        {"param": "myKey", "code": "invalid", "message": exc.body["myKey"][0]}
    ]


@pytest.mark.parametrize("key", ["bad-key", "with space", "ümlaut", "dot.key", ""])
def test_key_charset(key):
    exc = failure(a.validate_key, key)
    assert exc.status == 422
    assert a.validate_key("Good_key_1") == "Good_key_1"


def test_custom_items_require_type_key_value():
    for missing_field in ("type", "key", "value"):
        item = {"type": "String", "key": "channel", "value": "x"}
        del item[missing_field]
        exc = failure(a.validate_custom_items, [item])
        assert exc.status == 400 and exc.body["param"] == f"custom[0].{missing_field}"
        assert exc.body["message"] == f'Parameter "custom[0].{missing_field}" is missing'
    exc = failure(a.validate_custom_items, [{"type": "Float", "key": "k", "value": 1}])
    assert exc.status == 422 and "String, Integer, Decimal, Timestamp, Boolean" in exc.body["k"][0]
    assert failure(a.validate_custom_items, {"not": "a list"}).status == 400
    assert a.validate_custom_items([{"type": "Integer", "key": "age", "value": "8", "source": "x"}]) == [
        ("age", "Integer", 8)
    ]


def test_type_conflicts_name_the_key():
    exc = failure(a.check_type_conflicts, [("age", "String", "8")], {"age": "Integer"})
    assert exc.status == 422 and "age" in exc.body and "Integer" in exc.body["age"][0]
    exc = failure(a.check_type_conflicts, [("a", "String", "x"), ("a", "Integer", 1)], {})
    assert "a" in exc.body
    a.check_type_conflicts([("age", "Integer", 1)], {"age": "Integer"})


def test_custom_patch_requires_existing_keys_and_accepts_value_source():
    defs = {"CAC": "Integer", "channel": "String"}
    out = a.validate_custom_patch(
        {"CAC": "25", "channel": {"value": "Twitter", "source": "integration2"}}, defs
    )
    assert out == {"CAC": 25, "channel": "Twitter"}
    exc = failure(a.validate_custom_patch, {"unknownKey": 1}, defs)
    assert exc.status == 422 and "unknownKey" in exc.body and "does not exist" in exc.body["unknownKey"][0]
    exc = failure(a.validate_custom_patch, {"CAC": "lots"}, defs)
    assert "CAC" in exc.body


def test_timestamps_must_be_past_and_trial_not_before_lead():
    out = v.validate_lead_and_trial({"lead_created_at": "2023-01-01 00:00:00"}, NOW)
    assert out == {"lead_created_at": "2023-01-01T00:00:00.000Z"}
    exc = failure(v.validate_lead_and_trial, {"lead_created_at": "2999-01-01"}, NOW)
    assert exc.status == 422 and "lead_created_at" in exc.body and "past" in exc.body["lead_created_at"][0]
    exc = failure(v.validate_lead_and_trial, {"free_trial_started_at": "not a date"}, NOW)
    assert "free_trial_started_at" in exc.body
    exc = failure(
        v.validate_lead_and_trial,
        {"lead_created_at": "2023-02-01", "free_trial_started_at": "2023-01-01"},
        NOW,
    )
    assert "free_trial_started_at" in exc.body
    # the existing lead date counts when only the trial is sent
    exc = failure(
        v.validate_lead_and_trial,
        {"free_trial_started_at": "2023-01-01"},
        NOW,
        {"lead_created_at": "2023-02-01T00:00:00.000Z"},
    )
    assert "free_trial_started_at" in exc.body


def test_normalisers():
    assert v.normalise_state("US-CA") == "CA"
    assert v.normalise_state("us-ny") == "NY"
    assert v.normalise_state("Bavaria") == "Bavaria"
    assert v.normalise_state(None) is None
    assert v.normalise_website("example.com") == "https://example.com"
    assert v.normalise_website("http://example.com") == "http://example.com"
    assert v.normalise_website("HTTPS://example.com") == "HTTPS://example.com"
    assert v.state_full_name("NY", "US") == "New York"
    # address.country is the alpha-2 code (list-customers.txt), see cm_pipeline/sandbox/__init__.py
    assert v.address_country("US") == "US"
    assert v.address_country("de") == "DE"
    assert v.address_country("Atlantis") == "Atlantis"
    assert v.address_country(None) is None


def test_status_filters_and_lead_status():
    assert v.status_from_filter("Past_Due") == "Past Due"
    assert v.status_from_filter("New_Lead") == "New Lead"
    exc = failure(v.status_from_filter, "Past Due")
    assert exc.status == 400 and exc.body["param"] == "status"
    assert v.lead_status("Working Lead") == "Working Lead"
    assert v.lead_status("Qualified_Lead") == "Qualified Lead"
    for bad in ("Active", "Past Due", "Cancelled", "Whatever", 3):
        exc = failure(v.lead_status, bad)
        assert exc.status == 422 and "status" in exc.body


@pytest.mark.parametrize(("raw", "ok"), [(None, 200), ("", 200), ("1", 1), ("200", 200)])
def test_per_page_ok(raw, ok):
    assert v.parse_per_page(raw) == ok


@pytest.mark.parametrize("raw", ["0", "201", "-5", "abc"])
def test_per_page_bad(raw):
    exc = failure(v.parse_per_page, raw)
    assert exc.status == 400 and exc.body["param"] == "per_page" and exc.body["code"] == 400


def test_string_fields_type_checked():
    exc = failure(v.check_string_fields, {"name": 5, "email": "a@b.c", "city": ["x"]})
    assert set(exc.body) == {"name", "city", "error_details"}
