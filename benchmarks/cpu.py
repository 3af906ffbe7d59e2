"""CPU seconds a benchmarked run took, per side: this process, the sandbox, Postgres (Linux /proc only).

Postgres's share is every backend's CPU time in the interval: the live backends' own times, plus what the
postmaster collected from the backends that exited (its cutime and cstime count each child it reaped).
So a backend that opened and closed during the run counts too. The benchmark's own connections do the
same work as the run's, and the other sessions on the same server (if any) are counted with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 onwards), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _own(fields: list[str] | None) -> float:
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _reaped(fields: list[str] | None) -> float:
    return 0.0 if fields is None else (int(fields[13]) + int(fields[14])) / _TICK  # cutime, cstime


def _children(parent: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := _stat(int(name))) is not None and int(fields[1]) == parent:
            found.append(int(name))
    return found


@dataclass(frozen=True)
class CpuTimes:
    ours: float
    sandbox: float
    postgres: float | None  # None: the server is not a process of this machine


class CpuMeter:
    """`sample()` before and after a run; `CpuMeter.spent(a, b)` is what it cost each side."""

    def __init__(self, sandbox_pid: int | None, postmaster_pid: int | None):
        self.sandbox_pid, self.postmaster_pid = sandbox_pid, postmaster_pid

    def sample(self) -> CpuTimes:
        ours = _own(_stat(os.getpid()))
        sandbox = _own(_stat(self.sandbox_pid)) if self.sandbox_pid else 0.0
        postgres = None
        if self.postmaster_pid is not None and (master := _stat(self.postmaster_pid)) is not None:
            postgres = _reaped(master) + sum(_own(_stat(pid)) for pid in _children(self.postmaster_pid))
        return CpuTimes(ours, sandbox, postgres)

    @staticmethod
    def spent(before: CpuTimes, after: CpuTimes) -> CpuTimes:
        postgres = None
        if before.postgres is not None and after.postgres is not None:
            postgres = after.postgres - before.postgres
        return CpuTimes(after.ours - before.ours, after.sandbox - before.sandbox, postgres)


def postmaster_of(conn) -> int | None:
    """The pid of the postmaster behind a DB-API connection, if that server runs on this machine."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    fields = _stat(backend)
    if fields is None:  # another machine (or another PID namespace)
        return None
    return int(fields[1])


def _total(spent: CpuTimes) -> float:
    return spent.ours + spent.sandbox + (spent.postgres or 0.0)


def describe(spent: CpuTimes, seconds: float) -> str:
    """'12.7 CPU s = 88% of 2 cores (this process 4.2, Postgres 8.0, sandbox 0.5)'."""
    postgres = "not measured (another machine)" if spent.postgres is None else f"{spent.postgres:.1f}"
    parts = f"this process {spent.ours:.1f}, Postgres {postgres}, sandbox {spent.sandbox:.1f}"
    total = _total(spent)
    return f"{total:.1f} CPU s = {total / (seconds * CORES):.0%} of {CORES} cores ({parts})"


def least_seconds(spent: CpuTimes) -> float | None:
    """The fewest seconds the work could take on this machine: its CPU seconds over every core at once
    (None when Postgres's share was not measured)."""
    return None if spent.postgres is None else _total(spent) / CORES
