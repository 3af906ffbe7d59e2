"""Coercion of custom attribute values to ChartMogul's five types."""

from __future__ import annotations

import pytest

from cm_pipeline.push.coerce import CoercionError, coerce_attribute, coerce_value, infer_type


@pytest.mark.parametrize(
    ("type_name", "value", "expected"),
    [
        ("String", "Facebook", "Facebook"),
        ("String", "x" * 255, "x" * 255),
        ("String", 42, "42"),
        ("Integer", 8, 8),
        ("Integer", "-12", -12),
        ("Integer", 3.0, 3),
        ("Decimal", "12.50", 12.5),
        ("Decimal", 7, 7),
        ("Decimal", 1.25, 1.25),
        ("Timestamp", "2024-05-01", "2024-05-01T00:00:00Z"),
        ("Timestamp", "2024-05-01 12:30:00", "2024-05-01T12:30:00Z"),
        ("Timestamp", "2024-05-01T12:30:00+02:00", "2024-05-01T10:30:00Z"),
        ("Timestamp", "2024-05-01T12:30:00.123Z", "2024-05-01T12:30:00.123000Z"),
        ("Boolean", True, True),
        ("Boolean", False, False),
        ("Boolean", "TRUE", True),
        ("Boolean", "true", True),
        ("Boolean", "t", True),
        ("Boolean", "1", True),
        ("Boolean", 1, True),
        ("Boolean", "FALSE", False),
        ("Boolean", "false", False),
        ("Boolean", "f", False),
        ("Boolean", "0", False),
        ("boolean", 0, False),
    ],
)
def test_good_values_coerce(type_name, value, expected):
    assert coerce_value("k", value, type_name) == expected


@pytest.mark.parametrize(
    ("type_name", "value", "fragment"),
    [
        ("String", "x" * 256, "256 characters"),
        ("String", {"a": 1}, "JSON dict"),
        ("Integer", "12.5", "not an Integer"),
        ("Integer", 12.5, "whole number"),
        ("Integer", "abc", "not an Integer"),
        ("Integer", True, "boolean"),
        ("Decimal", "1,5", "not a Decimal"),
        ("Decimal", float("nan"), "finite"),
        ("Decimal", "NaN", "not a Decimal"),
        ("Timestamp", "yesterday", "ISO 8601"),
        ("Timestamp", "2024-13-01", "ISO 8601"),
        ("Timestamp", 1714560000, "ISO 8601"),
        ("Boolean", "yes", "not a Boolean"),
        ("Boolean", 2, "not a Boolean"),
        ("Boolean", None, "null"),
        ("Money", 1, "not an attribute type"),
    ],
)
def test_bad_values_name_key_and_value(type_name, value, fragment):
    with pytest.raises(CoercionError) as info:
        coerce_value("plan_rank", value, type_name)
    message = str(info.value)
    assert "'plan_rank'" in message
    assert fragment in message
    if type_name != "Money":
        assert repr(value)[:20] in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "Boolean"),
        (3, "Integer"),
        (2.5, "Decimal"),
        ("2024-01-01T00:00:00Z", "Timestamp"),
        ("vip", "String"),
        ("2024", "String"),
    ],
)
def test_infer_type(value, expected):
    assert infer_type("k", value) == expected


def test_coerce_attribute_checks_key_and_uses_declared_type():
    assert coerce_attribute("seats", "12", "Integer") == (12, "Integer")
    assert coerce_attribute("seats", "12") == ("12", "String")
    with pytest.raises(CoercionError, match="invalid key"):
        coerce_attribute("bad key!", 1)
    with pytest.raises(CoercionError, match="scalar"):
        coerce_attribute("tags", [1, 2])
