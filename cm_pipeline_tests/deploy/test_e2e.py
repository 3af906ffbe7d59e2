"""The production topology end to end, without Docker: docker/dagster.yaml with Postgres storage, `dagster
api grpc` as the code server, `dagster-webserver` and `dagster-daemon run` as subprocesses, the sandbox as
ChartMogul. Refresh runs are launched through the webserver's GraphQL API and run by the daemon."""

from __future__ import annotations

import subprocess
import time

import pytest
import sqlalchemy as sa
from dagster_graphql import DagsterGraphQLClient

from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.deploy import graphql as gq
from cm_pipeline_tests.deploy.stack import (
    REPOSITORY_NAME,
    DagsterStack,
    StackError,
    console_script,
    require_tcp_postgres,
    storage_env,
)

REFRESH_JOB = "warehouse_refresh_job"
SCHEDULE = "warehouse_refresh_schedule"
SENSOR = "reverse_etl_sensor"
CUSTOMERS = 40
RUNS_TIMEOUT = 180.0
# How long the second refresh must be seen waiting in the queue behind the first (> the 2 s dequeue interval).
HOLD_SECONDS = 6.0
REFRESH_TAG_KEY = "cm_pipeline/refresh"

IN_FLIGHT_RUNS = """
query InFlight {
  runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) {
    __typename
    ... on Runs { results { runId jobName status } }
    ... on PythonError { message }
  }
}
"""


@pytest.fixture
def databases(postgres):
    """A Dagster storage database and a warehouse database, both dropped afterwards."""
    require_tcp_postgres(postgres)
    storage_url = postgres.create_database("cm_dagster")
    warehouse_url = postgres.create_database("cm_wh")
    yield storage_url, warehouse_url
    postgres.drop_database(storage_url)
    postgres.drop_database(warehouse_url)


@pytest.fixture
def sandbox():
    from cm_pipeline.sandbox import SandboxProcess

    with SandboxProcess(customers=CUSTOMERS, seed=6, api_key=TEST_API_KEY) as proc:
        yield proc


