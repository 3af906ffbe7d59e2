"""The demo's local Dagster instance: local storage, with the deployed instance's queue and pool limits."""

from __future__ import annotations

import pytest
import yaml

from cm_pipeline.demo.instance import demo_instance_config, write_instance_config
from cm_pipeline_tests.deploy.stack import DAGSTER_YAML


def _deployed_concurrency() -> dict:
    return yaml.safe_load(DAGSTER_YAML.read_text())["concurrency"]


def test_the_demo_instance_copies_the_deployed_limits_and_keeps_local_storage():
    config = demo_instance_config()
    assert config["concurrency"] == _deployed_concurrency()
    deployed_monitoring = yaml.safe_load(DAGSTER_YAML.read_text())["run_monitoring"]
    assert config["run_monitoring"] == deployed_monitoring
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] == 30
    assert not {"storage", "run_storage", "event_log_storage", "schedule_storage", "run_launcher"} & set(
        config
    ), "the demo keeps Dagster's local (sqlite) storage: no Postgres settings from docker/dagster.yaml"


def test_the_demo_instance_loads_and_enforces_the_limits(tmp_path):
    from dagster import DagsterInstance
    from dagster._core.run_coordinator import QueuedRunCoordinator

    home = tmp_path / "dagster_home"
    path = write_instance_config(home)
    assert path == home / "dagster.yaml"
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        config = instance.get_concurrency_config()
        deployed = _deployed_concurrency()
        limits = {(limit["key"], limit["limit"]) for limit in config.run_queue_config.tag_concurrency_limits}
        assert limits == {
            (limit["key"], limit["limit"]) for limit in deployed["runs"]["tag_concurrency_limits"]
        }
        assert ("cm_pipeline/refresh", 1) in limits
        assert config.run_queue_config.max_concurrent_runs == deployed["runs"]["max_concurrent_runs"]
        assert config.pool_config.default_pool_limit == deployed["pools"]["default_limit"] == 1
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 30


def test_an_earlier_empty_demo_config_is_replaced(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("")
    write_instance_config(home)
    assert yaml.safe_load((home / "dagster.yaml").read_text())["concurrency"] == _deployed_concurrency()


@pytest.mark.parametrize("text", ["", "storage: {}\n", "- a list\n"])
def test_a_deployed_file_without_limits_is_named(tmp_path, text):
    deployed = tmp_path / "dagster.yaml"
    deployed.write_text(text)
    with pytest.raises(RuntimeError, match=r"dagster\.yaml.*concurrency"):
        demo_instance_config(deployed)


def test_a_missing_deployed_file_is_named(tmp_path):
    with pytest.raises(RuntimeError, match=r"missing\.yaml.*concurrency"):
        demo_instance_config(tmp_path / "missing.yaml")
