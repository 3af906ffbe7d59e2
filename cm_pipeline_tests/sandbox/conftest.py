"""Fixtures for the sandbox's own tests: in-process servers over real sockets and an authenticated session."""

from __future__ import annotations

import pytest
import requests

from cm_pipeline.sandbox import SandboxServer

KEY = "sandbox-test-key"


def session(key: str = KEY) -> requests.Session:
    s = requests.Session()
    s.auth = (key, "")
    return s


@pytest.fixture(scope="module")
def sandbox():
    """A module-wide sandbox with 300 seeded customers (tests may add customers; never change knobs here)."""
    with SandboxServer(customers=300, seed=7) as srv:
        yield srv


@pytest.fixture
def fresh_sandbox():
    """A sandbox of its own for one test (30 customers), for knobs and destructive changes."""
    with SandboxServer(customers=30, seed=3) as srv:
        yield srv


@pytest.fixture
def http():
    s = session()
    yield s
    s.close()
