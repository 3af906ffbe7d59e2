"""The client against the sandbox over real sockets: endpoints, last_status, empty answers, error shapes."""

from __future__ import annotations

import threading

import pytest

from cm_pipeline.chartmogul.errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PaginationError,
    UnprocessableEntityError,
)
from cm_pipeline_tests.chartmogul.conftest import a_customer, api_requests, custom_ds

# ---------------------------------------------------------------------------------------- endpoints


def test_list_customers_walks_every_page_with_checkpointable_cursors(client, ctl):
    pages = list(client.list_customers(per_page=7))
    assert [p.number for p in pages] == [1, 2, 3, 4, 5]
    assert [len(p.entries) for p in pages] == [7, 7, 7, 7, 2]
    assert [p.has_more for p in pages] == [True, True, True, True, False]
    assert pages[0].request_cursor is None
    assert [p.request_cursor for p in pages[1:]] == [p.cursor for p in pages[:-1]]
    uuids = [e["uuid"] for p in pages for e in p.entries]
    assert len(uuids) == len(set(uuids)) == 30
    assert set(uuids) == {c["uuid"] for c in ctl.customers()}
    assert ctl.stats()["by_route"] == {"GET /v1/customers": 5}


def test_list_customers_page_resumes_from_a_cursor(client):
    first = client.list_customers_page(per_page=12)
    assert first.number == 1 and first.has_more and first.cursor
    rest = list(client.list_customers(per_page=12, cursor=first.cursor))
    assert rest[0].request_cursor == first.cursor
    uuids = [e["uuid"] for e in first.entries] + [e["uuid"] for p in rest for e in p.entries]
    assert len(uuids) == len(set(uuids)) == 30


def test_list_filters(client, ctl):
    everyone = ctl.customers()
    by_status: dict[str, set] = {}
    for c in everyone:
        by_status.setdefault(c["status"], set()).add(c["uuid"])
    status, expected = max(by_status.items(), key=lambda kv: len(kv[1]))
    got = {e["uuid"] for p in client.list_customers(status=status, per_page=5) for e in p.entries}
    assert got == expected

    someone = everyone[3]
    page = client.list_customers_page(
        external_id=someone["external_id"], data_source_uuid=someone["data_source_uuid"]
    )
    assert [e["uuid"] for e in page.entries] == [someone["uuid"]]

    system = someone["billing-system-type"]
    got = {e["uuid"] for p in client.list_customers(system=system) for e in p.entries}
    assert someone["uuid"] in got and all(
        c["billing-system-type"] == system for c in everyone if c["uuid"] in got
    )

    none = client.list_customers_page(external_id="no-such-external-id")
    assert (none.entries, none.has_more, none.cursor) == ([], False, None)


def test_retrieve_customer(client, ctl):
    someone = a_customer(ctl)
    got = client.retrieve_customer(someone["uuid"])
    assert got["uuid"] == someone["uuid"] and got["external_id"] == someone["external_id"]


def test_create_update_and_add_custom_attributes(client, ctl):
    ds = custom_ds(ctl)
    result = client.create_customer(
        {
            "data_source_uuid": ds,
            "external_id": "client-test-1",
            "name": "Zoë O'Brien; DROP TABLE x",
            "email": "client-test-1@example.com",
            "state": "US-NY",
            "country": "US",
        }
    )
    assert result.created is True
    uuid = result.customer["uuid"]
    assert result.customer["state"] == "NY"
    assert ctl.customer(uuid)["name"] == "Zoë O'Brien; DROP TABLE x"

    entries = client.add_custom_attributes(
        "client-test-1@example.com",
        [{"type": "Integer", "key": "client_test_seats", "value": 12}],
    )
    assert [e["uuid"] for e in entries] == [uuid]
    assert entries[0]["attributes"]["custom"]["client_test_seats"] == 12
    assert ctl.custom_attribute_definitions()["client_test_seats"] == "Integer"

    updated = client.update_customer(
        uuid, {"attributes": {"tags": ["vip", "beta"], "custom": {"client_test_seats": 13}}}
    )
    assert updated["attributes"]["tags"] == ["vip", "beta"]
    assert ctl.customer(uuid)["attributes"]["custom"]["client_test_seats"] == 13

    again = client.create_customer({"data_source_uuid": ds, "external_id": "client-test-1", "name": "x"})
    assert again.created is False and again.customer["uuid"] == uuid
    assert sum(1 for c in ctl.customers() if c["external_id"] == "client-test-1") == 1


# ------------------------------------------------------------------------ last_status, per thread


def test_last_status_is_the_status_of_this_threads_last_answer(client, ctl):
    assert client.last_status is None  # no call yet
    someone = a_customer(ctl)
    client.retrieve_customer(someone["uuid"])
    assert client.last_status == 200
    created = client.create_customer(
        {"data_source_uuid": custom_ds(ctl), "external_id": "last-status-1", "name": "Last Status"}
    )
    assert created.created is True and client.last_status == 201 and created.status == 201
    # A duplicate: the POST met a 422 and a lookup (GET, 200) found the customer; the result keeps the POST's.
    again = client.create_customer({"data_source_uuid": custom_ds(ctl), "external_id": "last-status-1"})
    assert again.created is False and again.status == 422 and client.last_status == 200
    with pytest.raises(NotFoundError):
        client.retrieve_customer("cus_00000000-0000-0000-0000-000000000000")
    assert client.last_status == 404


