"""The demo talks to Dagster the way a person's browser does: through the webserver's GraphQL API."""

from __future__ import annotations

from dataclasses import dataclass

import requests

LOCATION = "cm_pipeline"  # [tool.dg.project] code_location_name in pyproject.toml
REPOSITORY = "__repository__"
IN_FLIGHT = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]
ENDED = {"SUCCESS", "FAILURE", "CANCELED"}

LOCATION_QUERY = """
query { workspaceOrError { __typename ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
RUNS_QUERY = """
query Runs($statuses: [RunStatus!], $limit: Int) {
  runsOrError(filter: {statuses: $statuses}, limit: $limit) {
    __typename ... on Runs { results { runId jobName status startTime endTime } }
  }
}
"""
MATERIALIZATIONS_QUERY = """
query Mats($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { assetMaterializations {
    assetKey { path } metadataEntries { label
      ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue } } } } }
}
"""
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename ... on Sensor { sensorState { status } } ... on PythonError { message }
  }
}
"""
TERMINATE = """
mutation Terminate($runIds: [String!]!) {
  terminateRuns(runIds: $runIds, terminatePolicy: SAFE_TERMINATE) { __typename }
}
"""


class UIError(RuntimeError):
    """The webserver answered with an error."""


@dataclass(frozen=True)
class Run:
    run_id: str
    job: str
    status: str
    start: float | None
    end: float | None


class DagsterUI:
    """The GraphQL API of the webserver on 127.0.0.1:`port`."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.timeout = timeout

    def answers(self) -> bool:
        """True once the webserver serves requests."""
        try:
            return requests.get(f"{self.url}/server_info", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def query(self, document: str, variables: dict | None = None) -> dict:
        response = requests.post(
            f"{self.url}/graphql",
            json={"query": document, "variables": variables or {}},
            timeout=self.timeout,
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise UIError(str(body["errors"])[:500])
        return body["data"]

    def location_state(self) -> str:
        """'loaded', 'loading', or the load error's message."""
        data = self.query(LOCATION_QUERY)["workspaceOrError"]
        for entry in data.get("locationEntries") or []:
            if entry["name"] == LOCATION:
                loaded = entry["locationOrLoadError"]
                if loaded is None:
                    return "loading"
                return loaded.get("message", "") if loaded["__typename"] == "PythonError" else "loaded"
        return "loading"

    def runs(self, statuses: list[str] | None = None, limit: int = 50) -> list[Run]:
        """The latest runs (newest first), optionally only those in `statuses`."""
        data = self.query(RUNS_QUERY, {"statuses": statuses, "limit": limit})["runsOrError"]
        return [
            Run(r["runId"], r["jobName"], r["status"], r.get("startTime"), r.get("endTime"))
            for r in data.get("results") or []
        ]

    def materialization_numbers(self, run_id: str, asset: str) -> dict[str, float]:
        """The numeric metadata of `asset`'s materialization in `run_id` ({} if none)."""
        data = self.query(MATERIALIZATIONS_QUERY, {"runId": run_id})["runOrError"]
        for mat in data.get("assetMaterializations") or []:
            if mat["assetKey"]["path"] == [asset]:
                return {
                    e["label"]: e.get("intValue", e.get("floatValue"))
                    for e in mat["metadataEntries"]
                    if e.get("intValue", e.get("floatValue")) is not None
                }
        return {}

    def launch(self, job: str, run_config: dict | None = None) -> str:
        """Launch `job` (it goes through the queue like any run) and return its run id."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job}
        params = {"selector": selector, "runConfigData": run_config or {}}
        result = self.query(LAUNCH, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise UIError(f"launching {job}: {result.get('message') or result}")
        return result["run"]["runId"]

    def start_sensor(self, name: str) -> None:
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}
        result = self.query(START_SENSOR, {"selector": selector})["startSensor"]
        if result["__typename"] != "Sensor":
            raise UIError(f"starting {name}: {result.get('message') or result}")

    def terminate(self, run_ids: list[str]) -> None:
        """Tell these runs to stop: a queued run is canceled, a running one is interrupted."""
        if run_ids:
            self.query(TERMINATE, {"runIds": run_ids})
