"""The shipped deployment files: dagster.yaml loads into a Postgres-backed instance with a one-refresh,
one-push queue, the Helm values render the same limits, and no file under docker/ holds a credential."""

from __future__ import annotations

import shutil
import subprocess

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from cm_pipeline.project import REPO_ROOT
from cm_pipeline_tests.deploy.credentials import credential_findings
from cm_pipeline_tests.deploy.stack import DAGSTER_YAML, DOCKER_DIR, require_tcp_postgres, storage_env

HELM_VALUES = DOCKER_DIR / "helm" / "values.yaml"
REFRESH_JOB = "warehouse_refresh_job"
PUSH_TAG_KEY = "cm_pipeline/push"
STORAGE_VARS = (
    "DAGSTER_POSTGRES_HOST",
    "DAGSTER_POSTGRES_PORT",
    "DAGSTER_POSTGRES_USER",
    "DAGSTER_POSTGRES_PASSWORD",
    "DAGSTER_POSTGRES_DB",
)


def _dagster_yaml() -> dict:
    return yaml.safe_load(DAGSTER_YAML.read_text())


def _helm_values() -> dict:
    return yaml.safe_load(HELM_VALUES.read_text())


def _key_limits(limits: list[dict]) -> dict[str, int]:
    """Tag limits that cover every value of their key (no `value`), by key."""
    return {limit["key"]: limit["limit"] for limit in limits if limit.get("value") is None}


def test_dagster_yaml_reads_every_storage_setting_from_the_environment():
    db = _dagster_yaml()["storage"]["postgres"]["postgres_db"]
    assert {db[k]["env"] for k in ("hostname", "port", "username", "password", "db_name")} == set(
        STORAGE_VARS
    )
    assert db["scheme"] == "postgresql+psycopg2"


def _run_limits() -> list:
    """The run queue's tag limits, from dagster.yaml's `concurrency.runs` block."""
    return _dagster_yaml()["concurrency"]["runs"]["tag_concurrency_limits"]


def test_the_refresh_pool_is_limited_to_one_op_at_a_time():
    """An ad-hoc materialisation of chartmogul_customers (no run tag) still waits for a running refresh."""
    from cm_pipeline.definitions import build_defs

    defs = build_defs()
    assert _dagster_yaml()["concurrency"]["pools"]["default_limit"] == 1
    node = defs.get_repository_def().asset_graph.get(dg.AssetKey("chartmogul_customers"))
    assert node.pools == {"warehouse_refresh"}


def test_the_refresh_job_carries_the_tag_the_queue_limits_to_one():
    """The tag key in dagster.yaml's tag_concurrency_limits is one that warehouse_refresh_job really has."""
    from cm_pipeline.definitions import build_defs

    defs = build_defs()
    assert _dagster_yaml()["run_coordinator"]["class"] == "QueuedRunCoordinator"
    limits = _key_limits(_run_limits())
    job_tags = defs.resolve_job_def(REFRESH_JOB).run_tags  # what each of its runs is tagged with
    limited = {key: limits[key] for key in job_tags if key in limits}
    assert limited, f"none of {REFRESH_JOB}'s tags {dict(job_tags)} is limited in dagster.yaml ({limits})"
    assert set(limited.values()) == {1}


def test_the_instance_loads_from_the_shipped_file_into_postgres(postgres, tmp_path, monkeypatch):
    from dagster import DagsterInstance
    from dagster._core.run_coordinator import QueuedRunCoordinator

    require_tcp_postgres(postgres)
    url = postgres.create_database("cm_dagster")
    try:
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copyfile(DAGSTER_YAML, home / "dagster.yaml")
        for name, value in storage_env(url).items():
            monkeypatch.setenv(name, value)
        with DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
            queue = instance.get_concurrency_config().run_queue_config
            assert _key_limits([dict(limit) for limit in queue.tag_concurrency_limits]) == _key_limits(
                _run_limits()
            )
            assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
            assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
            assert instance.get_runs() == []
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
        engine.dispose()
        assert {"runs", "event_logs", "instigators", "job_ticks"} <= tables
    finally:
        postgres.drop_database(url)


def test_a_missing_storage_variable_is_named(tmp_path, monkeypatch):
    from dagster import DagsterInstance

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DAGSTER_YAML, home / "dagster.yaml")
    for name in STORAGE_VARS:
        monkeypatch.setenv(name, "5432" if name.endswith("PORT") else "x")
    monkeypatch.delenv("DAGSTER_POSTGRES_HOST")
    with pytest.raises(Exception, match="DAGSTER_POSTGRES_HOST"):
        DagsterInstance.from_config(str(home))


