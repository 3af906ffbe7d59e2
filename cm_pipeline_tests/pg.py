"""Finds a real Postgres for the test session: TEST_WAREHOUSE_URL, the local service, or an embedded one."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa

from cm_pipeline.warehouse.connection import embedded_server, normalize_url, server_url

LOCAL_SERVICE = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def _local_service_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        engine = sa.create_engine(LOCAL_SERVICE, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


SOURCE_EXPLICIT = "TEST_WAREHOUSE_URL"
SOURCE_LOCAL = "local service on 127.0.0.1:5432"
SOURCE_EMBEDDED = "embedded pgserver"


def choose_source() -> str:
    """Which Postgres this session uses: TEST_WAREHOUSE_URL, else the local service, else an embedded one."""
    if os.environ.get("TEST_WAREHOUSE_URL"):
        return SOURCE_EXPLICIT
    return SOURCE_LOCAL if _local_service_answers() else SOURCE_EMBEDDED


def describe(source: str) -> str:
    """One line naming the server, for the first line of pytest's output (no password)."""
    if source == SOURCE_EXPLICIT:
        url = sa.engine.make_url(normalize_url(os.environ["TEST_WAREHOUSE_URL"]))
        return f"Postgres for tests: {url.render_as_string(hide_password=True)} (TEST_WAREHOUSE_URL)"
    if source == SOURCE_LOCAL:
        return "Postgres for tests: the local service, postgres@127.0.0.1:5432 (set TEST_WAREHOUSE_URL for another)"
    return "Postgres for tests: an embedded pgserver in a temporary folder (no service on 127.0.0.1:5432)"


class PostgresForTests:
    """An admin URL on a real server, and per-session databases created and dropped through it."""

    def __init__(self, source: str | None = None) -> None:
        self._server = None
        self._temp_dir: Path | None = None
        self.source = source or choose_source()
        if self.source == SOURCE_EXPLICIT:
            self.admin_url = normalize_url(os.environ["TEST_WAREHOUSE_URL"])
        elif self.source == SOURCE_LOCAL:
            self.admin_url = LOCAL_SERVICE
        else:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="cm_pipeline_pg_"))
            self._server = embedded_server(self._temp_dir / "pgdata", cleanup_mode="delete")
            self.admin_url = server_url(self._server, "postgres")

    def create_database(self, prefix: str = "cm_test") -> str:
        """Create a fresh database and return its URL."""
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return sa.engine.make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        name = sa.engine.make_url(url).database
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    def close(self) -> None:
        """Stop an embedded server and delete its folder, the temporary parent included."""
        if self._server is not None:
            self._server.cleanup()  # cleanup_mode="delete" removes pgdata, not the folder made for it
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
