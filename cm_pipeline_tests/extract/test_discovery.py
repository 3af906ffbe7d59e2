"""A first load's split plan, discovered from the API: exact counts per status and per data source."""

from __future__ import annotations

from collections import Counter

import pytest

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.chartmogul.vocabulary import STATUS_FILTERS, status_to_filter
from cm_pipeline.extract.discovery import discover_sizes
from cm_pipeline.extract.plan import plan_partitions
from cm_pipeline.sandbox import SandboxServer


@pytest.fixture(scope="module")
def srv():
    with SandboxServer(customers=1500, seed=5) as server:
        yield server


def client_for(srv) -> ChartMogulClient:
    return ChartMogulClient("k", base_url=srv.base_url, max_requests_per_second=1000)


def sandbox_counts(srv) -> tuple[Counter, Counter]:
    """(customers per status filter, customers per (status filter, data source)) as the sandbox holds them."""
    by_status, by_pair = Counter(), Counter()
    for c in srv.control.customers():
        status = status_to_filter(c["status"])
        by_status[status] += 1
        for ds in {c["data_source_uuid"], *(c.get("data_source_uuids") or [])}:
            by_pair[status, ds] += 1
    return by_status, by_pair


def test_large_statuses_are_split_with_the_apis_exact_counts(srv):
    notes: list[str] = []
    with client_for(srv) as client:
        sizes = discover_sizes(client, list(STATUS_FILTERS), 0.1, note=notes.append)
        requests = client.stats["requests"]
    by_status, by_pair = sandbox_counts(srv)
    split = {s for s, by_ds in sizes.items() if len(by_ds) >= 2}
    assert "Active" in split  # the seed's largest status, over seven data sources
    for status in STATUS_FILTERS:
        if status in split:
            assert sizes[status] == {ds: n for (s, ds), n in by_pair.items() if s == status}
            assert sum(sizes[status].values()) >= by_status[status]
        else:  # unsplit: its first page's size (exact up to one page, else total_pages x 200)
            [size] = sizes[status].values()
            n = by_status[status]
            assert size == n if n <= 200 else (size % 200 == 0 and n <= size < n + 200)
    # 7 counts, one sample per large status, one count per (large status, data source): a few dozen at most
    assert requests <= 7 + len(split) * (1 + 7)
    assert any("split" in n and n.startswith("Active") for n in notes)
    plan = plan_partitions(list(STATUS_FILTERS), sizes, 0.1)
    assert "Active" in plan.split and all(
        not name.startswith("Active@") or name[7:] for name in plan.partitions
    )


def test_a_status_whose_sample_misses_a_data_source_is_not_split(srv):
    """A data source absent from the sample page: the counts fall short, so the status stays one cursor."""
    ctl = srv.control
    hidden = "ds_hidden-0000-4000-8000-000000000001"
    for i in range(3):
        ctl.insert_customer(status="Active", data_source_uuid=hidden, external_id=f"hidden_{i}")
    notes: list[str] = []
    with client_for(srv) as client:
        sizes = discover_sizes(client, list(STATUS_FILTERS), 0.1, note=notes.append)
    by_status, _ = sandbox_counts(srv)
    # The sandbox lists customers in creation order, so the three new ones are not on the sample page.
    assert hidden not in sizes["Active"]
    assert sizes["Active"] == {"": by_status["Active"]}
    assert any(n.startswith("Active") and "not split (another data source exists)" in n for n in notes)