def test_helm_values_run_the_user_code_image_on_k8s_with_external_postgres():
    values = yaml.safe_load(HELM_VALUES.read_text())

    deployments = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"] is True
    (deployment,) = deployments
    assert deployment["image"]["repository"] and deployment["image"]["tag"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == "cm_pipeline.definitions"
    assert {"name": "cm-pipeline-secrets"} in deployment["envSecrets"]

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert {"name": "cm-pipeline-secrets"} in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]

    pg = values["postgresql"]
    assert pg["enabled"] is False
    assert pg["postgresqlHost"] and pg["postgresqlUsername"] and pg["postgresqlDatabase"]
    assert "postgresqlPassword" not in pg, "the storage password belongs in a Kubernetes secret"
    assert pg["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]

    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"


# The chart's values -> dagster.yaml keys of its `concurrency` block (helm/dagster/templates/helpers/
# instance/_concurrency.tpl, chart 1.12.9 and later).
HELM_POOL_KEYS = {
    "defaultLimit": "default_limit",
    "granularity": "granularity",
    "opGranularityRunBuffer": "op_granularity_run_buffer",
}
HELM_RUN_KEYS = {"maxConcurrentRuns": "max_concurrent_runs", "tagConcurrencyLimits": "tag_concurrency_limits"}
# queuedRunCoordinator settings the chart refuses to render beside `concurrency.runs`/`pools`.
HELM_CONFLICTING_QUEUE_KEYS = ("maxConcurrentRuns", "tagConcurrencyLimits", "blockOpConcurrencyLimitedRuns")


def _helm_concurrency(values: dict) -> dict:
    """The `concurrency` block the chart renders into the instance's dagster.yaml from `values`."""
    concurrency = values.get("concurrency") or {}
    if not concurrency.get("enabled"):
        return {}
    out: dict = {}
    for section, keys in (("pools", HELM_POOL_KEYS), ("runs", HELM_RUN_KEYS)):
        given = concurrency.get(section) or {}
        unknown = set(given) - set(keys)
        assert not unknown, f"concurrency.{section} has keys the chart does not read: {sorted(unknown)}"
        rendered = {keys[k]: v for k, v in given.items() if v not in (None, [])}
        if rendered:
            out[section] = rendered
    return out


def _sorted_limits(block: dict) -> dict:
    """`block` with its tag limits in a stable order (the order of the list does not matter)."""
    runs = dict(block.get("runs") or {})
    if "tag_concurrency_limits" in runs:
        runs["tag_concurrency_limits"] = sorted(
            (dict(limit) for limit in runs["tag_concurrency_limits"]), key=lambda limit: limit["key"]
        )
    return {**block, "runs": runs}


def test_helm_renders_the_same_pool_and_run_limits_as_dagster_yaml():
    """Pools and run tag limits: what the chart renders from values.yaml is docker/dagster.yaml's block."""
    values = _helm_values()
    shipped = _dagster_yaml()
    helm = _helm_concurrency(values)
    assert helm, (
        "docker/helm/values.yaml must set concurrency.enabled: true (else the chart renders no limits)"
    )
    assert helm["pools"] == shipped["concurrency"]["pools"]
    assert _sorted_limits(helm) == _sorted_limits(shipped["concurrency"])

    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    conflicting = [k for k in HELM_CONFLICTING_QUEUE_KEYS if queue.get(k) not in (None, [])]
    assert conflicting == [], f"the chart refuses queuedRunCoordinator.{conflicting} beside `concurrency`"
    assert queue["dequeueIntervalSeconds"] == shipped["run_coordinator"]["config"]["dequeue_interval_seconds"]


def test_the_instance_the_helm_values_describe_loads_with_those_limits(tmp_path):
    """Dagster accepts the run coordinator and concurrency block the chart renders, and enforces them."""
    from dagster import DagsterInstance
    from dagster._core.run_coordinator import QueuedRunCoordinator

    values = _helm_values()
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    home = tmp_path / "dagster_home"
    home.mkdir()
    rendered = {
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"dequeue_interval_seconds": queue["dequeueIntervalSeconds"]},
        },
        "concurrency": _helm_concurrency(values),
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    with DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        config = instance.get_concurrency_config()
        limits = _key_limits([dict(limit) for limit in config.run_queue_config.tag_concurrency_limits])
        assert limits == _key_limits(_run_limits())
        assert (
            config.run_queue_config.max_concurrent_runs
            == (_dagster_yaml()["concurrency"]["runs"]["max_concurrent_runs"])
        )
        assert config.pool_config.default_pool_limit == 1


