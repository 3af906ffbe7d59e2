"""Push kind updates, keys the account lacks: created through the add-by-email POST, only for a unique email."""

from __future__ import annotations

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.push.kinds import UPDATES
from cm_pipeline.push.run import push
from cm_pipeline_tests.conftest import TEST_API_KEY
from cm_pipeline_tests.push.conftest import (
    log_rows,
    make_updates,
    seed_customers,
    sync_warehouse,
)


def _new_key_row(uuid: str) -> dict:
    return {
        "customer_uuid": uuid,
        "custom_attributes": {"health_score": 87},
        "attribute_types": {"health_score": "Integer"},
    }


def test_new_key_created_by_email_then_merged(ctl, client, wh):
    a, b, _ = seed_customers(ctl)
    sync_warehouse(wh, client)
    make_updates(
        wh,
        [
            {
                "customer_uuid": a["uuid"],
                "add_tags": ["scored"],
                "custom_attributes": {"health_score": "87", "CAC": 40},
                "attribute_types": {"health_score": "Integer"},
            }
        ],
    )
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["applied"] == 2 and result["failed"] == result["rejected"] == 0  # the POST and the PATCH
    assert ctl.custom_attribute_definitions()["health_score"] == "Integer"
    live = ctl.customer(a["uuid"])["attributes"]
    assert live["custom"]["health_score"] == 87 and live["custom"]["CAC"] == 40
    assert live["custom"]["channel"] == "Facebook" and sorted(live["tags"]) == ["a", "b", "scored"]
    assert "health_score" not in ctl.customer(b["uuid"])["attributes"]["custom"]
    routes = ctl.stats()["by_route"]
    assert (
        routes.get("POST /v1/customers/attributes/custom") == 1
        and routes.get("PATCH /v1/customers/{uuid}") == 1
    )
    posted = [r for r in log_rows(wh, "run-1") if r["payload"] and "email" in r["payload"]]
    assert posted[0]["payload"]["custom"] == [{"type": "Integer", "key": "health_score", "value": 87}]


def test_new_key_on_shared_email_is_rejected(ctl, client, wh):
    a = ctl.insert_customer(email="shared@example.com", tags=["x"], custom={"CAC": 1})
    ctl.insert_customer(email="shared@example.com", tags=[], custom={})
    sync_warehouse(wh, client)
    make_updates(
        wh,
        [{"customer_uuid": a["uuid"], "custom_attributes": {"brand_new": "yes"}}],
    )
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert (
        result["rejected"] == 1 and ctl.stats()["requests"] == 0
    )  # decided from the warehouse: not even a GET
    (row,) = log_rows(wh, "run-1")
    assert (
        "brand_new" in row["error"] and "shared@example.com" in row["error"] and "2 customers" in row["error"]
    )
    assert "brand_new" not in ctl.custom_attribute_definitions()


def test_email_shared_in_chartmogul_but_unique_in_warehouse_is_rejected_by_the_search(ctl, client, wh):
    (a,) = seed_customers(ctl, 1)
    sync_warehouse(wh, client)
    twin = ctl.insert_customer(email="c0@example.com", tags=["t"], custom={})  # not in the warehouse yet
    make_updates(wh, [_new_key_row(a["uuid"])])
    ctl.reset_stats()
    result = push(wh, client, "run-1", UPDATES)
    assert result["rejected"] == 1 and result["applied"] == result["failed"] == 0
    routes = ctl.stats()["by_route"]
    assert routes.get("GET /v1/customers/search") == 1  # searched before any POST
    assert "POST /v1/customers/attributes/custom" not in routes and "PATCH /v1/customers/{uuid}" not in routes
    (row,) = log_rows(wh, "run-1")
    assert (
        twin["uuid"] in row["error"] and a["uuid"] in row["error"] and "finds 2 customer(s)" in row["error"]
    )
    assert row["http_status"] == 200  # what the search answered
    assert "health_score" not in ctl.customer(twin["uuid"])["attributes"]["custom"]

    # Once a refresh brings the twin into the warehouse, the plan rejects the row itself, with no call.
    sync_warehouse(wh, client)
    ctl.reset_stats()
    again = push(wh, client, "run-2", UPDATES)
    assert again["rejected"] == 1 and ctl.stats()["requests"] == 0
    assert "2 customers in the warehouse" in log_rows(wh, "run-2")[0]["error"]


class TwinAfterSearch(ChartMogulClient):
    """A real client whose email search, once it has answered, is followed by the sandbox creating
    another customer with that email: the moment between the search and the POST, made to happen."""

    def __init__(self, *args, ctl, twin: dict, **kw):
        super().__init__(*args, **kw)
        self.ctl, self.twin = ctl, twin

    def search_customers(self, email, **kw):
        found = super().search_customers(email, **kw)
        if self.twin is not None:
            twin, self.twin = self.twin, None
            self.ctl.insert_customer(email=email, **twin)
        return found


def _racing_client(sandbox, ctl, **twin) -> ChartMogulClient:
    return TwinAfterSearch(TEST_API_KEY, sandbox.base_url, max_requests_per_second=200, ctl=ctl, twin=twin)


def test_a_customer_created_between_search_and_post_is_failed_with_the_known_risk(sandbox, ctl, client, wh):
    (a,) = seed_customers(ctl, 1)
    sync_warehouse(wh, client)
    make_updates(wh, [_new_key_row(a["uuid"])])
    ctl.reset_stats()
    with _racing_client(sandbox, ctl, tags=["t"], custom={}) as racing:
        result = push(wh, racing, "run-1", UPDATES)
    assert result["failed"] == 1 and result["applied"] == 0
    assert ctl.stats()["by_route"].get("PATCH /v1/customers/{uuid}") is None
    (row,) = log_rows(wh, "run-1")
    twin = next(c for c in ctl.customers() if c["email"] == "c0@example.com" and c["uuid"] != a["uuid"])
    assert twin["uuid"] in row["error"] and "matched 2 customers" in row["error"]
    assert "between the search and the POST" in row["error"] and "known risk" in row["error"]
    assert row["http_status"] == 200


def test_malformed_add_by_email_entry_is_failed_and_nothing_is_patched(sandbox, ctl, client, wh):
    (a,) = seed_customers(ctl, 1)
    sync_warehouse(wh, client)
    make_updates(wh, [_new_key_row(a["uuid"])])
    ctl.reset_stats()
    # the twin the POST also reaches has `tags: null`: its entry in the POST's answer is malformed
    with _racing_client(sandbox, ctl, tags=None, custom={}) as racing:
        result = push(wh, racing, "run-1", UPDATES)
    assert result["failed"] == 1
    assert ctl.stats()["by_route"].get("PATCH /v1/customers/{uuid}") is None
    (row,) = log_rows(wh, "run-1")
    assert "add-by-email POST entry" in row["error"] and "attributes.tags is None" in row["error"]
    assert sorted(ctl.customer(a["uuid"])["attributes"]["tags"]) == ["a", "b"]
