"""Writes whose answer is lost, and an API that does not answer at all, over real sockets.

A PATCH retried after a lost answer reads the customer first and is not sent again when it landed; a
create that met its own earlier attempt says so; a client armed with `fail_fast` stops with one
UnreachableError once attempts in a row got no answer, and sends nothing more.
"""

from __future__ import annotations

import time

import pytest

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.chartmogul.errors import (
    RateLimitError,
    ServerError,
    TransportError,
    UnreachableError,
    may_have_landed,
)
from cm_pipeline_tests.chartmogul.conftest import a_customer, api_requests, custom_ds
from cm_pipeline_tests.conftest import TEST_API_KEY


def _patches(ctl, uuid: str) -> list[dict]:
    return [r for r in api_requests(ctl) if r["method"] == "PATCH" and r["path"].endswith(uuid)]


@pytest.mark.parametrize("kind", ["500", "drop"])
def test_patch_whose_answer_is_lost_after_landing_is_not_sent_again(make_client, ctl, kind):
    customer = a_customer(ctl)
    body = {"attributes": {"tags": ["lost-answer", "ü-tag"], "custom": {}}}
    ctl.configure(fault_rate=1.0, fault_phase="after", fault_methods=["PATCH"], fault_kinds=[kind])
    answer = make_client().update_customer(customer["uuid"], body)
    assert sorted(answer["attributes"]["tags"]) == ["lost-answer", "ü-tag"]  # what the re-read found
    assert len(_patches(ctl, customer["uuid"])) == 1  # landed once, never resent
    gets = [r for r in api_requests(ctl) if r["method"] == "GET"]
    assert len(gets) == 1 and gets[0]["path"].endswith(customer["uuid"])


def test_patch_refused_before_landing_is_read_then_sent_again(make_client, ctl):
    customer = a_customer(ctl)
    body = {"attributes": {"tags": ["second-try"], "custom": {}}}
    ctl.configure(fault_rate=1.0, fault_phase="before", fault_methods=["PATCH"], fault_kinds=["503"])
    with pytest.raises(ServerError) as info:
        make_client(max_attempts=3).update_customer(customer["uuid"], body)
    assert info.value.after_lost_answer  # an earlier attempt's answer was a 503: it may have landed
    assert len(_patches(ctl, customer["uuid"])) == 3
    assert len([r for r in api_requests(ctl) if r["method"] == "GET"]) == 2  # one read before each retry


def test_a_rate_limited_patch_is_resent_without_a_read(make_client, ctl):
    customer = a_customer(ctl)
    ctl.configure(rate_limit_rps=1, retry_after=None)
    client = make_client(max_attempts=2, backoff_base=0.01, backoff_max=0.02)
    client.retrieve_customer(customer["uuid"])  # uses this second's one request
    with pytest.raises(RateLimitError) as info:
        client.update_customer(customer["uuid"], {"attributes": {"tags": ["x"], "custom": {}}})
    assert not info.value.after_lost_answer and not may_have_landed(info.value)
    assert [r["method"] for r in api_requests(ctl)] == ["GET", "PATCH", "PATCH"]


def test_a_create_that_met_its_own_lost_attempt_says_so(make_client, ctl):
    ctl.configure(
        fault_rate=0.5, fault_phase="after", fault_methods=["POST"], fault_kinds=["502"], fault_seed=4
    )
    client, ds = make_client(), custom_ds(ctl)
    results = [client.create_customer({"data_source_uuid": ds, "external_id": f"lost-{i}"}) for i in range(6)]
    met_itself = [r for r in results if not r.created]
    assert met_itself and all(r.after_lost_answer and r.status == 422 for r in met_itself)
    assert not any(r.after_lost_answer for r in results if r.created)
    externals = [c["external_id"] for c in ctl.customers() if c["external_id"].startswith("lost-")]
    assert sorted(externals) == [f"lost-{i}" for i in range(6)]


def _dead_client(port: int, **kw) -> ChartMogulClient:
    return ChartMogulClient(
        TEST_API_KEY, f"http://127.0.0.1:{port}/v1", backoff_base=0.05, backoff_max=0.2, **kw
    )


def test_a_refused_connection_never_reached_the_api(closed_port):
    with _dead_client(closed_port, max_attempts=2) as client, pytest.raises(TransportError) as info:
        client.retrieve_customer("cus_1")
    assert not isinstance(info.value, UnreachableError)  # not armed: the old behaviour
    assert info.value.kind == "connection" and not info.value.reached and not may_have_landed(info.value)


def test_fail_fast_stops_every_call_once_the_api_is_unreachable(closed_port):
    with _dead_client(closed_port, max_attempts=50, max_retry_seconds=60) as client:
        client.fail_fast(failures=4, seconds=0.3)
        t0 = time.monotonic()
        with pytest.raises(UnreachableError) as info:
            client.retrieve_customer("cus_1")
        assert time.monotonic() - t0 < 5  # not 50 attempts
        assert "ChartMogul is unreachable" in str(info.value) and "attempts in a row" in str(info.value)
        sent = client.stats["requests"]
        with pytest.raises(UnreachableError):
            client.update_customer("cus_2", {"attributes": {"tags": [], "custom": {}}})
        assert client.stats["requests"] == sent  # nothing more was sent


def test_a_call_using_up_its_retries_without_answer_trips_at_once(closed_port):
    with _dead_client(closed_port, max_attempts=3) as client:
        client.fail_fast(failures=3, seconds=3600)
        with pytest.raises(UnreachableError) as info:
            client.retrieve_customer("cus_1")
        assert client.reachability.tripped and "3 attempts in a row" in str(info.value)
        assert client.reachability.streak == 3


def test_any_answer_ends_the_no_answer_streak(make_client, ctl):
    client = make_client(max_attempts=2)
    client.fail_fast(failures=2, seconds=0)
    ctl.configure(fault_rate=1.0, fault_kinds=["drop"])
    with pytest.raises(UnreachableError):
        client.list_customers_page(per_page=1)
    healthy = make_client()
    healthy.fail_fast(failures=3, seconds=0)
    ctl.configure(fault_rate=0.5, fault_kinds=["drop"], fault_seed=2)
    for _ in range(6):
        healthy.list_customers_page(per_page=1)  # answers in between: never judged unreachable
    assert not healthy.reachability.tripped
