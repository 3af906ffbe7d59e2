"""Push health in Dagster: the push assets in the lineage, their metadata and check per run, the failure
threshold, the dry run's planned changes, and a run that stops on a dead API with one message."""

from __future__ import annotations

import dagster as dg

from cm_pipeline.definitions import build_defs
from cm_pipeline.push.assets import CHECK_NAME, push_asset_key
from cm_pipeline.push.jobs import push_updates_job
from cm_pipeline.push.kinds import KINDS
from cm_pipeline.resources import ChartMogulAccess, ChartMogulResource, WarehouseResource
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.push.conftest import log_rows, make_updates, seed_customers, sync_warehouse


def _resources(base_url: str, url: str, key: str = TEST_API_KEY) -> dict:
    return {
        "chartmogul": ChartMogulResource(access=ChartMogulAccess(api_key=key, base_url=base_url)),
        "warehouse": WarehouseResource(url=url),
    }


def _run(sandbox, fresh_db, instance, config: dict | None = None, key: str = TEST_API_KEY):
    return push_updates_job.execute_in_process(
        run_config={"ops": {"load_updates": {"config": config or {}}}},
        resources=_resources(sandbox.base_url, fresh_db, key),
        instance=instance,
        raise_on_error=False,
    )


def _check(instance, kind: str = "updates"):
    key = dg.AssetCheckKey(push_asset_key(kind), CHECK_NAME)
    return instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]


def test_each_push_asset_is_downstream_of_its_outbound_model_with_a_check():
    graph = build_defs({}).get_repository_def().asset_graph
    for name in KINDS:
        node = graph.get(push_asset_key(name))
        assert dg.AssetKey(["reverse_etl", f"chartmogul_{name}"]) in node.parent_keys
        assert node.description and node.group_name == "reverse_etl"
        assert dg.AssetCheckKey(push_asset_key(name), CHECK_NAME) in graph.asset_check_keys


def test_a_push_records_numeric_health_and_warns_on_rejections(sandbox, ctl, client, wh, fresh_db):
    a, b, _ = seed_customers(ctl)
    sync_warehouse(wh, client)
    make_updates(
        wh,
        [
            {"customer_uuid": a["uuid"], "add_tags": ["vip"]},
            {"customer_uuid": b["uuid"], "add_tags": ["a"]},  # already there: unchanged
            {"customer_uuid": "cus_gone", "add_tags": ["x"]},  # not in the warehouse: rejected
        ],
    )
    instance = dg.DagsterInstance.ephemeral()
    result = _run(sandbox, fresh_db, instance)
    assert result.success  # 1 of 3 rows: under 20 rows the threshold does not apply
    event = instance.get_latest_materialization_event(push_asset_key("updates"))
    meta = event.asset_materialization.metadata
    assert {k: meta[k].value for k in ("applied", "unchanged", "rejected", "failed", "calls")} == {
        "applied": 1,
        "unchanged": 1,
        "rejected": 1,
        "failed": 0,
        "calls": 2,
    }
    assert isinstance(meta["duration_s"], dg.FloatMetadataValue) and meta["duration_s"].value > 0
    numeric = {k for k, v in meta.items() if isinstance(v, (dg.IntMetadataValue, dg.FloatMetadataValue))}
    assert numeric == {"applied", "unchanged", "rejected", "failed", "pending", "calls", "duration_s"}
    check = _check(instance)
    evaluation = check.event.dagster_event.event_specific_data
    assert check.status.value == "FAILED" and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "1 of 3 rows rejected or failed" in evaluation.description
    assert "cm_pipeline.push_log" in evaluation.metadata["query"].value

    make_updates(wh, [{"customer_uuid": a["uuid"], "add_tags": ["vip"]}])
    assert _run(sandbox, fresh_db, instance).success
    assert _check(instance).status.value == "SUCCEEDED"  # nothing rejected: the warning clears


def test_over_the_threshold_the_run_fails_after_logging_every_row(sandbox, ctl, client, wh, fresh_db):
    customers = seed_customers(ctl, 20)
    sync_warehouse(wh, client)
    rows = [{"customer_uuid": c["uuid"], "add_tags": ["ok"]} for c in customers]
    rows += [{"customer_uuid": f"cus_gone_{i}", "add_tags": ["x"]} for i in range(4)]
    rows += [{"customer_uuid": customers[0]["uuid"] + "-typo", "custom_attributes": {"CAC": "many"},
              "attribute_types": {"CAC": "Integer"}}]  # fmt: skip
    make_updates(wh, rows)
    instance = dg.DagsterInstance.ephemeral()
    result = _run(sandbox, fresh_db, instance, {"max_rejected_share": 0.1})
    assert not result.success
    assert len(log_rows(wh, result.run_id)) == 25  # every row logged before the run failed
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.user_failure_data.description
    assert "5 of 25 rows rejected or failed (5 rejected, 0 failed, 20.0%)" in message
    assert "over max_rejected_share 10.0%" in message
    assert "  4 × customer cus_… not in warehouse (unknown or deleted)" in message  # top reasons, counted
    assert f"WHERE run_id = '{result.run_id}' AND kind = 'updates'" in message
    assert _check(instance).event.dagster_event.event_specific_data.severity == dg.AssetCheckSeverity.ERROR
    assert instance.get_latest_materialization_event(push_asset_key("updates")) is not None

    assert _run(sandbox, fresh_db, instance, {"max_rejected_share": 0.25}).success  # 20% is under 25%


def test_a_dry_run_shows_its_planned_changes_field_by_field(sandbox, ctl, client, wh, fresh_db):
    customers = seed_customers(ctl, 22)
    sync_warehouse(wh, client)
    make_updates(
        wh,
        [
            {"customer_uuid": c["uuid"], "add_tags": ["vip"], "custom_attributes": {"CAC": 100 + i}}
            for i, c in enumerate(customers)
        ],
    )
    instance = dg.DagsterInstance.ephemeral()
    ctl.reset_stats()
    assert _run(sandbox, fresh_db, instance, {"dry_run": True}).success
    assert ctl.stats()["by_route"].get("PATCH /v1/customers/{uuid}") is None
    assert instance.get_latest_materialization_event(push_asset_key("updates")) is None  # nothing pushed
    observation = instance.fetch_observations(push_asset_key("updates"), limit=1).records[0]
    meta = observation.asset_observation.metadata
    assert meta["planned"].value == 22
    table = meta["planned_changes"].value
    lines = table.splitlines()
    assert lines[0] == "| # | target | field | before | after |"
    assert len(lines) == 2 + 20 * 2  # the first 20 rows, two fields each (tags, custom.CAC)
    first = customers[0]["uuid"]
    assert f"| 1 | {first} | tags | a, b | a, b, vip |" in lines
    assert f"| 1 | {first} | custom.CAC | 25 | 100 |" in lines


def test_the_run_stops_with_one_message_when_the_credentials_are_refused(sandbox, ctl, client, wh, fresh_db):
    customers = seed_customers(ctl, 12)
    sync_warehouse(wh, client)
    make_updates(wh, [{"customer_uuid": c["uuid"], "add_tags": ["vip"]} for c in customers])
    ctl.reset_stats()
    result = _run(sandbox, fresh_db, dg.DagsterInstance.ephemeral(), key="not-the-key")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.user_failure_data.description
    assert message.startswith("push updates stopped: ChartMogul refused the credentials: HTTP 401")
    assert "not reached are untouched and go out with the next run" in message
    assert ctl.stats()["requests"] <= 10  # the first 401 stopped it: at most the calls already in flight
    assert not [r for r in log_rows(wh) if r["outcome"] in ("failed", "pending")]
