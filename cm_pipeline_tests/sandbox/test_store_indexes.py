"""The store's indexes stay true under random writes: every filtered walk and first-page count equals a
brute-force filter of all customers (merged customers, moves between data sources and statuses, deletes)."""

from __future__ import annotations

import random

import pytest

from cm_pipeline.chartmogul.vocabulary import STATUSES
from cm_pipeline.sandbox.admin import admin_insert, admin_merge, admin_modify
from cm_pipeline.sandbox.paging import Filters, decode_cursor
from cm_pipeline.sandbox.store import Store


def _walk(store: Store, filters: Filters, per_page: int) -> tuple[list[str], int | None]:
    page = store.page(filters, per_page, None)
    uuids, total = [], page.total
    while True:
        uuids += [e.split(b'"uuid":"', 1)[1].split(b'"', 1)[0].decode() for e in page.entries]
        if not page.has_more:
            return uuids, total
        page = store.page(filters, per_page, decode_cursor(page.cursor)[0], count=False)


def _expected(docs: list[dict], f: Filters) -> list[str]:
    return [
        d["uuid"]
        for d in docs
        if (f.data_source_uuid is None or f.data_source_uuid in d["data_source_uuids"])
        and (f.external_id is None or f.external_id in d["external_ids"])
        and (f.status is None or d["status"] == f.status)
        and (f.system is None or d["billing-system-type"] == f.system)
        and (f.email is None or d["email"].lower() == f.email)
    ]


def _random_writes(store: Store, rng: random.Random, n: int) -> None:
    sources = list(store.data_sources.values())
    for i in range(n):
        uuids = [d["uuid"] for d in store.all()]
        roll = rng.random()
        if roll < 0.35:
            ds, other = rng.sample(sources, 2)
            fields = {"data_source_uuid": ds["uuid"], "billing_system_type": ds["system"], "external_id": f"r{i}",
                      "status": rng.choice(STATUSES), "email": rng.choice(["A@x.io", "a@X.io", f"u{i}@x.io"])}  # fmt: skip
            if rng.random() < 0.3:
                fields |= {
                    "data_source_uuids": [ds["uuid"], other["uuid"]],
                    "external_ids": [f"r{i}", f"s{i}"],
                }
            admin_insert(store, fields)
        elif roll < 0.6:
            ds = rng.choice(sources)
            admin_modify(store, rng.choice(uuids), {"status": rng.choice(STATUSES), "data_source_uuid": ds["uuid"],
                                                    "data_source_uuids": [ds["uuid"]], "email": "a@x.io"})  # fmt: skip
        elif roll < 0.8:
            store.delete(rng.choice(uuids))
        else:
            a, b = rng.sample(uuids, 2)
            admin_merge(store, a, b)


@pytest.mark.parametrize("account", ["uniform", "realistic"])
def test_filtered_walks_and_counts_match_a_brute_force_filter(account):
    rng = random.Random(account)
    store = Store(250, 3, account=account)
    _random_writes(store, rng, 150)
    docs = store.all()
    cases = [Filters()]
    cases += [Filters(data_source_uuid=ds) for ds in store.data_sources]
    cases += [Filters(status=s) for s in STATUSES]
    cases += [Filters(system=s) for s in {d["system"] for d in store.data_sources.values()}]
    cases += [Filters(data_source_uuid=d["data_source_uuids"][-1], status=d["status"]) for d in docs[::40]]
    cases += [Filters(external_id=d["external_ids"][-1]) for d in docs[::50]]
    cases += [Filters(email="a@x.io"), Filters(system="Stripe", status="Active")]
    for filters in cases:
        expected = _expected(docs, filters)
        for per_page in (5, 200):
            uuids, total = _walk(store, filters, per_page)
            assert uuids == expected, (filters, per_page)
            assert total == len(expected), filters