def test_one_push_run_at_a_time_in_both_instances():
    """dagster.yaml and the Helm values limit the push tag key to one run, across all of its values."""
    assert _key_limits(_run_limits()).get(PUSH_TAG_KEY) == 1
    helm_runs = _helm_concurrency(_helm_values())["runs"]
    assert _key_limits(helm_runs["tag_concurrency_limits"]).get(PUSH_TAG_KEY) == 1


def test_every_push_job_carries_the_push_tag_the_queue_limits_to_one():
    """A run of any push job holds the one push slot: ChartMogul's request limit is per account."""
    from cm_pipeline.push.jobs import PUSH_JOBS

    limit = _key_limits(_run_limits())[PUSH_TAG_KEY]
    assert limit == 1
    assert PUSH_JOBS
    # run_tags: the tags every run of the job gets, which the queue reads.
    untagged = {job.name: dict(job.run_tags) for job in PUSH_JOBS if PUSH_TAG_KEY not in job.run_tags}
    assert untagged == {}, f"push jobs without the {PUSH_TAG_KEY} tag the queue limits: {untagged}"


def test_every_job_that_calls_chartmogul_shares_one_api_slot():
    """The refresh and every push carry the API tag, limited to one run in both instances (per-account limits)."""
    from cm_pipeline.definitions import build_defs
    from cm_pipeline.resources import CHARTMOGUL_API_RUN_TAGS

    [(api_key, _)] = CHARTMOGUL_API_RUN_TAGS.items()
    assert _key_limits(_run_limits()).get(api_key) == 1
    helm_runs = _helm_concurrency(_helm_values())["runs"]
    assert _key_limits(helm_runs["tag_concurrency_limits"]).get(api_key) == 1
    jobs = {job.name: job for job in build_defs().get_repository_def().get_all_jobs()}
    callers = {REFRESH_JOB, "push_updates_job", "push_by_email_job", "push_creates_job"}
    assert callers <= set(jobs)
    assert {name for name in callers if api_key not in jobs[name].run_tags} == set()


def _docker_files() -> list:
    """Files under docker/ that are (or would be) committed: tracked plus untracked-but-not-ignored."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "docker"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [REPO_ROOT / line for line in out.splitlines() if (REPO_ROOT / line).is_file()]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in DOCKER_DIR.rglob("*") if p.is_file() and p.name != ".env"]


def test_no_credentials_in_docker():
    files = _docker_files()
    assert any(p.name == "docker-compose.yml" for p in files)
    assert not any(p.name == ".env" for p in files), "docker/.env must stay git-ignored"
    findings = {
        str(p.relative_to(REPO_ROOT)): found
        for p in files
        if (found := credential_findings(p.read_text(errors="replace")))
    }
    assert findings == {}


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("password: hunter2", True),
        ("DAGSTER_POSTGRES_PASSWORD=s3cr3t", True),
        ('"api_key": "abc123"', True),
        ("postgresqlPassword: test", True),
        ("url: postgresql+psycopg2://app:pw@db:5432/wh", True),
        ("DAGSTER_POSTGRES_PASSWORD: ${DAGSTER_POSTGRES_PASSWORD:?set it in docker/.env}", False),
        ("WAREHOUSE_URL: postgresql+psycopg2://${U:-dagster}:${P}@postgres:5432/${DB:-warehouse}", False),
        ("      password:\n        env: DAGSTER_POSTGRES_PASSWORD", False),
        ("CHARTMOGUL_API_KEY=", False),
        ("# WAREHOUSE_URL=postgresql+psycopg2://<user>:<password>@<host>:5432/<dbname>", False),
        ("CHARTMOGUL_BASE_URL=http://sandbox:8080/v1", False),
    ],
)
def test_credential_scanner(text, found):
    assert bool(credential_findings(text)) is found


def test_run_monitoring_frees_the_slots_of_a_dead_run_in_both_instances():
    """A refresh whose worker was killed must not hold the `warehouse_refresh` pool slot forever."""
    shipped = _dagster_yaml()["run_monitoring"]
    assert shipped["enabled"] is True
    assert shipped["free_slots_after_run_end_seconds"] == 30
    helm = _helm_values()["dagsterDaemon"]["runMonitoring"]
    assert helm["enabled"] is True
    assert helm["freeSlotsAfterRunEndSeconds"] == shipped["free_slots_after_run_end_seconds"]
    assert helm["pollIntervalSeconds"] == shipped["poll_interval_seconds"] == 30