def test_last_status_is_kept_per_thread(client, ctl):
    """Two threads on one client, each reading after BOTH calls are done: each sees its own call's status."""
    someone = a_customer(ctl)
    ds = custom_ds(ctl)
    both_done = threading.Barrier(2, timeout=10)
    seen: dict[str, int | None] = {}

    def reader():
        client.retrieve_customer(someone["uuid"])
        both_done.wait()
        seen["GET"] = client.last_status

    def creator():
        client.create_customer({"data_source_uuid": ds, "external_id": "last-status-thread", "name": "T"})
        both_done.wait()
        seen["POST"] = client.last_status

    threads = [threading.Thread(target=reader), threading.Thread(target=creator)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert seen == {"GET": 200, "POST": 201}
    assert client.last_status is None  # this (main) thread made no call


def test_last_status_of_a_retried_call_is_its_final_answer(make_client, ctl):
    ctl.configure(fault_rate=0.5, fault_kinds=["503"], fault_seed=11)
    client = make_client()
    someone = a_customer(ctl)["uuid"]
    for _ in range(6):
        client.retrieve_customer(someone)
        assert client.last_status == 200
    assert client.stats["by_status"]["503"] >= 1


# --------------------------------------------------------------- empty 2xx answers (empty body, {})


@pytest.mark.parametrize("kind", ["empty_body", "empty_object"])
def test_an_empty_2xx_list_page_fails_loudly_naming_entries(client, ctl, kind):
    first = client.list_customers_page(per_page=10)
    assert first.has_more and len(first.entries) == 10
    ctl.configure(fault_rate=1.0, fault_kinds=[kind], fault_methods=["GET"])
    before = ctl.stats()["requests"]
    with pytest.raises(PaginationError, match=r"no 'entries' \(an empty object\)") as info:
        list(client.list_customers(per_page=10, cursor=first.cursor))  # mid-walk: never a silent end
    assert "page 1: 'entries' must be a list" in str(info.value)
    with pytest.raises(PaginationError, match="'entries'"):
        client.list_customers_page(per_page=10)
    assert ctl.stats()["requests"] - before == 2  # refused at once, not retried
    assert client.last_status == 200


@pytest.mark.parametrize("kind", ["empty_body", "empty_object"])
def test_an_empty_2xx_customer_answer_reaches_the_caller_as_an_empty_dict(client, ctl, kind):
    """The client turns an empty 2xx body into {}; callers validate it (reverse_etl/live.py refuses it)."""
    ctl.configure(fault_rate=1.0, fault_kinds=[kind], fault_methods=["GET"])
    assert client.retrieve_customer(a_customer(ctl)["uuid"]) == {}
    assert client.last_status == 200


# ------------------------------------------------------------------- error shapes, never retried


def test_404_not_found_is_not_retried(client, ctl):
    with pytest.raises(NotFoundError) as info:
        client.retrieve_customer("cus_00000000-0000-0000-0000-000000000000")
    err = info.value
    assert (err.status, err.message, err.param) == (404, "Customer not found", "customer_uuid")
    assert "(param 'customer_uuid')" in str(err)
    assert info.value.path == "/customers/cus_00000000-0000-0000-0000-000000000000"
    assert len(api_requests(ctl)) == 1


def test_401_bad_key_is_not_retried(make_client, ctl):
    wrong = make_client(api_key="wrong-key-123")
    with pytest.raises(AuthenticationError) as info:
        wrong.list_customers_page()
    assert info.value.status == 401
    assert "wrong-key-123" not in str(info.value) + repr(info.value)
    assert len(api_requests(ctl)) == 1


def test_400_code_message_param_is_not_retried(client, ctl):
    uuid = a_customer(ctl)["uuid"]
    with pytest.raises(BadRequestError) as info:
        client.update_customer(uuid, {"attributes": "not an object"})
    assert (info.value.status, info.value.param) == (400, "attributes")
    assert "attributes" in info.value.message
    assert len(api_requests(ctl)) == 1


def test_422_error_string_shape_is_not_retried(client, ctl):
    with pytest.raises(UnprocessableEntityError) as info:
        client.create_customer({"data_source_uuid": "ds_nope", "external_id": "e1", "name": "n"})
    assert info.value.message == "Data source not found"
    assert len(api_requests(ctl)) == 1


def test_422_field_list_shape_is_not_retried(client, ctl):
    email = a_customer(ctl)["email"]
    with pytest.raises(UnprocessableEntityError) as info:
        client.add_custom_attributes(email, [{"type": "Integer", "key": "client_test_bad", "value": "abc"}])
    assert info.value.param and info.value.message
    assert "error_details" in info.value.details
    assert len(api_requests(ctl)) == 1


def test_422_errors_object_shape_reaches_the_caller_when_the_duplicate_is_ambiguous(client, ctl):
    # Two customers already share the external_id, so create_customer cannot resolve the duplicate
    # 422 to one of them: the API's {"errors": {...}} error must reach the caller as it came.
    ds = custom_ds(ctl)
    for _ in range(2):
        ctl.insert_customer(data_source_uuid=ds, external_id="client-test-twice", name="Twice")
    with pytest.raises(UnprocessableEntityError) as info:
        client.create_customer({"data_source_uuid": ds, "external_id": "client-test-twice", "name": "n"})
    err = info.value
    message = "The external ID for this customer already exists in our system."
    assert (err.status, err.param) == (422, "external_id")
    assert err.message == f"external_id: {message}"
    assert err.details == {"errors": {"external_id": message}}
    assert err.attempts == 1
    routes = [(r["method"], r["path"], r["status"]) for r in api_requests(ctl)]
    assert routes == [("POST", "/v1/customers", 422), ("GET", "/v1/customers", 200)]
