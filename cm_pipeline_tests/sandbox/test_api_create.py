"""The sandbox's API over real sockets, creating: POST /v1/customers, its checks, odd characters."""

from __future__ import annotations

from cm_pipeline.sandbox.seed import DOCS_DATA_SOURCE
from cm_pipeline_tests.sandbox.conftest import create, patch

CRM_DS = "ds_1a7c2e10-0b1f-11ee-9a41-2f5d3c1b0006"  # the seeded account's second Custom data source


def test_create_requires_data_source_and_external_id(sandbox, http):
    r = create(sandbox, http, external_id="x1")
    assert r.status_code == 400
    assert r.json() == {
        "code": 400,
        "message": 'Parameter "data_source_uuid" is missing',
        "param": "data_source_uuid",
    }
    r = create(sandbox, http, data_source_uuid=DOCS_DATA_SOURCE)
    assert r.status_code == 400 and r.json()["param"] == "external_id"
    r = http.post(
        f"{sandbox.base_url}/customers", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "JSON" in r.json()["message"]


def test_create_unknown_data_source_and_duplicates(sandbox, http):
    r = create(sandbox, http, data_source_uuid="ds_nope", external_id="x2")
    assert r.status_code == 422 and r.json() == {"error": "Data source not found"}
    assert create(sandbox, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="dup_1").status_code == 201
    r = create(sandbox, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="dup_1")
    assert r.status_code == 422
    assert r.json() == {
        "errors": {"external_id": "The external ID for this customer already exists in our system."}
    }
    # the same external_id in another (Custom) data source is a different customer
    assert create(sandbox, http, data_source_uuid=CRM_DS, external_id="dup_1").status_code == 201


def test_create_only_into_a_custom_data_source(sandbox, http):
    """list-customers.txt: customers created through the API belong to Custom data sources."""
    before = len(sandbox.control.customers())
    for ds in sandbox.control.data_sources():
        if ds["system"] == "Custom":
            continue
        r = create(sandbox, http, data_source_uuid=ds["uuid"], external_id="not_custom_1")
        assert r.status_code == 422, ds
        assert set(r.json()) == {"errors"} and list(r.json()["errors"]) == ["data_source_uuid"]
        assert ds["uuid"] in r.json()["errors"]["data_source_uuid"]
        assert ds["system"] in r.json()["errors"]["data_source_uuid"]
    assert len(sandbox.control.customers()) == before, "a rejected create stores nothing"
    r = create(sandbox, http, data_source_uuid=CRM_DS, external_id="custom_ok_1")
    assert r.status_code == 201 and r.json()["billing-system-type"] == "Custom"


def test_create_validates_timestamps_and_custom_attributes(sandbox, http):
    def attempt(n, **fields):
        return create(sandbox, http, data_source_uuid=DOCS_DATA_SOURCE, external_id=f"t{n}", **fields)

    def custom(item):
        return {"custom": [item]}

    r = attempt(1, lead_created_at="2999-01-01")
    assert r.status_code == 422 and "lead_created_at" in r.json() and r.json()["error_details"]
    r = attempt(2, lead_created_at="2023-02-01", free_trial_started_at="2023-01-01")
    assert r.status_code == 422 and "free_trial_started_at" in r.json()
    r = attempt(3, attributes=custom({"type": "Integer", "key": "n", "value": "x"}))
    assert r.status_code == 422 and "n" in r.json()
    r = attempt(4, attributes=custom({"type": "String", "key": "bad key", "value": "x"}))
    assert r.status_code == 422 and "bad key" in r.json()
    r = attempt(5, attributes=custom({"type": "Integer", "key": "CAC"}))
    assert r.status_code == 400 and r.json()["param"] == "attributes.custom[0].value"
    r = attempt(6, attributes=custom({"type": "String", "key": "CAC", "value": "x"}))
    assert r.status_code == 422 and "CAC" in r.json() and "Integer" in r.json()["CAC"][0]
    r = attempt(7, name=12)
    assert r.status_code == 422 and "name" in r.json()
    assert not any(
        c["external_id"].startswith("t") and c["external_id"][1:].isdigit()
        for c in sandbox.control.customers()
    )


def test_create_normalises_state_and_website(sandbox, http):
    r = create(
        sandbox, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="norm_1", country="US", state="US-CA",
        website_url="example.org", company="Norm Co",
    )  # fmt: skip
    assert r.status_code == 201
    c = r.json()
    assert c["state"] == "CA" and c["address"]["state"] == "California"
    assert c["address"]["country"] == "US" and c["country"] == "US"  # alpha-2 (see sandbox/__init__.py)
    assert c["website_url"] == "https://example.org"
    assert sandbox.control.customer(c["uuid"]) == c


# ---------------------------------------------------------------- odd characters


ODD = [
    "Robert'); DROP TABLE customers;--",
    'The "Quoted" Company',
    "Back\\slash \\N",
    "Tab\there & new\nline",
    "100% off; -- $$ dollar $$",
    "🚀 Émoji 東京 Zoë's Café",
]


def test_odd_characters_round_trip(fresh_sandbox, http):
    srv = fresh_sandbox
    r = create(
        srv, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="odd-1", name=ODD[0], company=ODD[1],
        email="odd@example.com", city=ODD[5], attributes={"tags": ODD, "custom": [{"type": "String", "key": "note", "value": ODD[3]}]},
    )  # fmt: skip
    assert r.status_code == 201
    uuid = r.json()["uuid"]
    got = http.get(f"{srv.base_url}/customers/{uuid}").json()
    assert got["name"] == ODD[0] and got["company"] == ODD[1] and got["city"] == ODD[5]
    assert got["attributes"]["tags"] == ODD and got["attributes"]["custom"]["note"] == ODD[3]
    body = patch(
        srv, http, uuid, {"attributes": {"tags": list(reversed(ODD)), "custom": {"note": ODD[2]}}}
    ).json()
    assert (
        body["attributes"]["tags"] == list(reversed(ODD)) and body["attributes"]["custom"]["note"] == ODD[2]
    )
    listed = http.get(f"{srv.base_url}/customers", params={"external_id": "odd-1"}).json()["entries"]
    assert listed == [body]
