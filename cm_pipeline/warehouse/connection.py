"""Where the warehouse is: `WAREHOUSE_URL`, or an embedded Postgres under the project's state folder."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from cm_pipeline.project import state_dir

DRIVER = "postgresql+psycopg2"
EMBEDDED_DATABASE = "cm_pipeline"


class WarehouseConfigError(ValueError):
    """The warehouse URL is missing a part or names an unsupported database."""


def normalize_url(url: str) -> str:
    """Return `url` with the psycopg2 driver, or raise naming what is wrong with it."""
    try:
        parsed = make_url(url)
    except Exception:  # sqlalchemy's message repeats the URL, password included: keep it out
        raise WarehouseConfigError(
            "WAREHOUSE_URL is not a valid SQLAlchemy URL (expected postgresql+psycopg2://user:pass@host:5432/db)"
        ) from None
    if parsed.get_backend_name() != "postgresql":
        raise WarehouseConfigError(
            f"WAREHOUSE_URL must be a postgresql+psycopg2:// URL, got the {parsed.get_backend_name()!r} backend"
        )
    if parsed.drivername not in ("postgresql", DRIVER):
        raise WarehouseConfigError(
            f"WAREHOUSE_URL must use the psycopg2 driver (postgresql+psycopg2://), got {parsed.drivername!r}"
        )
    if not parsed.database:
        raise WarehouseConfigError(
            "WAREHOUSE_URL must name a database (postgresql+psycopg2://user@host:5432/dbname)"
        )
    return parsed.set(drivername=DRIVER).render_as_string(hide_password=False)


def redact(url: str) -> str:
    """The URL with its password masked, for logs and metadata."""
    return make_url(url).render_as_string(hide_password=True)


def embedded_server(data_dir: Path | None = None, cleanup_mode: str | None = None):
    """Start (or attach to) the embedded pgserver Postgres that keeps its data under `data_dir`."""
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime folder (used only when pgdata's path is too long for a
        # socket); platformdirs warns RuntimeDirWarning when XDG_RUNTIME_DIR is unset (root shells,
        # containers) and falls back to /tmp/runtime-UID, which serves: that one warning is ignored.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        try:
            import pgserver  # imported lazily: it is only needed when no WAREHOUSE_URL is given
        except ImportError:
            raise WarehouseConfigError(
                "WAREHOUSE_URL is not set and the embedded Postgres (the pgserver package) is not installed"
                " here (e.g. the user-code image): set WAREHOUSE_URL=postgresql+psycopg2://user:pass@host:5432/db"
            ) from None
        data_dir = Path(data_dir or state_dir() / "pgdata")
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        _ensure_admin_tools_on_path()
        return pgserver.get_server(data_dir, cleanup_mode=cleanup_mode)


def _ensure_admin_tools_on_path() -> None:
    """As root, pgserver runs Postgres as its own user and creates it with `useradd`, which lives in
    /usr/sbin: a minimal PATH (cron, CI, `env -i`) would make that first start fail."""
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("useradd") is None:
        extra = [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin") if os.path.isdir(d)]
        os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), *extra]).strip(os.pathsep)


def server_url(server, database: str) -> str:
    """A psycopg2 SQLAlchemy URL for `database` on a pgserver instance (unix socket)."""
    info = server.get_postmaster_info()
    return URL.create(
        DRIVER, username="postgres", database=database, query={"host": str(info.socket_dir)}
    ).render_as_string(hide_password=False)


def ensure_database(admin_url: str, database: str) -> None:
    """Create `database` through `admin_url` when it does not exist yet."""
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}
            ).scalar()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    finally:
        engine.dispose()


def embedded_url(data_dir: Path | None = None) -> str:
    """URL of the embedded default warehouse, started on first use and left running for other processes."""
    server = embedded_server(data_dir)
    ensure_database(server_url(server, "postgres"), EMBEDDED_DATABASE)
    return server_url(server, EMBEDDED_DATABASE)


def stop_embedded(data_dir: Path | None = None) -> bool:
    """Stop the embedded Postgres if its data folder exists (it is left running for other processes)."""
    data_dir = Path(data_dir or state_dir() / "pgdata")
    if not (data_dir / "PG_VERSION").exists():
        return False
    server = embedded_server(data_dir)
    server.cleanup_mode = "stop"
    server.cleanup()
    return True


def resolve_url(url: str | None = None) -> str:
    """The warehouse URL: the one given, else `WAREHOUSE_URL`, else the embedded default."""
    url = url or os.environ.get("WAREHOUSE_URL")
    if url:
        return normalize_url(url)
    return embedded_url()


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for the warehouse with connection checks before use."""
    return sa.create_engine(normalize_url(url), pool_pre_ping=True, future=True)


def libpq_params(url: str) -> dict[str, str]:
    """Host, port, user, password and database of `url`, as dbt's profiles.yml reads them."""
    parsed = make_url(normalize_url(url))
    host = parsed.host or parsed.query.get("host") or "localhost"
    if isinstance(host, tuple):
        host = host[0]
    return {
        "host": str(host),
        "port": str(parsed.port or 5432),
        "user": parsed.username or "postgres",
        "password": parsed.password or "",
        "dbname": parsed.database or "",
    }


def raw_connection(engine: Engine):
    """A new psycopg2 connection for `engine`'s database, outside its pool (the caller closes it)."""
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    conn = engine.dialect.dbapi.connect(*cargs, **cparams)
    conn.set_client_encoding("UTF8")
    return conn
