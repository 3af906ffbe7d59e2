"""Finds a real Postgres for the test session: TEST_WAREHOUSE_URL, the local service, or an embedded one."""

from __future__ import annotations

import os
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


class PostgresForTests:
    """An admin URL on a real server, and per-session databases created and dropped through it."""

    def __init__(self) -> None:
        self._server = None
        explicit = os.environ.get("TEST_WAREHOUSE_URL")
        if explicit:
            self.admin_url, self.source = normalize_url(explicit), "TEST_WAREHOUSE_URL"
        elif _local_service_answers():
            self.admin_url, self.source = LOCAL_SERVICE, "local service on 127.0.0.1:5432"
        else:
            data_dir = Path(tempfile.mkdtemp(prefix="cm_pipeline_pg_")) / "pgdata"
            self._server = embedded_server(data_dir, cleanup_mode="delete")
            self.admin_url, self.source = server_url(self._server, "postgres"), "embedded pgserver"

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
        if self._server is not None:
            self._server.cleanup()
