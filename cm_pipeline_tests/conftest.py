"""Shared fixtures: a real Postgres database for the session, and sandbox servers over real sockets."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cm_pipeline_tests.pg import PostgresForTests, choose_source, describe

TEST_API_KEY = "test-key-7f3a9c"
POSTGRES_SOURCE = pytest.StashKey[str]()


def pytest_configure(config):
    """Decide once, before any output, which Postgres this session uses (the fixture below starts it)."""
    config.stash[POSTGRES_SOURCE] = choose_source()


def pytest_sessionstart(session):
    """The first line of pytest's output, -q included, names the Postgres the tests use."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(describe(session.config.stash[POSTGRES_SOURCE]))


def pytest_collection_modifyitems(session, config, items):
    """Tests marked slow run first, in their own order: the longest start at once and the short ones fill
    the workers around them, so `make test` lasts about as long as its slowest test rather than that test
    plus whatever was queued before it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# Test files whose tests share one expensive module fixture (a dbt build): each runs whole on one xdist
# worker. Every other test is scheduled on its own, so the workers stay busy until the end.
WHOLE_FILES = frozenset({"cm_pipeline_tests/models/test_dbt_build.py"})


def pytest_xdist_make_scheduler(config, log):
    """`make test`'s workers take single tests, except the files of WHOLE_FILES, which stay together.

    pytest-xdist's own `--dist loadgroup` (the xdist_group mark) does not group under pytest 9.2."""
    from xdist.scheduler import LoadScopeScheduling

    class SingleTestsButWholeFiles(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path in WHOLE_FILES else nodeid

    return SingleTestsButWholeFiles(config, log)


@pytest.fixture(scope="session")
def postgres(pytestconfig):
    """The real Postgres server used by this session (see cm_pipeline_tests/pg.py for how it is found)."""
    pg = PostgresForTests(pytestconfig.stash[POSTGRES_SOURCE])
    yield pg
    pg.close()


@pytest.fixture(scope="session")
def warehouse_url(postgres):
    """URL of a database created for this test session and dropped after it."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(scope="session")
def engine(warehouse_url):
    """A SQLAlchemy engine on the session's database."""
    eng = sa.create_engine(warehouse_url, future=True)
    yield eng
    eng.dispose()


@pytest.fixture
def fresh_db(postgres):
    """URL of a database of its own for one test, dropped after it."""
    url = postgres.create_database("cm_t")
    yield url
    postgres.drop_database(url)
