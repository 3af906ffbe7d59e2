"""Pure pieces of the client: backoff, Retry-After, statuses, argument validation — no network."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from cm_pipeline.chartmogul.client import (
    USER_AGENT,
    ChartMogulClient,
    attempt_timeout,
    backoff_delay,
    parse_retry_after,
    scrub,
    secret_forms,
)
from cm_pipeline.chartmogul.vocabulary import (
    CUSTOM_ATTRIBUTE_TYPES,
    STATUS_FILTERS,
    filter_to_status,
    status_to_filter,
)


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap():
    assert backoff_delay(1, 0.5, 30, 0.999999) == pytest.approx(0.5, rel=1e-5)
    assert backoff_delay(4, 0.5, 30, 0.999999) == pytest.approx(4.0, rel=1e-5)
    assert backoff_delay(20, 0.5, 30, 0.999999) == pytest.approx(30, rel=1e-5)
    assert backoff_delay(3, 0.5, 30, 0.0) == 0.0
    assert backoff_delay(3, 0.5, 30, 0.5) == pytest.approx(1.0)


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now=now) == 7.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now=now) == 0.0


def test_statuses_round_trip():
    assert STATUS_FILTERS == (
        "New_Lead",
        "Working_Lead",
        "Qualified_Lead",
        "Unqualified_Lead",
        "Active",
        "Past_Due",
        "Cancelled",
    )
    assert CUSTOM_ATTRIBUTE_TYPES == ("String", "Integer", "Decimal", "Timestamp", "Boolean")
    assert status_to_filter("Past Due") == "Past_Due"
    assert status_to_filter("past_due") == "Past_Due"
    assert filter_to_status("Past_Due") == "Past Due"
    assert filter_to_status("New_Lead") == "New Lead"
    for f in STATUS_FILTERS:
        assert status_to_filter(filter_to_status(f)) == f
    with pytest.raises(ValueError, match="status: 'Churned' is not one of"):
        status_to_filter("Churned")


def test_user_agent():
    assert USER_AGENT.startswith("cm_pipeline/") and len(USER_AGENT) > len("cm_pipeline/")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"api_key": ""}, "api_key"),
        ({"base_url": "ftp://x"}, "base_url"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_requests_per_second": 0}, "max_requests_per_second"),
        ({"max_retry_seconds": -1}, "max_retry_seconds"),
        ({"min_attempt_seconds": 0}, "min_attempt_seconds"),
    ],
)
def test_constructor_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ChartMogulClient(**{"api_key": "k", **kwargs})


def test_argument_validation_names_the_field():
    with ChartMogulClient("k", base_url="http://127.0.0.1:9/v1") as c:
        with pytest.raises(ValueError, match="per_page"):
            c.list_customers_page(per_page=201)
        with pytest.raises(ValueError, match="status"):
            c.list_customers_page(status="Gone")
        with pytest.raises(ValueError, match="uuid"):
            c.retrieve_customer("")
        with pytest.raises(ValueError, match=r"body\.external_id"):
            c.create_customer({"data_source_uuid": "ds_1"})
        with pytest.raises(ValueError, match=r"custom\[1\]\.type"):
            c.add_custom_attributes(
                "a@b.c",
                [{"type": "String", "key": "k", "value": "v"}, {"type": "Text", "key": "k", "value": 1}],
            )
        with pytest.raises(ValueError, match="email"):
            c.add_custom_attributes("", [{"type": "String", "key": "k", "value": "v"}])
        assert c.stats["requests"] == 0


def test_repr_hides_credentials():
    c = ChartMogulClient("sekrit-key", base_url="https://user:pw@api.example.com/v1")
    assert "sekrit" not in repr(c) and "pw" not in repr(c) and "api.example.com" in repr(c)


def test_secret_forms_cover_the_key_and_its_basic_auth_token():
    key = "sk/live+key 1"
    token = base64.b64encode(b"sk/live+key 1:").decode()
    forms = secret_forms(key)
    assert key in forms and token in forms and "sk%2Flive%2Bkey%201" in forms
    assert list(forms) == sorted(forms, key=len, reverse=True)


def test_scrub_reaches_nested_text_and_every_form():
    key = "test-key-7f3a9c"
    token = base64.b64encode(f"{key}:".encode()).decode()
    secrets = secret_forms(key)
    details = {
        key: [f"bad {key}"],
        "error_details": [{"param": key, "message": f"Authorization: Basic {token}"}],
        "n": 3,
    }
    clean = scrub(details, secrets)
    assert clean == {
        "***": ["bad ***"],
        "error_details": [{"param": "***", "message": "Authorization: Basic ***"}],
        "n": 3,
    }
    assert scrub(f"x{token.rstrip('=')}y", secrets) == "x***y"
    assert scrub("nothing secret", secrets) == "nothing secret"


def test_attempt_timeout_is_cut_to_the_budget_left_with_a_floor():
    assert attempt_timeout(5.0, 60.0, 300.0, 0.5) == (5.0, 60.0, 300.0)
    assert attempt_timeout(5.0, 60.0, 2.0, 0.5) == (2.0, 2.0, 2.0)
    assert attempt_timeout(0.2, 60.0, 2.0, 0.5) == (0.2, 2.0, 2.0)
    assert attempt_timeout(5.0, 60.0, -1.0, 0.5) == (0.5, 0.5, 0.5)
