"""The demo's warehouse: WAREHOUSE_URL if set, else the embedded Postgres under .cm_pipeline/pgdata.

The demo starts the embedded server and leaves it running when it stops, so `make psql` opens the data
right after a Ctrl-C and the next `make demo` starts faster. `make stop` stops it and keeps the data;
`make clean` stops it and deletes everything.

  python -m cm_pipeline.demo.warehouse psql   psql on the demo warehouse (starting the server if needed)
  python -m cm_pipeline.demo.warehouse stop   stop the embedded server, keep its data
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections.abc import Mapping

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
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime folder (used only when pgdata's path is too long for a
        # socket); platformdirs warns RuntimeDirWarning when XDG_RUNTIME_DIR is unset (root shells,
        # containers) and falls back to /tmp/runtime-UID, which serves. Not a problem of the demo's.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
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


def main(argv: list[str] | None = None) -> int:
    """`psql` or `stop` (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["psql"]:
        command, extra = psql_argv(demo_warehouse_url())
        os.execvpe(command[0], command, {**os.environ, **extra})
    if args == ["stop"]:
        data_dir = state_dir() / "pgdata"
        if not (data_dir / "postmaster.pid").exists():  # attaching to a stopped server would start it
            print(f"the embedded Postgres ({data_dir}) is not running")
            return 0
        stop_embedded(data_dir)
        print(f"embedded Postgres stopped; its data stays in {data_dir}")
        return 0
    print("usage: python -m cm_pipeline.demo.warehouse psql|stop", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
