"""The client's cursor walker against a sandbox that breaks paging (its pagination_fault knob), over real
sockets: every fault ends in PaginationError after a bounded number of requests, never in a loop."""

from __future__ import annotations

from collections import Counter

import pytest

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.chartmogul.errors import PaginationError
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline_tests.conftest import TEST_API_KEY

LIST_ROUTE = "GET /v1/customers"


@pytest.fixture(scope="module")
def server():
    with SandboxServer(customers=30, seed=11, api_key=TEST_API_KEY) as srv:
        yield srv


@pytest.fixture
def ctl(server):
    control = server.control
    control.configure(pagination_fault=None)
    control.reset_stats()
    yield control
    control.configure(pagination_fault=None)


@pytest.fixture
def client(server):
    c = ChartMogulClient(
        TEST_API_KEY,
        server.base_url,
        max_requests_per_second=500,
        connect_timeout=2.0,
        read_timeout=3.0,
        max_retry_seconds=2.0,
        backoff_base=0.01,
        backoff_max=0.05,
    )
    yield c
    c.close()


def list_requests(ctl) -> int:
    return ctl.stats()["by_route"].get(LIST_ROUTE, 0)


def walk_until_error(pages) -> tuple[list, PaginationError]:
    """Consume a page iterator that must fail; returns the pages it yielded first and the error."""
    yielded = []
    with pytest.raises(PaginationError) as info:
        for page in pages:
            yielded.append(page)
    return yielded, info.value


def assert_loud_and_clean(err: PaginationError) -> None:
    text = f"{err}\n{err!r}"
    assert "cursor" in str(err), str(err)
    assert TEST_API_KEY not in text


@pytest.mark.timeout(10)
def test_a_healthy_walk_ends_without_error(client, ctl):
    pages = list(client.list_customers(per_page=10))
    assert [len(p.entries) for p in pages] == [10, 10, 10] and pages[-1].has_more is False
    assert list_requests(ctl) == 3


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("fault", "pages_yielded", "requests_made"),
    [
        # page 2 answers has_more with the cursor it was sent
        ("repeat_cursor", 1, 2),
        # page 2 answers has_more true and cursor null
        ("has_more_without_cursor", 1, 2),
        # page 2 is fine, page 3 hands back page 1's cursor: a two-page cycle
        ("rewind_cursor", 2, 3),
    ],
)
def test_each_fault_fails_loudly_and_never_loops(client, ctl, fault, pages_yielded, requests_made):
    ctl.configure(pagination_fault=fault)
    yielded, err = walk_until_error(client.list_customers(per_page=10))
    assert_loud_and_clean(err)
    # the pages before the fault were delivered (a caller may have checkpointed them) and no more
    assert [p.number for p in yielded] == list(range(1, pages_yielded + 1))
    assert all(len(p.entries) == 10 for p in yielded)
    # the walker stopped at the faulty page: one request per page, no retry of a 200, no further fetch
    assert list_requests(ctl) == requests_made
    assert Counter(r["fault"] for r in ctl.requests() if r["path"] == "/v1/customers")[fault] == 1


@pytest.mark.timeout(10)
@pytest.mark.parametrize("fault", ["repeat_cursor", "has_more_without_cursor"])
def test_a_walk_resumed_from_a_checkpoint_fails_on_its_first_page(client, ctl, fault):
    checkpoint = client.list_customers_page(per_page=10).cursor
    assert checkpoint
    ctl.configure(pagination_fault=fault)
    ctl.reset_stats()
    yielded, err = walk_until_error(client.list_customers(per_page=10, cursor=checkpoint))
    assert yielded == [] and list_requests(ctl) == 1
    assert_loud_and_clean(err)


@pytest.mark.timeout(10)
def test_a_filtered_walk_detects_the_cycle_too(client, ctl, server):
    statuses = Counter(c["status"] for c in server.control.customers())
    status, count = statuses.most_common(1)[0]
    assert count >= 5, statuses
    ctl.configure(pagination_fault="rewind_cursor")
    yielded, err = walk_until_error(client.list_customers(status=status, per_page=2))
    assert_loud_and_clean(err)
    assert len(yielded) == 2 and list_requests(ctl) == 3
    assert {e["status"] for p in yielded for e in p.entries} == {status}


@pytest.mark.timeout(10)
def test_a_one_page_walk_never_sees_the_fault(client, ctl):
    """Faults hit continuation pages only: find_customers' single-page external_id look-up is unaffected."""
    someone = ctl.customers()[5]
    ctl.configure(pagination_fault="repeat_cursor")
    found = client.find_customers(external_id=someone["external_id"])
    assert [c["uuid"] for c in found] == [someone["uuid"]]
    assert list_requests(ctl) == 1
