"""The plan from GET /v1/data_sources on a realistic account, over real sockets: complete by construction,
no second walk whether the deprecated paging fields are there or not, merged customers published once,
and a walk by status alone (warned) when the data sources call fails."""

from __future__ import annotations

import logging
import math
from collections import Counter

import sqlalchemy as sa

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.chartmogul.vocabulary import status_to_filter
from cm_pipeline.extract.options import ExtractOptions
from cm_pipeline.extract.run import run_extraction
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline_tests.extract.conftest import (
    Gateway,
    ListLog,
    json_answer,
    materialization_metadata,
    query,
    refresh,
    snapshot,
)

LOG = logging.getLogger("test.extract.data_sources")
PER_PAGE = 20


def realistic(legacy: bool = False) -> SandboxServer:
    return SandboxServer(customers=500, seed=31, account="realistic", legacy_page_fields=legacy)


def run(base_url: str, db_url: str, log=LOG, **options):
    engine = sa.create_engine(db_url)
    client = ChartMogulClient("k", base_url=base_url, max_requests_per_second=1000, max_retry_seconds=2.0)
    try:
        return run_extraction(
            client, engine, ExtractOptions(per_page=PER_PAGE, progress_interval=0.5, **options), log
        )
    finally:
        client.close()
        engine.dispose()


def listings(customers: list[dict]) -> tuple[Counter, Counter]:
    """(customers per status filter, listings per (status filter, data source): a merged customer is
    listed under each of its data sources)."""
    by_status, by_pair = Counter(), Counter()
    for c in customers:
        status = status_to_filter(c["status"])
        by_status[status] += 1
        for ds in {c["data_source_uuid"], *c["data_source_uuids"]}:
            by_pair[status, ds] += 1
    return by_status, by_pair


def walk_figures(srv, db_url: str) -> tuple:
    """A first load and an unchanged refresh: their pages, list requests and plans."""
    ctl, figures = srv.control, []
    for _ in range(2):
        ctl.reset_stats()
        result = run(srv.base_url, db_url)
        lists = ctl.stats()["by_route"]["GET /v1/customers"]
        figures.append((result.pages, lists, sorted(result.partitions), result.plan["split_by_data_source"]))
        assert lists == result.pages  # every list request is a page of the plan: nothing walked twice
        assert ctl.stats()["by_route"]["GET /v1/data_sources"] == 1
    return figures, result


def test_the_plan_comes_from_the_data_sources_with_or_without_the_deprecated_fields(fresh_db, other_db):
    runs = {}
    for legacy, db in ((True, fresh_db), (False, other_db)):
        with realistic(legacy) as srv:
            figures, refreshed = walk_figures(srv, db)
            customers, sources = srv.control.customers(), [d["uuid"] for d in srv.control.data_sources()]
        runs[legacy] = figures
        by_status, by_pair = listings(customers)
        (first_pages, _, first_parts, first_split), (pages, _, parts, split) = figures
        big = {s for s, n in by_status.items() if n > PER_PAGE}
        assert set(first_split) == big  # a first load splits every status its first page cannot hold
        for status in big:  # ...over every data source the API lists, the never-imported one included
            assert {f"{status}@{ds}" for ds in sources} <= set(first_parts)
        assert len(sources) == 6 and any(by_pair[s, ds] == 0 for s in big for ds in sources)
        # A refresh splits only the statuses whose cursor would outlast the longest pair, no more.
        longest = max(by_pair.values())
        assert set(split) == {s for s, n in by_status.items() if n > longest} and split
        listed = sum(by_pair[s, ds] for s in split for ds in sources) + sum(
            by_status[s] for s in by_status if s not in split
        )
        assert pages <= math.ceil(listed / PER_PAGE) + len(parts)
        # A first load fetches each split status's first page twice (its sample, then its sub-partition):
        # still within one page per partition, the status partition it replaced included.
        first_listed = sum(by_pair[s, ds] for s in first_split for ds in sources) + sum(
            by_status[s] for s in by_status if s not in first_split
        )
        assert first_pages <= math.ceil(first_listed / PER_PAGE) + len(first_parts)
        assert refreshed.customers_fetched == listed  # each customer once, a merged one once per source
        assert refreshed.publish.unchanged == len(customers) and refreshed.publish.updated == 0
    assert runs[True] == runs[False]  # the deprecated fields change nothing
    assert snapshot(fresh_db) == snapshot(other_db)


def test_merged_customers_are_published_once_with_the_apis_record(fresh_db):
    with realistic() as srv:
        run(srv.base_url, fresh_db)
        ctl = srv.control
        merged = [c for c in ctl.customers() if len(c["data_source_uuids"]) == 2]
        assert merged
        ctl.modify_customer(merged[0]["uuid"], mrr=(merged[0]["mrr"] or 0) + 1)
        result = run(srv.base_url, fresh_db)
        api = {c["uuid"]: c for c in ctl.customers()}
    rows = query(fresh_db, "SELECT uuid, raw FROM chartmogul.customers")
    assert len(rows) == len({u for u, _ in rows}) == len(api)
    assert {u: raw for u, raw in rows} == api
    assert result.publish.updated == 1  # listed twice, written once
    assert result.customers_fetched > len(api)  # the merged ones were staged once per data source


def test_a_failed_data_sources_call_walks_by_status_and_says_so(fresh_db, other_db):
    with realistic() as srv:

        def answer(method, path, query):
            if path.startswith("/v1/data_sources"):
                return json_answer(404, {"error": "Not found"})
            return None

        with Gateway(srv.base_url, answer) as gateway:
            log = ListLog()
            first = run(gateway.base_url, fresh_db, log=log)
            assert (
                not any("@" in name for name in first.partitions) and first.plan["split_by_data_source"] == []
            )
            assert "NotFoundError" in first.plan["data_sources_failed"]
            [warned] = log.matching("GET /v1/data_sources failed")
            assert ("warning", warned) in log.lines and "walking by status alone" in warned
            again = refresh(gateway.base_url, fresh_db, per_page=PER_PAGE)
            meta = materialization_metadata(again)
        assert not any("@" in name for name in meta["partitions"])
        assert "walked by status alone" in meta["warning"] and meta["plan"]["data_sources_failed"]
        assert meta["unchanged"] == len(srv.control.customers())
        run(srv.base_url, other_db, split_large_partitions=False)
    assert snapshot(fresh_db) == snapshot(other_db)
