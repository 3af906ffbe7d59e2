"""The sandbox's state file (`--state-file PATH`): every change applied since seeding, as JSON lines, so
a second start with the same file, seed, size and account serves the state the first one left.

Line 1 names what was seeded: {"cm_sandbox_journal": 1, "seed": S, "customers": N, "account": A}. Each
later line is one change as it was applied, with its resulting document (never the request), so a replay
runs no validation and depends on no clock:
  {"put": {customer document}}   a create, PATCH, add-by-email, admin insert or modify (the whole customer)
  {"delete": "cus_..."}          an admin delete (and the absorbed side of an admin merge)
  {"define": {key: type}}        custom attribute keys the account did not have
  {"data_source": {record}}      a data source the admin door created
and "draws": the uuid generator's draws so far, so a restarted sandbox issues the uuids an uninterrupted
one would have (never one it issued before).
Each line is written and flushed to the OS as its change is applied, under the store's lock: a process
killed with SIGKILL loses nothing it answered (not fsynced: a power cut may lose the last changes).
A torn last line (a kill mid-write) is dropped and cut off the file; a bad line before the last one is an
error naming the line, as is a file written for another seed, size or account, and a file another
running sandbox holds (an exclusive flock while the sandbox runs).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from cm_pipeline.sandbox.responses import ApiFailure, dumps
from cm_pipeline.sandbox.store import Store

FORMAT = 1


def header(seed: int, customers: int, account: str) -> dict[str, Any]:
    return {"cm_sandbox_journal": FORMAT, "seed": seed, "customers": customers, "account": account}


def read(path: Path) -> tuple[list[dict], int]:
    """(records, length of the file's good part): the JSON lines of `path`, a torn last line left out."""
    raw = path.read_bytes() if path.exists() else b""
    records: list[dict] = []
    offset = 0
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        end = offset + len(line) + (1 if number < len(lines) else 0)
        if line.strip():
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                if any(rest.strip() for rest in lines[number:]):
                    raise ValueError(
                        f"state file {path}: line {number} is not a change record ({exc})"
                    ) from None
                break  # a torn last line: the kill came mid-write
            records.append(record)
        offset = end
    return records, offset


class StateFile:
    """The journal of one store: replays `path` into it, then appends each of its changes to `path`."""

    def __init__(self, path: str | os.PathLike, store: Store, seed: int, customers: int):
        self.path = Path(path)
        self._store = store
        self._file = self._open_locked()
        try:
            with store.lock:
                records, good = read(self.path)
                self.replayed = self._replay(records, header(seed, customers, store.account))
                self._file.truncate(good)
                self._file.seek(good)
                if good and not self._tail_is_newline(good):
                    self._file.write(b"\n")
                if not records:
                    self.append(header(seed, customers, store.account))
                store.journal = self.append
        except BaseException:
            self._file.close()
            raise

    def _open_locked(self) -> BinaryIO:
        """The file, open for writing and locked against a second sandbox (created when missing)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "r+b" if self.path.exists() else "wb")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise ValueError(f"state file {self.path} is in use by another running sandbox") from None
        return file

    def _replay(self, records: list[dict], expected: dict) -> int:
        """Apply the changes after the header to the store; how many there were."""
        if records and records[0] != expected:
            raise ValueError(
                f"state file {self.path} was written for {_settings(records[0])}, "
                f"not {_settings(expected)}: start with its settings or another file"
            )
        for number, record in enumerate(records[1:], start=2):
            try:
                self._store.apply(record)
            except (ApiFailure, KeyError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"state file {self.path}: change {number} cannot be applied ({exc})"
                ) from None
        return max(len(records) - 1, 0)

    def _tail_is_newline(self, good: int) -> bool:
        self._file.seek(good - 1)
        tail = self._file.read(1)
        self._file.seek(good)
        return tail == b"\n"

    def append(self, record: dict) -> None:
        self._file.write(dumps(record) + b"\n")
        self._file.flush()

    def close(self) -> None:
        """Stop journaling the store's changes and close the file."""
        with self._store.lock:
            if self._store.journal == self.append:
                self._store.journal = None
            if not self._file.closed:
                self._file.close()


def _settings(record: dict) -> str:
    if "cm_sandbox_journal" not in record:
        return "no sandbox (its first line is not a state file header)"
    return f"seed {record.get('seed')}, {record.get('customers')} customers, account {record.get('account')}"
