"""A resumed pass whose saved cursor is no longer valid restarts that partition from its first page.

Any 4xx but 401, 403 and 429 on the request carrying the saved cursor means the cursor is gone (the
sandbox answers an unknown cursor with its JSON 400; a gateway in front of it gives the 404 and 422 an
API may send for an expired one). 401, 403 and 429 say nothing about the cursor: the run fails and the
checkpoint is kept for the next one.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.chartmogul.errors import APIError
from cm_pipeline.extract.options import ExtractOptions
from cm_pipeline.extract.run import Extraction
from cm_pipeline.warehouse.staging import StagingWriter
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.extract.conftest import Gateway, ListLog, json_answer, query

EXPIRED = "expired-cursor-4f1c"
OPTIONS = ExtractOptions(per_page=20, max_workers=3, progress_interval=0.5)


def interrupted_pass(client, engine) -> int:
    """A pass that staged two pages of Active before it died; its saved cursor then expires."""
    run = Extraction(client, engine, OPTIONS, ListLog())
    the_pass = run.open()
    pages = client.list_customers(status="Active", per_page=OPTIONS.per_page)
    with StagingWriter(engine, the_pass.pass_id, "Active") as writer:
        for _, page in zip(range(2), pages, strict=False):
            writer.write_page(page.entries, page.cursor, page.has_more)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE cm_pipeline.extract_checkpoints SET cursor = :c WHERE partition = 'Active'"),
            {"c": EXPIRED},
        )
    return the_pass.pass_id


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_a_refused_saved_cursor_restarts_its_partition_and_the_table_is_complete(sandbox, fresh_db, status):
    ctl = sandbox.control

    def answer(method, path, query):
        if status != 400 and f"cursor={EXPIRED}" in query:  # 400: the sandbox's own answer
            return json_answer(status, {"code": status, "message": "Cursor expired", "param": "cursor"})
        return None

    engine = sa.create_engine(fresh_db)
    log = ListLog()
    with Gateway(sandbox.base_url, answer) as gateway:
        client = ChartMogulClient(TEST_API_KEY, base_url=gateway.base_url, max_requests_per_second=500)
        try:
            pass_id = interrupted_pass(client, engine)
            run = Extraction(client, engine, OPTIONS, log)
            assert run.open().resumed
            run.walk()
            run.verify()
            result = run.publish()
        finally:
            client.close()
            engine.dispose()
    assert result.pass_id == pass_id
    [note] = log.matching("saved cursor was refused")
    assert f"partition Active: the saved cursor was refused (HTTP {status}" in note
    assert "restarting the partition from its first page" in note
    assert ("warning", note) in log.lines  # a warning of its own, not one of the capped problem lines
    api = {c["uuid"]: c for c in ctl.customers()}
    rows = dict(query(fresh_db, "SELECT uuid, raw FROM chartmogul.customers WHERE deleted_at IS NULL"))
    assert rows == api  # every customer, as the API has it
    active = sum(1 for c in api.values() if c["status"] == "Active")
    assert result.partitions["Active"].customers == active  # walked whole again


@pytest.mark.parametrize("status", [401, 403, 429])
def test_an_answer_about_the_key_account_or_rate_fails_the_run_and_keeps_the_checkpoint(
    sandbox, fresh_db, status
):
    def answer(method, path, query):
        if f"cursor={EXPIRED}" in query:
            return json_answer(status, {"code": status, "message": "No", "param": None})
        return None

    engine = sa.create_engine(fresh_db)
    log = ListLog()
    with Gateway(sandbox.base_url, answer) as gateway:
        client = ChartMogulClient(
            TEST_API_KEY, base_url=gateway.base_url, max_requests_per_second=500, max_retry_seconds=0.5
        )
        try:
            interrupted_pass(client, engine)
            run = Extraction(client, engine, OPTIONS, log)
            assert run.open().resumed
            with pytest.raises(APIError) as failed:
                run.walk()
        finally:
            client.close()
            engine.dispose()
    assert failed.value.status == status
    assert not log.matching("saved cursor was refused")
    saved = query(
        fresh_db, "SELECT cursor, pages FROM cm_pipeline.extract_checkpoints WHERE partition = 'Active'"
    )
    assert saved == [(EXPIRED, 2)]  # the next run tries the same cursor again
    assert query(fresh_db, "SELECT count(*) FROM chartmogul.customers") == [(0,)]
