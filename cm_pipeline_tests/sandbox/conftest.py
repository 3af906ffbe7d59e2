"""Fixtures and helpers for the sandbox's own tests: in-process servers over real sockets, an authenticated
session, a cursor walk and the API's write calls."""

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


@pytest.fixture(scope="module")
def realistic():
    """A module-wide realistic account (3000 customers: merged ones, system tags); never change knobs here."""
    with SandboxServer(customers=3000, seed=11, account="realistic") as srv:
        yield srv


@pytest.fixture
def fresh_sandbox():
    """A sandbox of its own for one test (30 customers), for knobs and destructive changes."""
    with SandboxServer(customers=30, seed=3) as srv:
        yield srv


@pytest.fixture
def empty_sandbox():
    """A sandbox of its own with no customers, for replaying the reference pages' examples."""
    with SandboxServer(customers=0) as srv:
        yield srv


@pytest.fixture
def http():
    s = session()
    yield s
    s.close()


def walk(http, base_url, per_page=200, **filters):
    """All entries of a cursor walk, plus the list of raw page bodies."""
    entries, pages, cursor = [], [], None
    while True:
        params = {"per_page": per_page, **filters}
        if cursor:
            params["cursor"] = cursor
        r = http.get(f"{base_url}/customers", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body)
        entries += body["entries"]
        if not body["has_more"]:
            return entries, pages
        cursor = body["cursor"]
        assert cursor


def search(srv, http, email, **params):
    return http.get(f"{srv.base_url}/customers/search", params={"email": email, **params})


def create(srv, http, **body):
    return http.post(f"{srv.base_url}/customers", json=body)


def patch(srv, http, uuid, body):
    return http.patch(f"{srv.base_url}/customers/{uuid}", json=body)


def add_custom(srv, http, body):
    return http.post(f"{srv.base_url}/customers/attributes/custom", json=body)
