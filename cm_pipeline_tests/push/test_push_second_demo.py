"""The second `make demo` (issue 12): the sandbox is seeded again (same customers, attribute definitions
reset, the pushed leads gone) while the warehouse keeps its data. The refresh marks the leads deleted,
but their rows still hold the keys the first demo created: the old pusher counted those keys as
existing, PATCHed, met 422 "custom attribute does not exist" for nearly every row, and remembered the
rejections for good. Now keys come from live customers only, and the pushes converge in one run."""

from __future__ import annotations

import sqlalchemy as sa

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.extract.options import ExtractOptions
from cm_pipeline.extract.run import run_extraction
from cm_pipeline.push.kinds import BY_EMAIL, CREATES, UPDATES
from cm_pipeline.push.run import push
from cm_pipeline.sandbox import SandboxServer
from cm_pipeline.sandbox.seed import DOCS_DATA_SOURCE
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.extract.conftest import ListLog
from cm_pipeline_tests.push.conftest import BY_EMAIL_DDL, CREATES_DDL, make_relation, make_updates

CUSTOMERS, SEED = 24, 5
OPTIONS = ExtractOptions(per_page=10, progress_interval=0.5)


def _demo_relations(engine, customers: list[dict]) -> None:
    """What the example rules produce: a score on every customer, a tier by email, three NPS leads."""
    make_updates(
        engine,
        [
            {"customer_uuid": c["uuid"], "add_tags": ["scored"], "custom_attributes": {"nps_score": i},
             "attribute_types": {"nps_score": "Integer"}}
            for i, c in enumerate(customers)
        ],
    )  # fmt: skip
    make_relation(
        engine,
        "reverse_etl.chartmogul_by_email",
        BY_EMAIL_DDL,
        [{"email": c["email"], "key": "plan_tier", "type": "String", "value": "gold"} for c in customers[:3]],
    )
    make_relation(
        engine,
        "reverse_etl.chartmogul_creates",
        CREATES_DDL,
        [
            {"data_source_uuid": DOCS_DATA_SOURCE, "external_id": f"nps_lead_{i}", "name": f"Lead {i}",
             "email": f"lead{i}@example.com", "custom": [{"type": "Integer", "key": "nps_score", "value": 9}]}
            for i in range(3)
        ],
    )  # fmt: skip


def _demo(engine) -> tuple[int, dict, dict]:
    """One `make demo`: a sandbox seeded afresh, a refresh, then the three pushes in the sensor's order
    (updates, by_email, creates), twice: (rows the refresh marked deleted, first pushes, second
    pushes), each {kind: (result, writes sent)}."""
    with (
        SandboxServer(customers=CUSTOMERS, seed=SEED, api_key=TEST_API_KEY) as srv,
        ChartMogulClient(TEST_API_KEY, srv.base_url, max_requests_per_second=500) as client,
    ):
        refresh = run_extraction(client, engine, OPTIONS, ListLog())
        _demo_relations(engine, srv.control.customers())
        rounds = []
        for n in (1, 2):
            done = {}
            for kind in (UPDATES, BY_EMAIL, CREATES):
                srv.control.reset_stats()
                result = push(engine, client, f"{kind}-{n}-{srv.port}", kind)
                routes = srv.control.stats()["by_route"]
                done[kind] = (result, sum(v for r, v in routes.items() if r.startswith(("PATCH", "POST"))))
            rounds.append(done)
        _assert_chartmogul_holds_everything(engine, srv.control)
    return refresh.publish.deleted, rounds[0], rounds[1]


def _assert_chartmogul_holds_everything(engine, ctl) -> None:
    with engine.connect() as conn:
        wanted = conn.execute(
            sa.text(
                "SELECT customer_uuid, custom_attributes->>'nps_score' FROM reverse_etl.chartmogul_updates"
            )
        ).all()
    for uuid, score in wanted:
        attrs = ctl.customer(uuid)["attributes"]
        assert attrs["custom"]["nps_score"] == int(score) and "scored" in attrs["tags"], uuid
    leads = sorted(c["external_id"] for c in ctl.customers() if c["external_id"].startswith("nps_lead_"))
    assert leads == ["nps_lead_0", "nps_lead_1", "nps_lead_2"]


def test_a_second_demo_on_a_kept_warehouse_converges_in_one_push_run(fresh_db):
    engine = sa.create_engine(fresh_db)
    try:
        _, first, _ = _demo(engine)
        assert first[UPDATES][0]["applied"] >= CUSTOMERS and first[CREATES][0]["applied"] == 3
        deleted, again, settled = _demo(engine)  # seeded again: same customers, definitions reset
        assert deleted == 3  # the first demo's leads: their rows still hold nps_score, and count for nothing
        for kind, (result, _) in again.items():
            assert result["rejected"] == result["failed"] == result["pending"] == 0, (kind, result)
        assert again[UPDATES][0]["applied"] >= CUSTOMERS and again[CREATES][0]["applied"] == 3
        for kind, (result, writes) in settled.items():  # the next push finds nothing left to do
            assert writes == 0 and result["rejected"] == result["failed"] == 0, (kind, result)
    finally:
        engine.dispose()
