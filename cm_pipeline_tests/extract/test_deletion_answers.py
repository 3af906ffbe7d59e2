"""Only the API's JSON 404 deletes: any other answer while verifying an unseen customer leaves its row untouched.

The extraction phases run one by one (the same code the asset runs), so the API can turn hostile exactly
between the walk and the verification. The sandbox gives 500, timeouts, 401 (a wrong key) and 429 (its
rate limit); it cannot answer 403, a 404 that is not its JSON, or another customer's record, so a
gateway in front of it (real sockets too) answers those for the one customer being verified.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests
import sqlalchemy as sa

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.extract.options import ExtractOptions
from cm_pipeline.extract.run import Extraction, run_extraction
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.extract.conftest import Gateway, ListLog, exact_table, json_answer, query

LOG = logging.getLogger("test.extract")

HTML_404 = b"<html><head><title>404 Not Found</title></head><body><center>nginx</center></body></html>"

# answer -> (HTTP status the deletion check records, how the gateway answers GET /customers/{gone}, or None)
ANSWERS = {
    "404": (404, None),
    "500": (500, None),
    "timeout": (None, None),
    "401": (401, None),
    "429 exhausted": (429, None),
    "403": (403, lambda other: json_answer(403, {"code": 403, "message": "Forbidden", "param": None})),
    "404 html": (404, lambda other: (404, HTML_404, "text/html")),
    "404 empty": (404, lambda other: (404, b"", "text/plain")),
    "404 plain text": (404, lambda other: (404, b"Not Found", "text/plain")),
    "200 another customer": (200, lambda other: (200, other, "application/json")),
}


def client_for(base_url: str, api_key: str = TEST_API_KEY) -> ChartMogulClient:
    return ChartMogulClient(
        api_key, base_url=base_url, max_requests_per_second=500, read_timeout=1.0, max_retry_seconds=1.0
    )


def turn_hostile(answer: str, sandbox, run: Extraction, wrong_key: ChartMogulClient) -> None:
    """Between the walk and the verification: make the sandbox (or the key) give `answer`."""
    ctl = sandbox.control
    if answer == "500":
        ctl.configure(fault_rate=1.0, fault_kinds=["500"])
    elif answer == "timeout":
        ctl.configure(latency_ms=4000)  # 4x the read timeout: a timeout even on a loaded machine
    elif answer == "401":
        run.client = wrong_key
    elif answer == "429 exhausted":
        # One request per second, and a Retry-After longer than the client's retry budget: the request
        # below takes this second's slot, so the verification is answered 429 and gives up.
        ctl.configure(rate_limit_rps=1, retry_after=5)
        requests.get(f"{sandbox.base_url}/customers?per_page=1", auth=(TEST_API_KEY, ""), timeout=10)


def verify_under(answer: str, sandbox, fresh_db, gone: str, other_body: bytes):
    """Load, delete `gone` in the sandbox, walk again, turn hostile, verify, publish (the API healed).

    Returns (the deletion checks, the publish result, the table before, what the gateway answered)."""
    gateway_answer = ANSWERS[answer][1]
    ctl = sandbox.control

    def answer_for(method, path, query):
        if gateway_answer is not None and path == f"/v1/customers/{gone}":
            return gateway_answer(other_body)
        return None

    engine = sa.create_engine(fresh_db)
    options = ExtractOptions(per_page=50, progress_interval=0.5)
    with Gateway(sandbox.base_url, answer_for) as gateway:
        client = client_for(gateway.base_url)
        wrong_key = client_for(gateway.base_url, api_key="not-the-key-0b3e")
        try:
            run_extraction(client, engine, options, LOG)
            ctl.delete_customer(gone)  # the next pass cannot see it
            before = exact_table(fresh_db)

            run = Extraction(client, engine, options, LOG)
            run.open()
            run.walk()
            turn_hostile(answer, sandbox, run, wrong_key)
            checks = run.verify()
            run.client = client
            ctl.configure(fault_rate=0.0, latency_ms=0, rate_limit_rps=None, retry_after=None)
            result = run.publish()
        finally:
            client.close()
            wrong_key.close()
            engine.dispose()
    return checks, result, before, gateway.answered


@pytest.mark.parametrize("answer", list(ANSWERS))
def test_only_the_apis_json_404_marks_an_unseen_customer_deleted(sandbox, fresh_db, answer):
    status, gateway_answer = ANSWERS[answer]
    customers = sandbox.control.customers()
    gone, other = customers[3]["uuid"], customers[4]["uuid"]
    other_body = requests.get(
        f"{sandbox.base_url}/customers/{other}", auth=(TEST_API_KEY, ""), timeout=10
    ).content
    checks, result, before, answered = verify_under(answer, sandbox, fresh_db, gone, other_body)
    if gateway_answer is not None:
        assert answered == [("GET", f"/v1/customers/{gone}")]

    [check] = checks
    assert check.uuid == gone and check.http_status == status
    after = {r[0]: r for r in exact_table(fresh_db)}
    if answer == "404":
        assert (check.outcome, result.publish.deleted) == ("deleted", 1)
        assert after[gone][-3] is not None  # deleted_at: the last table column, before xmin and ctid
        return
    assert check.outcome == "error" and result.publish.deleted == 0 and result.verification_errors == 1
    assert after[gone] == {r[0]: r for r in before}[gone]  # the row is untouched, physically
    assert exact_table(fresh_db) == before
    if answer == "200 another customer":
        assert other in check.message  # says whose record came back
    outcome = query(
        fresh_db,
        "SELECT outcome, http_status, message FROM cm_pipeline.deletion_checks WHERE uuid = :u",
        u=gone,
    )
    assert outcome[0][:2] == ("error", status) and outcome[0][2]


def test_progress_is_logged_while_verifying_and_while_publishing(sandbox, fresh_db):
    """Slow GETs and a publish that waits on a lock still produce a progress line every interval."""
    engine = sa.create_engine(fresh_db)
    options = ExtractOptions(per_page=50, progress_interval=0.1, max_workers=1)
    client = ChartMogulClient(TEST_API_KEY, base_url=sandbox.base_url, max_requests_per_second=500)
    log = ListLog()
    try:
        run_extraction(client, engine, options, LOG)
        ctl = sandbox.control
        for c in ctl.customers()[:3]:
            ctl.delete_customer(c["uuid"])
        run = Extraction(
            client, engine, ExtractOptions(per_page=50, progress_interval=0.1, max_workers=1), log
        )
        run.open()
        run.walk()
        ctl.configure(latency_ms=250)  # three GETs, one at a time: 0.75 s of verification
        run.verify()
        ctl.configure(latency_ms=0)

        holder = sa.create_engine(fresh_db)
        locked, release = threading.Event(), threading.Event()

        def hold_the_pass_row():  # the publish starts by locking its pass row: make it wait 0.6 s
            with holder.begin() as conn:
                conn.execute(
                    sa.text("SELECT 1 FROM cm_pipeline.extract_passes WHERE pass_id = :p FOR UPDATE"),
                    {"p": run.the_pass.pass_id},
                )
                locked.set()
                release.wait(10)
                time.sleep(0.6)

        holding = threading.Thread(target=hold_the_pass_row)
        holding.start()
        assert locked.wait(10)
        release.set()
        result = run.publish()
        holding.join()
        holder.dispose()
    finally:
        client.close()
        engine.dispose()
    assert result.publish.deleted == 3
    assert len(log.matching("extract: verifying unseen customers:")) >= 3
    assert len(log.matching("extract: publishing: ")) >= 3
    assert log.matching("extract: publishing pass")[0].endswith("staged rows")
