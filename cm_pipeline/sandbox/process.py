"""SandboxProcess: the sandbox in a child process (`python -m cm_pipeline.sandbox`), same API as SandboxServer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

from cm_pipeline.sandbox.control import SandboxControl
from cm_pipeline.sandbox.faults import KNOB_NAMES, Knobs, validated_knobs
from cm_pipeline.sandbox.seed import shape

READY_PREFIX = "SANDBOX_READY "


def cli_args(
    customers: int,
    seed: int,
    api_key: str | None,
    port: int,
    host: str,
    knobs: dict,
    account: str = "uniform",
    state_file: str | os.PathLike | None = None,
) -> list[str]:
    """The `python -m cm_pipeline.sandbox` arguments of these settings (knobs validated first)."""
    args = ["--port", str(port), "--customers", str(customers), "--seed", str(seed), "--host", host]
    if api_key is not None:
        args += ["--api-key", api_key]
    k = validated_knobs(Knobs(), knobs)
    flags = {
        "latency_ms": "--latency-ms", "rate_limit_rps": "--rate-limit", "retry_after": "--retry-after",
        "max_connections": "--max-connections", "fault_rate": "--fault-rate", "fault_kinds": "--fault-kinds",
        "fault_phase": "--fault-phase", "fault_methods": "--fault-methods", "fault_seed": "--fault-seed",
        "pagination_fault": "--pagination-fault", "legacy_page_fields": "--legacy-page-fields",
    }  # fmt: skip
    for name in KNOB_NAMES:
        if name in knobs and knobs[name] is not None:
            value = getattr(k, name)
            if isinstance(value, bool):
                value = "on" if value else "off"
            args += [flags[name], ",".join(value) if isinstance(value, list) else str(value)]
    args += ["--account", shape(account).name]
    if state_file is not None:
        args += ["--state-file", os.fspath(state_file)]
    return args


class SandboxProcess:
    """Runs the sandbox as a subprocess on a free port; start() returns once /_sandbox/health answers.
    Takes SandboxServer's arguments (account, state_file, knobs); a state file survives a SIGKILL.
    own_process_group: start it in a session of its own, so a terminal's Ctrl-C reaches only its owner,
    which stops it when it chooses (the demo stops it last, after the runs that call it).
    stderr: where its own messages go (a file or descriptor; default: this process's stderr)."""

    def __init__(
        self,
        customers: int = 100_000,
        seed: int = 1,
        api_key: str | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        startup_timeout: float = 180.0,
        account: str = "uniform",
        state_file: str | os.PathLike | None = None,
        own_process_group: bool = False,
        stderr: Any = None,
        **knobs: Any,
    ):
        self.customers = customers
        self.seed = seed
        self.account = account
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.own_process_group = own_process_group
        self.stderr = stderr
        self._args = cli_args(customers, seed, api_key, port, host, knobs, account, state_file)
        self._proc: subprocess.Popen | None = None
        self._drain: threading.Thread | None = None
        self._base_url: str | None = None

    def __repr__(self) -> str:
        return (
            f"SandboxProcess(customers={self.customers}, seed={self.seed}, account={self.account!r}, "
            f"port={self.port})"
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> SandboxProcess:
        if self._proc is not None:
            return self
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "cm_pipeline.sandbox", *self._args, "--parent-pid", str(os.getpid())],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=self.own_process_group,
            stderr=self.stderr,
        )
        line_box: list[str] = []
        reader = threading.Thread(target=lambda: line_box.append(self._proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        line = line_box[0].strip() if line_box else ""
        if not line.startswith(READY_PREFIX):
            code = self._proc.poll()
            self.stop()
            raise RuntimeError(f"sandbox process did not start (exit code {code}, first line {line!r})")
        self._base_url = line[len(READY_PREFIX) :]
        self.port = int(self._base_url.rsplit(":", 1)[1].split("/", 1)[0])
        deadline = time.monotonic() + 30
        while True:
            try:
                self.control.health()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)
        # Keep draining stdout so the child can never block on a full pipe.
        self._drain = threading.Thread(target=self._proc.stdout.read, daemon=True)
        self._drain.start()
        return self

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("sandbox process not started")
        return self._base_url

    @property
    def control(self) -> SandboxControl:
        return SandboxControl(self.base_url)

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._drain is not None:
            self._drain.join(timeout=5)  # EOF once the child is gone
            self._drain = None
        if proc.stdout:
            proc.stdout.close()

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
