"""The demo's order of things.

Start: the warehouse (embedded Postgres, left running at the end), the sandbox ChartMogul API (its state
file beside the warehouse), then `dg dev`; once the UI answers: its URLs, the push sensor turned on and
one warehouse refresh launched through the queue. Then one console line per run start and end.

Stop (Ctrl-C or SIGTERM, in any phase): the runs in flight are told to stop and given a few seconds, then
Dagster stops, then the sandbox, so a push being stopped still reaches the API for the calls it has in
flight, and the rows it did not reach stay as they were, to be pushed next time.

Same state on every start: the sandbox keeps its data in a state file beside the warehouse
(.cm_pipeline/sandbox/), so a second start finds the API as the first one left it, and the warehouse
agrees with it: the refresh changes nothing and the pushes find nothing to send. Resetting both on each
start would also be consistent, but would throw away the warehouse a person has been querying and redo
the first load and the six-minute first push every time. `make clean` resets both together.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cm_pipeline.demo.console import Console, new_log_path
from cm_pipeline.demo.dagster import DagsterDev
from cm_pipeline.demo.instance import cancel_leftover_runs, write_instance_config
from cm_pipeline.demo.ports import SANDBOX, UI, PortError, check_free, ports_from
from cm_pipeline.demo.runs import RunWatcher
from cm_pipeline.demo.ui import IN_FLIGHT, DagsterUI, Run
from cm_pipeline.project import state_dir

DEMO_API_KEY = "demo-sandbox-key"
SEED = 42
REFRESH_JOB = "warehouse_refresh_job"
PUSH_SENSOR = "reverse_etl_sensor"
STARTUP_SECONDS = 180.0
# The stop's budget (under 15 s in all): runs get STOP_RUNS_SECONDS to end, Dagster STOP_DAGSTER_SECONDS.
STOP_RUNS_SECONDS = 6.0
STOP_DAGSTER_SECONDS = 6.0
# Each webserver call while stopping: a webserver slow to answer cannot stretch the stop past its budget.
STOP_CALL_SECONDS = 3.0
# No run for this long (more than the push sensor's 30 s interval) after the last one ended: say so once.
IDLE_SECONDS = 45.0


class StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived: leave what is being done and stop in order."""


