"""The push jobs and reverse_etl_sensor under Dagster, against the sandbox and a real Postgres."""

from __future__ import annotations

import json
import uuid

import dagster as dg
import sqlalchemy as sa

from cm_pipeline.push.jobs import (
    PUSH_JOBS,
    load_op_name,
    push_by_email_job,
    push_creates_job,
    push_updates_job,
)
from cm_pipeline.push.kinds import UPDATES
from cm_pipeline.push.sensor import reverse_etl_sensor
from cm_pipeline.resources import ChartMogulAccess, ChartMogulResource, WarehouseResource
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.push.conftest import (
    BY_EMAIL_DDL,
    CREATES_DDL,
    UPDATES_DDL,
    UPDATES_REL,
    log_rows,
    make_relation,
    make_updates,
    sync_warehouse,
    writes_at_sandbox,
)


def resources(sandbox, url: str) -> dict:
    return {
        "chartmogul": ChartMogulResource(
            access=ChartMogulAccess(api_key=TEST_API_KEY, base_url=sandbox.base_url)
        ),
        "warehouse": WarehouseResource(url=url),
    }


def test_push_updates_job_runs_its_three_ops(sandbox, ctl, client, wh, fresh_db):
    a = ctl.insert_customer(email="a@example.com", tags=["old"], custom={"CAC": 1, "channel": "ads"})
    b = ctl.insert_customer(email="b@example.com", tags=["x"], custom={"CAC": 2})
    sync_warehouse(wh, client)
    make_relation(
        wh,
        "custom_schema.my_updates",
        UPDATES_DDL,
        [
            {"customer_uuid": a["uuid"], "add_tags": ["vip"], "custom_attributes": {"CAC": 5}},
            {"customer_uuid": b["uuid"], "add_tags": ["x"]},
            {
                "customer_uuid": b["uuid"] + "-nope",
                "custom_attributes": {"CAC": "five"},
                "attribute_types": {"CAC": "Integer"},
            },
        ],
    )
    assert {n.name for n in push_updates_job.nodes} == {
        "load_updates",
        "apply_updates",
        "summarise_updates",
    }
    instance = dg.DagsterInstance.ephemeral()
    result = push_updates_job.execute_in_process(
        run_config={"ops": {load_op_name(UPDATES): {"config": {"relation": "custom_schema.my_updates"}}}},
        resources=resources(sandbox, fresh_db),
        instance=instance,
    )
    assert result.success
    assert (
        instance.get_run_by_id(result.run_id).tags["cm_pipeline/push"] == "chartmogul"
    )  # one push at a time
    summary = result.output_for_node("summarise_updates")
    assert summary["applied"] == 1 and summary["unchanged"] == 1 and summary["rejected"] == 1
    assert summary["calls"] == 2  # one GET and one PATCH; the unchanged row made none
    apply_meta = next(
        e.event_specific_data.metadata
        for e in result.all_events
        if e.event_type_value == "STEP_OUTPUT" and e.step_key == "apply_updates"
    )
    assert apply_meta["applied"].value == 1 and apply_meta["calls"].value == 2
    assert sorted(ctl.customer(a["uuid"])["attributes"]["tags"]) == ["old", "vip"]
    assert ctl.customer(a["uuid"])["attributes"]["custom"] == {"CAC": 5, "channel": "ads"}

    # the API key is nowhere in the run's events or in push_log
    events = instance.all_logs(result.run_id)
    blob = "\n".join(dg.serialize_value(e) for e in events)
    assert TEST_API_KEY not in blob
    assert all(TEST_API_KEY not in json.dumps(r, default=str) for r in log_rows(wh))


def test_every_push_job_tags_its_runs_for_the_one_push_at_a_time_limit():
    # docker/dagster.yaml's QueuedRunCoordinator limits runs tagged cm_pipeline/push to one.
    assert {j.name for j in PUSH_JOBS} == {
        "push_updates_job",
        "push_by_email_job",
        "push_creates_job",
    }
    for job in PUSH_JOBS:
        assert job.run_tags.get("cm_pipeline/push") == "chartmogul", job.name


def test_dry_run_job_and_bad_relation_name(sandbox, ctl, client, wh, fresh_db):
    a = ctl.insert_customer(email="a@example.com", tags=[], custom={})
    sync_warehouse(wh, client)
    make_updates(wh, [{"customer_uuid": a["uuid"], "add_tags": ["vip"]}])
    ctl.reset_stats()
    result = push_updates_job.execute_in_process(
        run_config={"ops": {"load_updates": {"config": {"dry_run": True}}}},
        resources=resources(sandbox, fresh_db),
    )
    assert result.success and result.output_for_node("summarise_updates")["dry_run"] == 1
    assert writes_at_sandbox(ctl) == 0 and ctl.customer(a["uuid"])["attributes"]["tags"] == []

    bad = push_updates_job.execute_in_process(
        run_config={"ops": {"load_updates": {"config": {"relation": "x; DROP TABLE chartmogul.customers"}}}},
        resources=resources(sandbox, fresh_db),
        raise_on_error=False,
    )
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    assert "is not a valid name" in str(failure.event_specific_data.error)
    with wh.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM chartmogul.customers")).scalar() == 1


