"""The demo's warehouse: WAREHOUSE_URL if set, else the embedded Postgres under .cm_pipeline/pgdata.

The demo starts the embedded server and leaves it running when it stops, so `make psql` opens the data
right after a Ctrl-C and the next `make demo` starts faster. `make stop` stops it and keeps the data;
`make clean` stops it and deletes everything.

  python -m cm_pipeline.demo.warehouse psql   psql on the demo warehouse (starting the server if needed)
  python -m cm_pipeline.demo.warehouse stop   stop the embedded server, keep its data
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from cm_pipeline.project import state_dir
from cm_pipeline.warehouse.connection import (
    EMBEDDED_DATABASE,
    embedded_server,
    ensure_database,
    libpq_params,
    normalize_url,
    server_url,
    stop_embedded,
)


def demo_warehouse_url(environ: Mapping[str, str] | None = None) -> str:
    """WAREHOUSE_URL, else the embedded server's database, started if needed and left running."""
    environ = os.environ if environ is None else environ
    if environ.get("WAREHOUSE_URL"):
        return normalize_url(environ["WAREHOUSE_URL"])
    server = embedded_server(cleanup_mode=None)  # None: this process's exit does not stop the server
    ensure_database(server_url(server, "postgres"), EMBEDDED_DATABASE)
    return server_url(server, EMBEDDED_DATABASE)


def psql_executable() -> str:
    """psql from PATH, else the one pgserver ships beside its Postgres."""
    found = shutil.which("psql")
    if found:
        return found
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / "psql")


def psql_argv(url: str) -> tuple[list[str], dict[str, str]]:
    """The psql command line for `url` and the variables it needs (the password, never on the line)."""
    params = libpq_params(url)
    argv = [
        psql_executable(),
        "-h",
        params["host"],
        "-p",
        params["port"],
        "-U",
        params["user"],
        params["dbname"],
    ]
    env = {"PGPASSWORD": params["password"]} if params["password"] else {}
    return argv, env


def psql_hint(url: str) -> str:
    """The command a person types to open `url` (no password in it)."""
    params = libpq_params(url)
    return f"psql -h {params['host']} -p {params['port']} -U {params['user']} {params['dbname']}"


def forget_dead_handles(data_dir: Path) -> None:
    """Drop the pids of exited processes from pgserver's list of the server's users.

    pgserver stops the server only when the last process in .handle_pids.json lets go, and a process
    that ended without its exit handlers (killed, or replaced by exec) stays listed for ever.
    """
    import psutil

    path = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def stop(data_dir: Path) -> str:
    """Stop the embedded server under `data_dir`, keeping its data; say what happened."""
    if not (data_dir / "postmaster.pid").exists():  # attaching to a stopped server would start it
        return f"the embedded Postgres ({data_dir}) is not running"
    forget_dead_handles(data_dir)
    stop_embedded(data_dir)
    if (data_dir / "postmaster.pid").exists():
        return f"the embedded Postgres ({data_dir}) is still in use by another process; not stopped"
    return f"embedded Postgres stopped; its data stays in {data_dir}"


def main(argv: list[str] | None = None) -> int:
    """`psql` or `stop` (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["psql"]:
        command, extra = psql_argv(demo_warehouse_url())
        # A child, not exec: this process must exit normally to let go of the server (see above).
        return subprocess.run(command, env={**os.environ, **extra}).returncode
    if args == ["stop"]:
        print(stop(state_dir() / "pgdata"))
        return 0
    print("usage: python -m cm_pipeline.demo.warehouse psql|stop", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