class DemoError(RuntimeError):
    """Something the demo needs did not come up; the message says what, the log says why."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cm_pipeline.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000, help="seeded sandbox customers (5000)")
    parser.add_argument("--ui-port", type=int, default=None, help=f"default ${UI.variable} or {UI.default}")
    parser.add_argument(
        "--sandbox-port", type=int, default=None, help=f"default ${SANDBOX.variable} or {SANDBOX.default}"
    )
    parser.add_argument("--verbose", action="store_true", help="copy every Dagster log line to the console")
    return parser.parse_args(argv)


def demo_environment(base_url: str, warehouse_url: str, dagster_home: Path) -> dict[str, str]:
    """Environment for every Dagster process of the demo: sandbox API, the warehouse, local instance."""
    env = dict(os.environ)
    env.update(
        {
            "CHARTMOGUL_API_KEY": env.get("CHARTMOGUL_API_KEY") or DEMO_API_KEY,
            "CHARTMOGUL_BASE_URL": base_url,
            "WAREHOUSE_URL": warehouse_url,
            "DAGSTER_HOME": str(dagster_home),
            "PYTHONUNBUFFERED": "1",  # log lines reach the log file as they are written
        }
    )
    return env


def sandbox_state_file(state: Path, customers: int) -> Path:
    """The sandbox's state file for this seed and size, beside the warehouse's data."""
    return state / "sandbox" / f"seed{SEED}-{customers}.jsonl"


class Demo:
    """Starts and stops the demo's processes in order; see the module docstring."""

    def __init__(self, args: argparse.Namespace, ports: dict, console: Console) -> None:
        self.args = args
        self.ports = ports
        self.console = console
        self.state = state_dir()
        self.dagster_home = self.state / "dagster_home"
        self.ui = DagsterUI(ports[UI])
        self.stop_requested = threading.Event()
        self.phase = "starting"
        self.sandbox = None
        self.dagster: DagsterDev | None = None
        self.warehouse_url: str | None = None
        self.watcher: RunWatcher | None = None

    # -- signals -----------------------------------------------------------------------------------
    def request_stop(self, signum: int, _frame) -> None:
        if not self.stop_requested.is_set():
            self.stop_requested.set()
            raise StopRequested(signal.Signals(signum).name)

    def _checkpoint(self) -> None:
        if self.stop_requested.is_set():
            raise StopRequested("stop requested")

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ready` until it is true; DemoError after `timeout` or if Dagster exits."""
        deadline = time.monotonic() + timeout
        while not ready():
            self._checkpoint()
            if self.dagster is not None and self.dagster.exited() is not None:
                raise DemoError(f"`dg dev` exited with {self.dagster.exited()} while waiting for {what}")
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.5)

    # -- start -------------------------------------------------------------------------------------
    def start(self) -> None:
        from cm_pipeline.demo.warehouse import demo_warehouse_url, psql_hint
        from cm_pipeline.sandbox import SandboxProcess

        say = self.console.say
        say(f"cm_pipeline demo: full logs in {self.console.log_path} (--verbose shows them here)")
        self.phase = "warehouse"
        self.warehouse_url = demo_warehouse_url()
        say(f"warehouse: {psql_hint(self.warehouse_url)}  (or: make psql)")
        self._checkpoint()

        self.phase = "sandbox"
        state_file = sandbox_state_file(self.state, self.args.customers)
        state_file.parent.mkdir(parents=True, exist_ok=True)
        kept = "kept from the last start" if state_file.exists() else "seeded"
        self.sandbox = SandboxProcess(
            customers=self.args.customers,
            seed=SEED,
            port=self.ports[SANDBOX],
            api_key=None,
            state_file=state_file,
            own_process_group=True,
            stderr=self.console.fileno(),
        )
        self.sandbox.start()  # held before it starts: a stop in the middle still ends it
        say(f"sandbox ChartMogul API: {self.sandbox.base_url} ({self.args.customers:,} customers, {kept})")
        self._checkpoint()

        self.phase = "dagster"
        for run_id in cancel_leftover_runs(self.dagster_home):
            self.console.record(f"[demo] run {run_id} of an earlier demo was left in flight: canceled\n")
        write_instance_config(self.dagster_home)
        env = demo_environment(self.sandbox.base_url, self.warehouse_url, self.dagster_home)
        self.dagster = DagsterDev(self.ports[UI], env, self.console)
        self.dagster.start()
        say("starting Dagster (about a minute)...")
        self.wait_until(self.ui.answers, STARTUP_SECONDS, "the Dagster UI to answer")
        self.wait_until(lambda: self._location_loaded(), STARTUP_SECONDS, "the code location to load")
        sandbox_root = self.sandbox.base_url.rsplit("/v1", 1)[0]
        say(f"Dagster UI: {self.ui.url}   sandbox counters: {sandbox_root}/_sandbox/stats")

        self.phase = "running"
        self.ui.start_sensor(PUSH_SENSOR)  # off by default: nothing is pushed until someone turns it on
        self.ui.launch(REFRESH_JOB)
        say("refresh launched; the push sensor launches the pushes after it. Ctrl-C stops everything")

    def _location_loaded(self) -> bool:
        state = self.ui.location_state()
        if state not in ("loaded", "loading"):
            raise DemoError(f"the code location did not load: {state.splitlines()[0] if state else state}")
        return state == "loaded"

    # -- watch -------------------------------------------------------------------------------------
    def push_counts(self, run: Run) -> dict[str, int] | None:
        """push_log outcomes of a push run, or None for another job."""
        from cm_pipeline.push.kinds import KINDS
        from cm_pipeline.push.push_log import outcome_counts
        from cm_pipeline.warehouse.connection import make_engine

        kind = next((k.name for k in KINDS.values() if k.job_name == run.job), None)
        if kind is None:
            return None
        engine = make_engine(self.warehouse_url)
        try:
            return outcome_counts(engine, run.run_id, kind)
        finally:
            engine.dispose()

    def watch(self, started_at: float) -> None:
        """Print run lines until a stop is requested (or Dagster exits)."""
        self.watcher = RunWatcher(self.ui, started_at - 1, self.push_counts, REFRESH_JOB)
        quiet_since, idle_said = time.monotonic(), False
        while True:
            self._checkpoint()
            if self.dagster.exited() is not None:
                raise DemoError(f"`dg dev` exited with {self.dagster.exited()}")
            if self._print_run_lines() or self.ui.runs(statuses=IN_FLIGHT):
                quiet_since, idle_said = time.monotonic(), False
            elif not idle_said and time.monotonic() - quiet_since > IDLE_SECONDS:
                self.console.say("idle: every run has ended; the schedule refreshes hourly. Ctrl-C stops")
                idle_said = True
            time.sleep(1.0)

    def _print_run_lines(self) -> int:
        lines = self.watcher.poll() if self.watcher is not None else []
        for line in lines:
            self.console.say(line)
        return len(lines)

    # -- stop --------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Runs, then Dagster, then the sandbox; each step bounded, so the whole stop takes under 15 s."""
        began = time.monotonic()
        say = self.console.say
        if self.dagster is not None and self.dagster.exited() is None:
            self.ui.timeout = STOP_CALL_SECONDS
            self._stop_runs()
            say("stopping Dagster...")
            if not self.dagster.stop(STOP_DAGSTER_SECONDS):
                self.console.record("[demo] some Dagster processes needed SIGKILL\n")
        if self.sandbox is not None:
            say("stopping the sandbox...")
            self.sandbox.stop()
        say(
            f"stopped in {time.monotonic() - began:.1f} s. The warehouse is still up: make psql opens it, "
            "make stop stops it"
        )

    def _stop_runs(self) -> None:
        try:
            runs = self.ui.runs(statuses=IN_FLIGHT)
        except Exception as exc:  # the UI is not up yet (stopped while starting): nothing was launched
            self.console.record(f"[demo] listing runs: {type(exc).__name__}: {exc}\n")
            return
        if not runs:
            return
        self.console.say(f"stopping {len(runs)} run(s): {', '.join(sorted({r.job for r in runs}))}...")
        deadline = time.monotonic() + STOP_RUNS_SECONDS
        try:
            self.ui.terminate([r.run_id for r in runs])
            while time.monotonic() < deadline and self.ui.runs(statuses=IN_FLIGHT):
                time.sleep(0.5)
            self._print_run_lines()  # how the stopped runs ended, with what they did
        except Exception as exc:
            self.console.record(f"[demo] stopping runs: {type(exc).__name__}: {exc}\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        ports = ports_from(os.environ, args.ui_port, args.sandbox_port)
        check_free(ports)
    except PortError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    console = Console(new_log_path(state_dir() / "logs"), verbose=args.verbose)
    demo = Demo(args, ports, console)
    previous = {sig: signal.signal(sig, demo.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        started_at = time.time()
        demo.start()
        demo.watch(started_at)
    except StopRequested:
        console.say(f"stop requested while {demo.phase}")
    except DemoError as exc:
        console.say(f"error: {exc} (see {console.log_path})")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the stop short
        try:
            demo.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            console.close()
    return code
