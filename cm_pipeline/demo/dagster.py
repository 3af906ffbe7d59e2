"""`dg dev` (webserver, daemon, code server and the run workers it launches) in a process group of its own.

Its own session keeps the terminal's Ctrl-C away from it: the demo decides when Dagster stops (after its
runs were told to stop, before the sandbox). Stopping sends SIGTERM, which `dagster dev` turns into its
orderly shutdown; whatever of its group is still there after the grace period is killed. If the demo
itself is killed, `dg dev` gets SIGTERM from the kernel (the sandbox watches its parent likewise).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cm_pipeline.demo.console import Console
from cm_pipeline.project import REPO_ROOT

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the demo dies, even killed (Linux prctl PDEATHSIG), so a
    demo killed with SIGKILL does not leave Dagster running on its own."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the demo's own stop still ends it
        pass


def console_script(name: str) -> str:
    """The console script installed beside this interpreter (the project's virtualenv)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def dev_command(port: int) -> list[str]:
    """`dg dev` on 127.0.0.1:`port`, for the project [tool.dg] in pyproject.toml describes."""
    return [console_script("dg"), "dev", "--host", "127.0.0.1", "--port", str(port)]


class DagsterDev:
    """The `dg dev` process: its output goes to the console's log."""

    def __init__(self, port: int, env: dict[str, str], console: Console) -> None:
        self.port = port
        self.env = env
        self.console = console
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            dev_command(self.port),
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # the terminal's Ctrl-C reaches the demo only
            preexec_fn=_die_with_parent,
        )
        self.console.pump(self.process.stdout)

    def exited(self) -> int | None:
        """The exit code if `dg dev` has ended, else None."""
        return None if self.process is None else self.process.poll()

    def stop(self, grace: float) -> bool:
        """SIGTERM to `dg dev`, then to its whole group, each for half of `grace` seconds, then SIGKILL to
        what is left of the group; True if nothing needed SIGKILL."""
        proc = self.process
        if proc is None:
            return True
        clean = True
        # SIGTERM to `dg dev` stops the webserver and the daemon in a second or two; its code server then
        # takes its time, so after half the grace every process of the group gets SIGTERM itself.
        for send in (proc.send_signal, lambda sig: os.killpg(proc.pid, sig)):
            if proc.poll() is not None:
                break
            try:
                send(signal.SIGTERM)
                proc.wait(grace / 2)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            clean = proc.poll() is not None
        clean = self._kill_group(proc.pid) and clean
        if proc.poll() is None:
            proc.wait(5)
        return clean

    @staticmethod
    def _kill_group(pgid: int) -> bool:
        """SIGKILL any process still in the group (e.g. a run worker orphaned by its code server)."""
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return True
        time.sleep(0.5)  # children that are exiting on their own
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return True
        return False
