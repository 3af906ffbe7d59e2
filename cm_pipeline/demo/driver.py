"""The demo driven from a script, as a person drives it from a terminal: started as a foreground job (a
process group of its own), its console lines read as they come, Ctrl-C sent to the group.

docs/screenshots.py and the demo's end-to-end test use it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

from cm_pipeline.project import REPO_ROOT


class DemoProcess:
    """`python -m cm_pipeline.demo ARGS`, its console lines with the seconds since it started."""

    def __init__(self, env: dict[str, str], args: list[str]) -> None:
        self.began = time.monotonic()
        self.timed_lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cm_pipeline.demo", *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a process group, as a terminal's foreground job has
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.timed_lines.append((time.monotonic() - self.began, line.rstrip("\n")))

    @property
    def lines(self) -> list[str]:
        return [line for _, line in self.timed_lines]

    def wait_for(self, pattern: str, timeout: float) -> tuple[float, re.Match]:
        """(seconds since start, match) of the first console line matching `pattern`; AssertionError with
        every line so far if none comes within `timeout` seconds or the demo exits."""
        deadline = time.monotonic() + timeout
        while True:
            for at, line in list(self.timed_lines):
                match = re.search(pattern, line)
                if match:
                    return at, match
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"no console line matching {pattern!r}:\n" + "\n".join(self.lines))
            time.sleep(0.5)

    def ctrl_c(self, timeout: float = 60.0) -> float:
        """SIGINT to the process group, as Ctrl-C in a terminal; the seconds until the demo exited."""
        began = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout)
        finally:
            self.kill()
        self._reader.join(5)
        return time.monotonic() - began

    def kill(self) -> None:
        """SIGKILL the group if the demo is still running (a test's or script's last resort)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
