"""Warehouse URL resolution: explicit URL, WAREHOUSE_URL, and the embedded default."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa

from cm_pipeline.warehouse.connection import (
    WarehouseConfigError,
    libpq_params,
    normalize_url,
    redact,
    resolve_url,
)


def test_plain_postgresql_url_gets_the_psycopg2_driver():
    assert normalize_url("postgresql://u:p@db:6543/wh") == "postgresql+psycopg2://u:p@db:6543/wh"


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("mysql://u@h/db", "'mysql' backend"),
        ("postgresql+psycopg://u@h/db", "psycopg2 driver"),
        ("postgresql://u@h/", "must name a database"),
        ("not a url", "not a valid SQLAlchemy URL"),
    ],
)
def test_bad_urls_are_rejected_with_a_reason(url, names):
    with pytest.raises(WarehouseConfigError, match=names):
        normalize_url(url)


def test_errors_and_redaction_never_show_the_password():
    with pytest.raises(WarehouseConfigError) as err:
        normalize_url("mysql://user:s3cret-pw@h/db")
    assert "s3cret-pw" not in str(err.value)
    assert "s3cret-pw" not in redact("postgresql+psycopg2://user:s3cret-pw@h/db")


def test_libpq_params_for_tcp_and_unix_socket_urls():
    assert libpq_params("postgresql+psycopg2://a:b@h:5433/d") == {
        "host": "h",
        "port": "5433",
        "user": "a",
        "password": "b",
        "dbname": "d",
    }
    assert libpq_params("postgresql+psycopg2://postgres@/d?host=/tmp/sock")["host"] == "/tmp/sock"


def test_warehouse_url_from_the_environment(monkeypatch, warehouse_url):
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    assert resolve_url() == warehouse_url
    engine = sa.create_engine(resolve_url())
    with engine.connect() as conn:
        assert conn.execute(sa.text("select 1")).scalar() == 1
    engine.dispose()


def test_embedded_default_starts_a_real_postgres(tmp_path):
    """With no WAREHOUSE_URL, the project starts pgserver under its state folder and connects to it."""
    code = (
        "import sqlalchemy as sa\n"
        "from cm_pipeline.warehouse.connection import resolve_url, stop_embedded\n"
        "url = resolve_url()\n"
        "e = sa.create_engine(url)\n"
        "with e.connect() as c: print(c.execute(sa.text('select current_database()')).scalar())\n"
        "e.dispose()\n"
        "assert stop_embedded()  # the project leaves it running for other processes; the test stops it\n"
    )
    env = {"CM_PIPELINE_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "cm_pipeline"
    assert (tmp_path / "state" / "pgdata" / "PG_VERSION").exists()


def test_without_pgserver_an_unset_warehouse_url_is_named(tmp_path):
    """Where the embedded Postgres is not installed (the user-code image), the error says what to set."""
    code = (
        "import sys\n"
        "class Blocked:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'pgserver': raise ImportError('not installed')\n"
        "sys.meta_path.insert(0, Blocked())\n"
        "from cm_pipeline.warehouse.connection import resolve_url\n"
        "resolve_url()\n"
    )
    env = {"CM_PIPELINE_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "WarehouseConfigError: WAREHOUSE_URL is not set and the embedded Postgres" in out.stderr
