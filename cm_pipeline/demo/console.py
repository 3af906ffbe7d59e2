"""What the demo prints: a few lines a person watches on the console, everything in a log file.

The console gets the demo's own lines (URLs, one line per run start and end, the stop). The log file gets
those too, plus every line every Dagster process writes (webserver, daemon, code server, run workers,
dbt). `--verbose` copies the log to the console as well.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import IO

KEEP_LOGS = 10


def new_log_path(log_dir: Path) -> Path:
    """A fresh log file for this start under `log_dir`; only the last KEEP_LOGS are kept."""
    log_dir.mkdir(parents=True, exist_ok=True)
    earlier = sorted(log_dir.glob("demo-*.log"))
    for old in earlier[: max(0, len(earlier) - (KEEP_LOGS - 1))]:
        old.unlink(missing_ok=True)
    return log_dir / time.strftime("demo-%Y%m%d-%H%M%S.log")


class Console:
    """The demo's console lines and its log file, safe to use from several threads."""

    def __init__(self, log_path: Path, verbose: bool = False, stream: IO[str] | None = None) -> None:
        self.log_path = log_path
        self.verbose = verbose
        self._stream = stream or sys.stdout
        self._log = open(log_path, "a", encoding="utf-8", errors="replace", buffering=1)
        self._lock = threading.Lock()

    def say(self, message: str) -> None:
        """One line for the person watching (and the log)."""
        line = f"{time.strftime('%H:%M:%S')}  {message}"
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()
            if not self._log.closed:
                self._log.write(f"[demo] {line}\n")

    def record(self, line: str) -> None:
        """A line of a Dagster process: to the log, and to the console only with --verbose."""
        with self._lock:
            if not self._log.closed:
                self._log.write(line)
            if self.verbose:
                self._stream.write(line)
                self._stream.flush()

    def pump(self, pipe: IO[str]) -> threading.Thread:
        """Copy `pipe` line by line into record() until it closes, in a daemon thread."""

        def copy() -> None:
            for line in pipe:
                self.record(line if line.endswith("\n") else line + "\n")

        thread = threading.Thread(target=copy, name="demo-log", daemon=True)
        thread.start()
        return thread

    def fileno(self) -> int:
        """The log file's descriptor, for a child process's output (appended, as the file is)."""
        return self._log.fileno()

    def close(self) -> None:
        with self._lock:
            self._log.close()
