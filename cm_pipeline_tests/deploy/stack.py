"""The production topology as local subprocesses: code server, webserver and daemon on docker/dagster.yaml.

Each process is started with subprocess.Popen (never through a shell: a Dagster process put in the
background by a shell ignores SIGTERM), writes to a log file of its own, and is stopped with SIGTERM
(SIGINT if that is not enough, SIGKILL only as a last resort, which `stop()` reports).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml
from sqlalchemy.engine import make_url

from cm_pipeline.project import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "docker"
DAGSTER_YAML = DOCKER_DIR / "dagster.yaml"
LOCATION_NAME = "cm_pipeline"
REPOSITORY_NAME = "__repository__"


class StackError(RuntimeError):
    """A process of the stack did not come up; the message carries the tails of the logs."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_tcp_postgres(postgres) -> None:
    """Skip, saying why, when the test Postgres has no TCP address (docker/dagster.yaml needs host:port)."""
    import pytest

    if not make_url(postgres.admin_url).host:
        pytest.skip(
            f"docker/dagster.yaml reaches Postgres over TCP (host/port); the test Postgres is the "
            f"{postgres.source} on a unix socket. Set TEST_WAREHOUSE_URL to a TCP server to run this test."
        )


def storage_env(url: str) -> dict[str, str]:
    """The DAGSTER_POSTGRES_* variables docker/dagster.yaml reads, for the database at `url` (TCP only)."""
    parsed = make_url(url)
    if not parsed.host:
        raise ValueError(
            f"Dagster's postgres_db storage needs a TCP host; {parsed.render_as_string()} has none"
        )
    return {
        "DAGSTER_POSTGRES_HOST": parsed.host,
        "DAGSTER_POSTGRES_PORT": str(parsed.port or 5432),
        "DAGSTER_POSTGRES_USER": parsed.username or "postgres",
        "DAGSTER_POSTGRES_PASSWORD": parsed.password or "",
        "DAGSTER_POSTGRES_DB": parsed.database or "",
    }


def console_script(name: str) -> str:
    """A console script of the interpreter running the tests (the project's virtualenv)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log_path: Path
    killed: bool = field(default=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class DagsterStack:
    """`dagster api grpc` + `dagster-webserver` + `dagster-daemon run`, sharing one DAGSTER_HOME."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        module: str = "cm_pipeline.definitions",
        location_name: str = LOCATION_NAME,
        dagster_yaml: Path = DAGSTER_YAML,
        overrides: dict | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.dagster_home = self.workdir / "dagster_home"
        self.module = module
        self.location_name = location_name
        self.dagster_yaml = dagster_yaml
        self.overrides = overrides or {}
        self.grpc_port = free_port()
        self.web_port = free_port()
        self.env = {**os.environ, **env, "DAGSTER_HOME": str(self.dagster_home)}
        self.services: list[Service] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> DagsterStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def workspace_path(self) -> Path:
        return self.dagster_home / "workspace.yaml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, timeout: float = 120.0) -> None:
        """Write DAGSTER_HOME (the shipped dagster.yaml, a gRPC workspace), then start the three processes."""
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.dagster_yaml, self.dagster_home / "dagster.yaml")
        if self.overrides:  # settings of a block replaced one by one; the rest of the file as shipped
            config = yaml.safe_load(self.dagster_yaml.read_text())
            for block, settings in self.overrides.items():
                config[block] = {**config.get(block, {}), **settings}
            (self.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.workspace_path.write_text(
            yaml.safe_dump(
                {
                    "load_from": [
                        {
                            "grpc_server": {
                                "host": "127.0.0.1",
                                "port": self.grpc_port,
                                "location_name": self.location_name,
                            }
                        }
                    ]
                }
            )
        )
        deadline = time.monotonic() + timeout
        grpc = self._spawn(
            "code_server",
            [
                console_script("dagster"),
                "api",
                "grpc",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.grpc_port),
                "--module-name",
                self.module,
                "--location-name",
                self.location_name,
            ],
        )
        self._wait(grpc, deadline, self._port_open, "gRPC port to open")
        web = self._spawn(
            "webserver",
            [
                console_script("dagster-webserver"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.web_port),
                "--workspace",
                str(self.workspace_path),
            ],
        )
        self._wait(web, deadline, self._server_info, "webserver to answer /server_info")
        self._spawn(
            "daemon", [console_script("dagster-daemon"), "run", "--workspace", str(self.workspace_path)]
        )

    def stop(self, timeout: float = 30.0) -> dict[str, int | None]:
        """Stop daemon, webserver, code server (in that order); return each exit code (None if killed)."""
        codes: dict[str, int | None] = {}
        for service in reversed(self.services):
            codes[service.name] = self._stop_one(service, timeout)
        return codes

    def _stop_one(self, service: Service, timeout: float) -> int | None:
        proc = service.process
        if proc.poll() is not None:
            return proc.returncode
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGINT, timeout / 2)):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                return proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        # Last resort: the whole process group this test started (the process and its own children).
        service.killed = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
        return None

    # -- helpers -----------------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> Service:
        log_path = self.workdir / f"{name}.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a last-resort kill reaches its children
        )
        log.close()  # the child holds its own descriptor
        service = Service(name, proc, log_path)
        self.services.append(service)
        return service

    def _wait(self, service: Service, deadline: float, ready, what: str) -> None:
        while time.monotonic() < deadline:
            if not service.alive():
                raise StackError(
                    f"{service.name} exited with {service.process.returncode} while waiting for {what}\n"
                    + self.diagnostics()
                )
            if ready():
                return
            time.sleep(0.5)
        raise StackError(f"timed out waiting for {what}\n" + self.diagnostics())

    def _port_open(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1):
                return True
        except OSError:
            return False

    def _server_info(self) -> bool:
        try:
            return requests.get(f"{self.url}/server_info", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def kill_run_worker(self) -> list[int]:
        """SIGKILL the one run worker in progress and every process under it, as the OS does on OOM.

        The code server starts each run worker as a `multiprocessing` spawn child (no run id on its
        command line), so the caller makes sure one run only is in progress. Returns the pids killed.
        """
        import psutil

        server = psutil.Process(self.service("code_server").process.pid)
        workers = [p for p in server.children() if "spawn_main" in " ".join(_cmdline(p))]
        if len(workers) != 1:
            raise StackError(f"expected one run worker under the code server, found {workers}")
        victims = [workers[0], *workers[0].children(recursive=True)]
        for proc in victims:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=10)
        return [p.pid for p in victims]

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def diagnostics(self, lines: int = 40) -> str:
        """The last lines of every process's log, for assertion messages."""
        parts = []
        for service in self.services:
            state = "running" if service.alive() else f"exited {service.process.returncode}"
            parts.append(f"----- {service.name} ({state}) {service.log_path} -----\n{service.tail(lines)}")
        return "\n".join(parts)

    # -- GraphQL -----------------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30.0) -> dict:
        """POST /graphql; return `data`, or raise with the errors and the logs."""
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise StackError(f"GraphQL errors: {body['errors']}\n" + self.diagnostics())
        return body["data"]


def _cmdline(proc) -> list[str]:
    import psutil

    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
