"""Fixtures and helpers for the warehouse tests: a database of its own per test, hand-made passes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cm_pipeline.resources import WarehouseResource
from cm_pipeline.warehouse.passes import open_pass
from cm_pipeline.warehouse.publish import publish
from cm_pipeline.warehouse.schema import ensure_schema
from cm_pipeline.warehouse.staging import StagingWriter
from cm_pipeline_tests.reference_examples import LIST_EXAMPLE, RETRIEVE_EXAMPLE, TRICKY_STRINGS

PARTS = ["Active", "Cancelled"]


@pytest.fixture
def warehouse_for():
    """A WarehouseResource on the database of an engine (for running asset checks directly)."""
    return lambda engine: WarehouseResource(url=engine.url.render_as_string(hide_password=False))


@pytest.fixture
def db(fresh_db):
    eng = sa.create_engine(fresh_db, future=True)
    ensure_schema(eng)
    yield eng
    eng.dispose()


def customer(uuid: str, **fields) -> dict:
    return {**LIST_EXAMPLE, "uuid": uuid, "id": abs(hash(uuid)) % 10**6, **fields}


def load(engine, pages_by_partition: dict[str, list[list[dict]]], checks=(), compare_all=False, **open_kw):
    """Run one pass over hand-made pages and publish it."""
    p = open_pass(engine, filters={}, plan=list(pages_by_partition), per_page=200, **open_kw)
    for partition, pages in pages_by_partition.items():
        with StagingWriter(engine, p.pass_id, partition) as w:
            for i, page in enumerate(pages):
                more = i < len(pages) - 1
                w.write_page(page, f"{partition}-c{i + 1}" if more else None, more)
    return p, publish(engine, p.pass_id, checks, compare_all=compare_all)


def table(engine) -> dict[str, dict]:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT *, xmin::text AS _xmin FROM chartmogul.customers")).mappings().all()
    return {r["uuid"]: dict(r) for r in rows}


def mapping_corpus() -> list[dict]:
    """Entries that exercise every mapping rule: the pages' examples, seeded data, odd and bad values."""
    from cm_pipeline.sandbox.seed import generate

    corpus = [dict(LIST_EXAMPLE), {**RETRIEVE_EXAMPLE, "uuid": "cus_retrieve"}, {"uuid": "cus_bare"}]
    corpus += [{**d, "uuid": f"cus_seed_{i}"} for i, d in enumerate(generate(150, 5))]
    for i, s in enumerate(TRICKY_STRINGS):
        corpus.append(customer(f"cus_tricky_{i}", name=s, attributes={"tags": [s], "custom": {s or "k": s}}))
    bad = [
        {"mrr": "lots"}, {"mrr": 10.5}, {"arr": True}, {"id": 2**70}, {"mrr": "36000"}, {"mrr": 4100.0},
        {"customer-since": "yesterday"}, {"lead_created_at": 1234}, {"name": {"first": "x"}}, {"zip": 12345},
        {"name": 1.5}, {"company": True}, {"external_ids": "34916129"}, {"address": ["x"]},
        {"attributes": {"tags": "vip"}}, {"attributes": ["x"]}, {"attributes": {"custom": ["x"]}},
        {"customer_since": "2024-01-01T00:00:00Z", "billing_system_type": "Custom", "currency_sign": "€"},
        {"name": "a\x00b", "attributes": {"tags": ["x\ud800y"], "custom": {"k\x00": "v"}}},
        {"brand_new_field": {"nested": [1, 2]}, "owner": "Gabi", "website_url": "https://x.example"},
    ]  # fmt: skip
    corpus += [{**LIST_EXAMPLE, **b, "uuid": f"cus_bad_{i}"} for i, b in enumerate(bad)]
    return corpus


def hashes(engine) -> dict[str, str]:
    with engine.connect() as c:
        return dict(c.execute(sa.text("SELECT uuid, raw_md5 FROM cm_pipeline.customer_versions")).all())


def edit_as_cm_pipeline(engine, update_sql: str) -> None:
    """Run an UPDATE of chartmogul.customers and record the new row versions as cm_pipeline's own writes
    (what an older mapping would have left): the table is edited, the versions do not see a drift."""
    with engine.begin() as c:
        c.execute(sa.text(update_sql))
        c.execute(
            sa.text(
                "UPDATE cm_pipeline.customer_versions v SET row_xmin = c.xmin FROM chartmogul.customers c"
                " WHERE c.uuid = v.uuid"
            )
        )