def test_by_email_and_create_jobs(sandbox, ctl, client, wh, fresh_db):
    ctl.insert_customer(email="solo@example.com", custom={})
    sync_warehouse(wh, client)
    make_relation(
        wh,
        "reverse_etl.chartmogul_by_email",
        BY_EMAIL_DDL,
        [{"email": "solo@example.com", "key": "seats", "type": "Integer", "value": 4}],
    )
    ds = ctl.data_sources()[0]["uuid"]
    make_relation(
        wh,
        "reverse_etl.chartmogul_creates",
        CREATES_DDL,
        [{"data_source_uuid": ds, "external_id": "lead_1", "name": "Lead", "email": "lead@example.com"}],
    )
    by_email = push_by_email_job.execute_in_process(resources=resources(sandbox, fresh_db))
    creates = push_creates_job.execute_in_process(resources=resources(sandbox, fresh_db))
    assert by_email.output_for_node("summarise_by_email")["applied"] == 1
    assert creates.output_for_node("summarise_creates")["applied"] == 1
    assert [c for c in ctl.customers() if c["external_id"] == "lead_1"]


# ---- reverse_etl_sensor -------------------------------------------------------------------------


@dg.op
def _noop():
    """Stands in for the refresh in sensor tests."""


@dg.job(name="warehouse_refresh_job")
def _fake_refresh_job():
    _noop()


def _evaluate(instance, url: str, cursor: str | None):
    ctx = dg.build_sensor_context(
        cursor=cursor, instance=instance, resources={"warehouse": WarehouseResource(url=url)}
    )
    return reverse_etl_sensor(ctx)


def test_sensor_fingerprints_relations_and_requests_pushes(wh, fresh_db):
    instance = dg.DagsterInstance.ephemeral()
    skipped = _evaluate(instance, fresh_db, None)
    assert not skipped.run_requests and "no outbound relation exists yet" in skipped.skip_reason.skip_message

    make_updates(wh, [{"customer_uuid": "cus_1", "add_tags": ["vip"]}])
    make_relation(wh, "reverse_etl.chartmogul_by_email", BY_EMAIL_DDL, [])
    first = _evaluate(instance, fresh_db, skipped.cursor)
    assert [r.job_name for r in first.run_requests] == ["push_updates_job"]  # empty relation: no push
    fp = json.loads(first.cursor)["fingerprints"][UPDATES_REL]
    assert fp in first.run_requests[0].run_key

    same = _evaluate(instance, fresh_db, first.cursor)
    assert not same.run_requests and "unchanged" in same.skip_reason.skip_message
    assert json.loads(same.cursor)["fingerprints"][UPDATES_REL] == fp

    make_updates(wh, [{"customer_uuid": "cus_1", "add_tags": ["vip", "gold"]}])
    changed = _evaluate(instance, fresh_db, same.cursor)
    assert [r.job_name for r in changed.run_requests] == ["push_updates_job"]
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key

    # back to the first contents: a new push still follows (run keys never repeat)
    make_updates(wh, [{"customer_uuid": "cus_1", "add_tags": ["vip"]}])
    back = _evaluate(instance, fresh_db, changed.cursor)
    assert len(back.run_requests) == 1 and back.run_requests[0].run_key not in {
        first.run_requests[0].run_key,
        changed.run_requests[0].run_key,
    }


def test_sensor_pushes_after_a_successful_refresh(wh, fresh_db):
    instance = dg.DagsterInstance.ephemeral()
    make_updates(wh, [{"customer_uuid": "cus_1", "add_tags": ["vip"]}])
    first = _evaluate(instance, fresh_db, None)
    assert len(first.run_requests) == 1
    assert not _evaluate(instance, fresh_db, first.cursor).run_requests

    assert _fake_refresh_job.execute_in_process(instance=instance).success
    after = _evaluate(instance, fresh_db, first.cursor)
    assert [r.job_name for r in after.run_requests] == ["push_updates_job"]
    assert after.run_requests[0].tags["cm_pipeline/trigger"].startswith("refresh ")
    assert not _evaluate(instance, fresh_db, after.cursor).run_requests


def _refresh_under_way(instance) -> dg.DagsterRun:
    run = dg.DagsterRun(
        job_name="warehouse_refresh_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED
    )
    instance.add_run(run)
    return run


def test_sensor_waits_for_a_refresh_under_way_then_pushes_once(wh, fresh_db):
    instance = dg.DagsterInstance.ephemeral()
    make_updates(wh, [{"customer_uuid": "cus_1", "add_tags": ["vip"]}])
    first = _evaluate(instance, fresh_db, None)
    running = _refresh_under_way(instance)
    make_updates(wh, [{"customer_uuid": "cus_1", "add_tags": ["vip", "gold"]}])  # dbt rebuilt it mid-refresh
    waiting = _evaluate(instance, fresh_db, first.cursor)
    assert not waiting.run_requests and "is under way" in waiting.skip_reason.skip_message
    assert waiting.cursor == first.cursor

    instance.delete_run(running.run_id)  # that refresh ends: here, a successful one in its place
    assert _fake_refresh_job.execute_in_process(instance=instance).success
    after = _evaluate(instance, fresh_db, waiting.cursor)
    assert [r.job_name for r in after.run_requests] == ["push_updates_job"]  # one push, not two
    assert not _evaluate(instance, fresh_db, after.cursor).run_requests


def test_sensor_pushes_a_relation_changed_by_a_refresh_that_failed(wh, fresh_db):
    instance = dg.DagsterInstance.ephemeral()
    make_updates(wh, [{"customer_uuid": "cus_1", "add_tags": ["vip"]}])
    first = _evaluate(instance, fresh_db, None)
    running = _refresh_under_way(instance)
    make_updates(wh, [{"customer_uuid": "cus_1", "add_tags": ["vip", "gold"]}])
    assert not _evaluate(instance, fresh_db, first.cursor).run_requests

    instance.report_run_failed(running)
    after = _evaluate(instance, fresh_db, first.cursor)
    assert [r.tags["cm_pipeline/trigger"] for r in after.run_requests] == ["relation changed"]