def _wait_for_location(stack: DagsterStack, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    error = gq.location_load_error(stack)
    while error is not None:
        if time.monotonic() > deadline or "loading" not in error:
            raise StackError(f"code location did not load: {error}\n" + stack.diagnostics())
        time.sleep(1)
        error = gq.location_load_error(stack)


def _wait_for_no_runs_in_flight(stack: DagsterStack, timeout: float = 90.0) -> None:
    """Let anything a sensor or schedule tick launched finish before the processes are stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = stack.graphql(IN_FLIGHT_RUNS)["runsOrError"]["results"]
        if not runs:
            return
        time.sleep(1)
    raise StackError(f"runs still in flight: {runs}\n" + stack.diagnostics())


def _wait_for_daemon_liveness(stack: DagsterStack, timeout: float = 60.0) -> None:
    """Run docker-compose.yml's daemon healthcheck, `dagster-daemon liveness-check`, until it passes."""
    env = {**stack.env, "DAGSTER_DAEMON_HEARTBEAT_TOLERANCE": "300"}
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(
            [console_script("dagster-daemon"), "liveness-check"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode == 0:
            assert "Daemon live" in result.stdout, result.stdout
            return
        if time.monotonic() > deadline:
            raise StackError(f"liveness-check failed: {result.stdout}{result.stderr}\n" + stack.diagnostics())
        time.sleep(2)


# The test's instance is docker/dagster.yaml with shorter run-monitoring intervals, so that a slot
# held by a dead run is freed within seconds instead of the shipped 30 s (+ up to 30 s until the next
# poll); test_config checks the shipped values.
FAST_MONITORING = {"run_monitoring": {"poll_interval_seconds": 3, "free_slots_after_run_end_seconds": 3}}
POOL = "warehouse_refresh"
# Sandbox latency while the first refresh walks: its extract step holds the pool slot long enough to be
# seen holding it, to queue a second refresh behind it and to kill it.
SLOW_MS = 2500


def _assert_ran_through_the_queue(stack: DagsterStack, run: dict) -> None:
    events = gq.run_events(stack, run["runId"])
    kinds = [event["__typename"] for event in events]
    assert "RunEnqueuedEvent" in kinds, "the run did not go through the QueuedRunCoordinator"
    assert kinds.index("RunEnqueuedEvent") < kinds.index("RunStartingEvent")
    messages = " ".join(e.get("message") or "" for e in events)
    assert TEST_API_KEY not in messages, "the API key leaked into the run's events"
    assert dict((t["key"], t["value"]) for t in run["tags"]).get(REFRESH_TAG_KEY), run["tags"]
    if run["status"] == "SUCCESS":
        assert "RunSuccessEvent" in kinds


def _kill_a_refresh_and_see_the_next_one_run(stack: DagsterStack, sandbox) -> dict:
    """A refresh whose worker is SIGKILLed mid-extract fails, its pool slot is freed, and the refresh
    queued behind it (held while the first ran) starts and succeeds. Returns the second run."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=stack.web_port)

    def submit() -> str:
        return client.submit_job_execution(
            REFRESH_JOB, repository_location_name=stack.location_name, repository_name=REPOSITORY_NAME
        )

    sandbox.control.configure(latency_ms=SLOW_MS)
    first_id = submit()
    gq.wait_for_pool_holder(stack, POOL, first_id, RUNS_TIMEOUT)
    second_id = submit()
    # The queue holds the second back while the first runs (one refresh at a time).
    assert gq.held_in_queue(stack, second_id, behind=first_id, for_seconds=HOLD_SECONDS), (
        "the first refresh ended before the second could be seen waiting\n" + stack.diagnostics()
    )
    third_id = submit()  # a queued run is cancelled without ever starting
    client.terminate_run(third_id)
    assert gq.wait_for_run(stack, third_id, 60)["status"] == "CANCELED"
    killed = stack.kill_run_worker()
    sandbox.control.configure(latency_ms=0)
    first = gq.wait_for_run(stack, first_id, 60)
    assert first["status"] == "FAILURE", (first, killed)
    _assert_ran_through_the_queue(stack, first)

    # Run monitoring frees the dead run's slot, so the queued refresh starts instead of waiting forever.
    second = gq.wait_for_run(stack, second_id, RUNS_TIMEOUT)
    assert second["status"] == "SUCCESS", (
        f"run {second_id} ended {second['status']}:\n"
        + gq.failure_messages(stack, second_id)
        + "\n"
        + stack.diagnostics()
    )
    assert second["startTime"] >= first["endTime"], (first, second)
    assert first_id not in gq.pool_holders(stack, POOL)
    _assert_ran_through_the_queue(stack, second)
    return second


def _instigators_turn_on_and_off(stack: DagsterStack) -> None:
    """The schedule and the sensor are listed and can be turned on (then off again).

    The schedule runs by default and the sensor does not, so the schedule is stopped first: starting it
    must then really change its state.
    """
    schedules, sensors = gq.instigators(stack)
    assert SCHEDULE in schedules, sorted(schedules)
    assert SENSOR in sensors, sorted(sensors)
    assert schedules[SCHEDULE]["scheduleState"]["status"] == "RUNNING", "the schedule runs by default"
    assert sensors[SENSOR]["sensorState"]["status"] == "STOPPED", "the push sensor is off by default"
    selector = gq.repository_selector(stack)

    stopped = stack.graphql(gq.STOP_SCHEDULE, {"id": schedules[SCHEDULE]["scheduleState"]["id"]})
    assert stopped["stopRunningSchedule"].get("scheduleState", {}).get("status") == "STOPPED", stopped
    schedules, sensors = gq.instigators(stack)
    assert schedules[SCHEDULE]["scheduleState"]["status"] == "STOPPED"

    started = stack.graphql(gq.START_SCHEDULE, {"selector": {**selector, "scheduleName": SCHEDULE}})
    assert started["startSchedule"].get("scheduleState", {}).get("status") == "RUNNING", started
    started = stack.graphql(gq.START_SENSOR, {"selector": {**selector, "sensorName": SENSOR}})
    assert started["startSensor"].get("sensorState", {}).get("status") == "RUNNING", started

    schedules, sensors = gq.instigators(stack)
    assert schedules[SCHEDULE]["scheduleState"]["status"] == "RUNNING"
    assert sensors[SENSOR]["sensorState"]["status"] == "RUNNING"

    stopped = stack.graphql(gq.STOP_SCHEDULE, {"id": schedules[SCHEDULE]["scheduleState"]["id"]})
    assert stopped["stopRunningSchedule"]["scheduleState"]["status"] == "STOPPED", stopped
    stopped = stack.graphql(gq.STOP_SENSOR, {"id": sensors[SENSOR]["sensorState"]["id"]})
    assert stopped["stopSensor"]["instigationState"]["status"] == "STOPPED", stopped


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_refresh_runs_through_the_daemon_and_instigators_turn_on(databases, sandbox, tmp_path):
    storage_url, warehouse_url = databases
    env = {
        **storage_env(storage_url),
        "CHARTMOGUL_API_KEY": TEST_API_KEY,
        "CHARTMOGUL_BASE_URL": sandbox.base_url,
        "WAREHOUSE_URL": warehouse_url,
        "CM_PIPELINE_STATE_DIR": str(tmp_path / "state"),
    }
    stack = DagsterStack(tmp_path, env, overrides=FAST_MONITORING)
    with stack:
        _wait_for_location(stack)

        # 1-2. Refreshes launched through the webserver's GraphQL API, queued one at a time; the first
        # one's worker is killed and the second one still runs (the queue is not stuck).
        _kill_a_refresh_and_see_the_next_one_run(stack, sandbox)

        engine = sa.create_engine(warehouse_url)
        try:
            with engine.connect() as conn:
                loaded = conn.execute(sa.text("SELECT count(*) FROM chartmogul.customers")).scalar()
        finally:
            engine.dispose()
        assert loaded == len(sandbox.control.customers()) == CUSTOMERS

        # The compose daemon's healthcheck passes against this daemon (every daemon has a heartbeat).
        _wait_for_daemon_liveness(stack)

        # 3. The schedule and the sensor are listed and can be turned on (then off again).
        _instigators_turn_on_and_off(stack)
        _wait_for_no_runs_in_flight(stack)

    # 4. Everything stopped on SIGTERM/SIGINT; nothing needed SIGKILL.
    killed = [s.name for s in stack.services if s.killed]
    assert not killed, f"needed SIGKILL: {killed}\n" + stack.diagnostics()
    assert all(not s.alive() for s in stack.services)
    for service in stack.services:
        assert TEST_API_KEY not in service.log_path.read_text(errors="replace"), (
            f"API key in {service.name} log"
        )
