"""GraphQL documents the end-to-end test sends to the webserver, and small helpers around them."""

from __future__ import annotations

import time

from cm_pipeline_tests.deploy.stack import REPOSITORY_NAME, DagsterStack, StackError

TERMINAL_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime tags { key value } }
    ... on PythonError { message }
  }
}
"""

RUN_EVENTS_QUERY = """
query RunEvents($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection { events { __typename ... on MessageEvent { message level } } }
    ... on PythonError { message }
  }
}
"""

LOCATION_QUERY = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
          ... on RepositoryLocation { repositories { name jobs { name } } }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

INSTIGATORS_QUERY = """
query Instigators($repo: RepositorySelector!) {
  schedulesOrError(repositorySelector: $repo) {
    __typename
    ... on Schedules { results { id name cronSchedule scheduleState { id status } } }
    ... on PythonError { message }
  }
  sensorsOrError(repositorySelector: $repo) {
    __typename
    ... on Sensors { results { id name sensorState { id status } } }
    ... on PythonError { message }
  }
}
"""

POOL_QUERY = """
query Pool($key: String!) {
  instance { concurrencyLimit(concurrencyKey: $key) { slotCount claimedSlots { runId stepKey } } }
}
"""

START_SCHEDULE = """
mutation StartSchedule($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

STOP_SCHEDULE = """
mutation StopSchedule($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

START_SENSOR = """
mutation StartSensor($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { id status } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

STOP_SENSOR = """
mutation StopSensor($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { id status } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def repository_selector(stack: DagsterStack) -> dict:
    return {"repositoryLocationName": stack.location_name, "repositoryName": REPOSITORY_NAME}


def location_load_error(stack: DagsterStack) -> str | None:
    """The code location's load error as the webserver reports it, or None when it loaded."""
    data = stack.graphql(LOCATION_QUERY)["workspaceOrError"]
    if data["__typename"] != "Workspace":
        return data.get("message", data["__typename"])
    for entry in data["locationEntries"]:
        if entry["name"] == stack.location_name:
            loaded = entry["locationOrLoadError"]
            if loaded is None:
                return "location is still loading"
            if loaded["__typename"] == "PythonError":
                return loaded["message"] + loaded.get("stack", [""])[-1]
            return None
    return f"location {stack.location_name!r} is not in the workspace"


def run(stack: DagsterStack, run_id: str) -> dict:
    data = stack.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
    if data["__typename"] != "Run":
        raise StackError(f"runOrError({run_id}) returned {data}")
    return data


def wait_for_run(stack: DagsterStack, run_id: str, timeout: float) -> dict:
    """Poll until the run reaches a terminal status; return the run."""
    deadline = time.monotonic() + timeout
    current = run(stack, run_id)
    while current["status"] not in TERMINAL_STATUSES:
        if time.monotonic() > deadline:
            raise StackError(
                f"run {run_id} still {current['status']} after {timeout:.0f}s\n" + stack.diagnostics()
            )
        time.sleep(1.0)
        current = run(stack, run_id)
    return current


def wait_for_status(stack: DagsterStack, run_id: str, statuses: set[str], timeout: float) -> dict:
    """Poll until the run's status is one of `statuses`; return the run."""
    deadline = time.monotonic() + timeout
    current = run(stack, run_id)
    while current["status"] not in statuses:
        if time.monotonic() > deadline:
            raise StackError(
                f"run {run_id} still {current['status']} after {timeout:.0f}s\n" + stack.diagnostics()
            )
        time.sleep(0.5)
        current = run(stack, run_id)
    return current


def held_in_queue(stack: DagsterStack, run_id: str, behind: str, for_seconds: float) -> bool:
    """True when `run_id` stayed QUEUED for `for_seconds` while `behind` was STARTED the whole time.

    False when `behind` finished before that could be seen (nothing is proven either way). Raises when
    `run_id` left the queue while `behind` was still in progress: the limit did not hold.
    """
    start = time.monotonic()
    while True:
        waiting = run(stack, run_id)["status"]
        ahead = run(stack, behind)["status"]
        if ahead != "STARTED":
            return False
        if waiting != "QUEUED":
            raise StackError(
                f"run {run_id} went {waiting} while {behind} was still STARTED: the queue limit did not hold\n"
                + stack.diagnostics()
            )
        if time.monotonic() - start >= for_seconds:
            return True
        time.sleep(0.5)


def run_events(stack: DagsterStack, run_id: str) -> list[dict]:
    data = stack.graphql(RUN_EVENTS_QUERY, {"runId": run_id})["logsForRun"]
    if data["__typename"] != "EventConnection":
        raise StackError(f"logsForRun({run_id}) returned {data}")
    return data["events"]


def failure_messages(stack: DagsterStack, run_id: str) -> str:
    """The run's error-level event messages, for an assertion message."""
    return "\n".join(
        e.get("message") or "" for e in run_events(stack, run_id) if e.get("level") in ("ERROR", "CRITICAL")
    )


def instigators(stack: DagsterStack) -> tuple[dict[str, dict], dict[str, dict]]:
    """Schedules and sensors of the repository, by name."""
    data = stack.graphql(INSTIGATORS_QUERY, {"repo": repository_selector(stack)})
    schedules, sensors = data["schedulesOrError"], data["sensorsOrError"]
    if schedules["__typename"] != "Schedules" or sensors["__typename"] != "Sensors":
        raise StackError(f"schedules/sensors query failed: {schedules} {sensors}")
    return (
        {s["name"]: s for s in schedules["results"]},
        {s["name"]: s for s in sensors["results"]},
    )


def pool_holders(stack: DagsterStack, pool: str) -> set[str]:
    """The run ids holding a slot of `pool` right now."""
    info = stack.graphql(POOL_QUERY, {"key": pool})["instance"]["concurrencyLimit"]
    return {slot["runId"] for slot in info["claimedSlots"]}


def wait_for_pool_holder(stack: DagsterStack, pool: str, run_id: str, timeout: float) -> None:
    """Poll until `run_id` holds a slot of `pool` (its step in the pool is running)."""
    deadline = time.monotonic() + timeout
    while run_id not in pool_holders(stack, pool):
        if time.monotonic() > deadline or run(stack, run_id)["status"] in TERMINAL_STATUSES:
            raise StackError(f"run {run_id} never held a {pool} slot\n" + stack.diagnostics())
        time.sleep(0.5)
