"""Pure pieces of the client: statuses, user agent, constructor and argument validation, repr — no network."""

from __future__ import annotations

import pytest

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.chartmogul.transport import USER_AGENT, make_session
from cm_pipeline.chartmogul.vocabulary import (
    CUSTOM_ATTRIBUTE_TYPES,
    STATUS_FILTERS,
    filter_to_status,
    status_to_filter,
)


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


def test_the_environments_proxy_settings_are_read_once_for_the_base_url(monkeypatch):
    """HTTPS_PROXY and NO_PROXY still apply, resolved when the session is made, not on every call."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = make_session("k", 2, "https://api.chartmogul.com/v1")
    assert session.proxies == {"https": "http://proxy.internal:3128"} and not session.trust_env
    monkeypatch.setenv("NO_PROXY", "api.chartmogul.com")
    assert make_session("k", 2, "https://api.chartmogul.com/v1").proxies == {}
