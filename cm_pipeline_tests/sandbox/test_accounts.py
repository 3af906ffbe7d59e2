"""Account shapes: uniform stays byte for byte what it was; realistic is skewed like real accounts, with
merged customers and ChartMogul's system tags, reproducible for a seed."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from cm_pipeline.sandbox import SandboxServer
from cm_pipeline.sandbox.seed import (
    AUTO_CHURNED_TAG,
    DOCS_DATA_SOURCE,
    MERGED_TAG,
    REALISTIC_DATA_SOURCES,
    generate,
)
from cm_pipeline.sandbox.store import Store

N = 10_000
STRIPE = REALISTIC_DATA_SOURCES[0][0]


@pytest.fixture(scope="module")
def docs():
    return list(generate(N, seed=4, account="realistic"))


def test_uniform_account_is_byte_for_byte_what_it_was():
    """Hashes taken from the sandbox before account shapes existed (commit 6623aef): other tests and the
    demo's warehouse rely on exactly these customers and the uuids that follow them."""
    drawn = json.dumps(list(generate(3000, 5)), sort_keys=True, ensure_ascii=False).encode()
    assert hashlib.sha256(drawn).hexdigest() == (
        "daaf6b234c075396f140d994350f5b3685507d9af80fb85784b09d19f2889211"
    )
    store = Store(300, 7)
    served = b"".join(store.get_bytes(d["uuid"]) for d in store.all())
    assert hashlib.sha256(served).hexdigest() == (
        "5e77533a5a60890fb79c5f7c6379ffb29bea5b321f1c0357ccb4b29dbc93968c"
    )
    assert store.new_uuid() == "cus_afb950a4-195a-4c66-bc34-28b205e5efe2"
    assert Store(300, 7, account="uniform").all() == Store(300, 7).all()


def test_realistic_statuses_and_data_sources_are_skewed(docs):
    statuses = Counter(d["status"] for d in docs)
    assert 0.42 < statuses["Cancelled"] / N < 0.48 and 0.32 < statuses["Active"] / N < 0.38
    assert all(statuses[s] > 0 for s in ("Past Due", "New Lead", "Working Lead", "Qualified Lead",
                                         "Unqualified Lead"))  # fmt: skip
    sources = Counter(d["data_source_uuid"] for d in docs)
    assert 0.67 < sources[STRIPE] / N < 0.73, "one dominant Stripe source"
    assert sources[DOCS_DATA_SOURCE] > 0, "a Custom source (the API creates there)"
    systems = {uuid: system for uuid, _, system in REALISTIC_DATA_SOURCES}
    assert {systems[ds] for ds in sources} == {"Stripe", "Recurly", "Chargebee", "Braintree", "Custom"}
    assert all(n < 0.15 * N for ds, n in sources.items() if ds != STRIPE), "the others are small"


def test_realistic_merged_customers_and_system_tags(docs):
    merged = [d for d in docs if len(d["data_source_uuids"]) > 1]
    assert 0.01 * N < len(merged) < 0.03 * N
    for d in merged:
        assert len(d["data_source_uuids"]) == len(d["external_ids"]) == 2
        assert d["data_source_uuids"][0] == d["data_source_uuid"] != d["data_source_uuids"][1]
        assert d["external_ids"][0] == d["external_id"]
        assert MERGED_TAG in d["attributes"]["tags"]
    assert all(MERGED_TAG not in d["attributes"]["tags"] for d in docs if len(d["data_source_uuids"]) == 1)
    churned = [d for d in docs if AUTO_CHURNED_TAG in d["attributes"]["tags"]]
    cancelled = sum(d["status"] == "Cancelled" for d in docs)
    assert churned and all(d["status"] == "Cancelled" for d in churned)
    assert 0.1 * cancelled < len(churned) < 0.2 * cancelled
    assert len({(ds, ext) for d in docs for ds, ext in zip(d["data_source_uuids"], d["external_ids"],
                                                            strict=True)}) == N + len(merged)  # fmt: skip


def test_realistic_is_reproducible_for_a_seed(docs):
    assert list(generate(N, seed=4, account="realistic")) == docs
    assert [d["uuid"] for d in generate(50, seed=5, account="realistic")] != [d["uuid"] for d in docs[:50]]
    assert Store(200, 4, account="realistic").all() == Store(200, 4, account="realistic").all()


def test_unknown_account_is_refused():
    with pytest.raises(ValueError, match="account must be one of uniform, realistic, got 'huge'"):
        SandboxServer(customers=1, account="huge")
    with pytest.raises(ValueError, match="account"):
        list(generate(1, 1, account="huge"))
