"""Only a 404 deletes: a 500 or a timeout while verifying an unseen customer leaves its row untouched.

The extraction phases run one by one (the same code the asset runs), so the sandbox can turn hostile
exactly between the walk and the verification.
"""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from cm_pipeline.chartmogul import ChartMogulClient
from cm_pipeline.warehouse.extraction import Extraction, ExtractOptions, run_extraction
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.extract.conftest import exact_table, query

LOG = logging.getLogger("test.extract")


@pytest.mark.parametrize("answer", ["500", "timeout", "404"])
def test_only_a_404_marks_an_unseen_customer_deleted(sandbox, fresh_db, answer):
    engine = sa.create_engine(fresh_db)
    options = ExtractOptions(per_page=50, progress_interval=0.5)
    client = ChartMogulClient(
        TEST_API_KEY,
        base_url=sandbox.base_url,
        max_requests_per_second=500,
        read_timeout=0.3,
        max_retry_seconds=1.0,
    )
    try:
        run_extraction(client, engine, options, LOG)
        ctl = sandbox.control
        gone = ctl.customers()[3]["uuid"]
        ctl.delete_customer(gone)  # the next pass cannot see it
        before = exact_table(fresh_db)

        run = Extraction(client, engine, options, LOG)
        run.open()
        run.walk()
        if answer == "500":
            ctl.configure(fault_rate=1.0, fault_kinds=["500"])
        elif answer == "timeout":
            ctl.configure(latency_ms=1500)
        checks = run.verify()
        ctl.configure(fault_rate=0.0, latency_ms=0)
        result = run.publish()
    finally:
        client.close()
        engine.dispose()

    [check] = checks
    assert check.uuid == gone
    after = {r[0]: r for r in exact_table(fresh_db)}
    if answer == "404":
        assert (check.outcome, check.http_status, result.publish.deleted) == ("deleted", 404, 1)
        assert after[gone][-3] is not None  # deleted_at: the last table column, before xmin and ctid
    else:
        assert check.outcome == "error" and result.publish.deleted == 0 and result.verification_errors == 1
        assert after[gone] == {r[0]: r for r in before}[gone]  # the row is untouched, physically
        assert exact_table(fresh_db) == before
        outcome = query(
            fresh_db, "SELECT outcome, message FROM chartmogul.deletion_checks WHERE uuid = :u", u=gone
        )
        assert outcome[0][0] == "error" and outcome[0][1]
