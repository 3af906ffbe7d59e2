"""Merged customers and ChartMogul's system tags over real sockets: a merged customer is listed under each
of its data sources and found by each of its external ids; system tags are plain tags to a PATCH."""

from __future__ import annotations

import pytest

from cm_pipeline.sandbox import SandboxControlError
from cm_pipeline.sandbox.seed import AUTO_CHURNED_TAG, DOCS_DATA_SOURCE, MERGED_TAG
from cm_pipeline_tests.sandbox.conftest import patch, walk

OTHER_DS = "ds_1a7c2e10-0b1f-11ee-9a41-2f5d3c1b0003"  # Recurly, in the uniform account


def test_data_source_filter_lists_merged_customers_under_each_source(realistic, http):
    everyone = realistic.control.customers()
    merged = [c for c in everyone if len(c["data_source_uuids"]) > 1]
    assert merged
    seen = 0
    for ds in realistic.control.data_sources():
        entries, pages = walk(http, realistic.base_url, per_page=97, data_source_uuid=ds["uuid"])
        expected = [c["uuid"] for c in everyone if ds["uuid"] in c["data_source_uuids"]]
        assert [e["uuid"] for e in entries] == expected, ds["name"]
        assert pages[0]["total_pages"] == -(-len(expected) // 97)
        seen += len(entries)
    assert seen == len(everyone) + len(merged), "a merged customer once per data source, nobody else twice"


def test_status_and_data_source_filters_combine_with_merged_customers(realistic, http):
    everyone = realistic.control.customers()
    for c in [c for c in everyone if len(c["data_source_uuids"]) > 1][:3]:
        secondary = c["data_source_uuids"][1]
        status = c["status"].replace(" ", "_")
        entries, pages = walk(
            http, realistic.base_url, per_page=50, data_source_uuid=secondary, status=status
        )
        expected = {
            x["uuid"] for x in everyone if secondary in x["data_source_uuids"] and x["status"] == c["status"]
        }
        assert {e["uuid"] for e in entries} == expected and c["uuid"] in expected
        assert pages[0]["total_pages"] == -(-len(expected) // 50)


def test_external_id_and_system_filters_of_a_merged_customer(realistic, http):
    c = next(c for c in realistic.control.customers() if len(c["external_ids"]) > 1)
    for ext in c["external_ids"]:
        body = http.get(f"{realistic.base_url}/customers", params={"external_id": ext}).json()
        assert [e["uuid"] for e in body["entries"]] == [c["uuid"]], ext
        assert set(body) == {"entries", "has_more", "cursor"}
    secondary_system = next(
        ds["system"] for ds in realistic.control.data_sources() if ds["uuid"] == c["data_source_uuids"][1]
    )
    primary, _ = walk(http, realistic.base_url, system=c["billing-system-type"])
    assert c["uuid"] in {e["uuid"] for e in primary}
    if secondary_system != c["billing-system-type"]:
        secondary, _ = walk(http, realistic.base_url, system=secondary_system)
        assert c["uuid"] not in {e["uuid"] for e in secondary}, "system is the primary's billing system"


def test_realistic_account_carries_system_tags(realistic, http):
    entries, _ = walk(http, realistic.base_url)
    tags = {t for e in entries for t in e["attributes"]["tags"]}
    assert {MERGED_TAG, AUTO_CHURNED_TAG} <= tags


def test_a_merged_customer_made_through_the_admin_door(fresh_sandbox, http):
    ctl = fresh_sandbox.control
    c = ctl.insert_customer(
        data_source_uuid=DOCS_DATA_SOURCE, data_source_uuids=[DOCS_DATA_SOURCE, "ds_brand_new"],
        external_id="prim_1", external_ids=["prim_1", "sec_1"], tags=["vip", MERGED_TAG], status="Active",
    )  # fmt: skip
    assert "ds_brand_new" in {d["uuid"] for d in ctl.data_sources()}, "an unknown data source is created"
    for ds in (DOCS_DATA_SOURCE, "ds_brand_new"):
        entries, _ = walk(http, fresh_sandbox.base_url, data_source_uuid=ds)
        assert c["uuid"] in {e["uuid"] for e in entries}, ds
    body = http.get(f"{fresh_sandbox.base_url}/customers", params={"external_id": "sec_1"}).json()
    assert [e["uuid"] for e in body["entries"]] == [c["uuid"]]
    r = http.post(
        f"{fresh_sandbox.base_url}/customers",
        json={"data_source_uuid": "ds_brand_new", "external_id": "sec_1"},
    )
    assert r.status_code == 422 and "external_id" in r.json()["errors"], "taken by the merged customer"


def test_admin_merge_absorbs_a_customer(fresh_sandbox, http):
    ctl = fresh_sandbox.control
    into = ctl.insert_customer(data_source_uuid=DOCS_DATA_SOURCE, external_id="keep", mrr=100, tags=["a"])
    gone = ctl.insert_customer(data_source_uuid=OTHER_DS, external_id="absorbed", mrr=50)
    merged = ctl.merge_customers(gone["uuid"], into["uuid"])
    assert merged["uuid"] == into["uuid"] and ctl.customer(gone["uuid"]) is None
    assert merged["data_source_uuids"] == [DOCS_DATA_SOURCE, OTHER_DS]
    assert merged["external_ids"] == ["keep", "absorbed"]
    assert (
        merged["attributes"]["tags"] == ["a", MERGED_TAG] and merged["mrr"] == 150 and merged["arr"] == 1800
    )
    entries, _ = walk(http, fresh_sandbox.base_url, data_source_uuid=OTHER_DS)
    assert into["uuid"] in {e["uuid"] for e in entries} and gone["uuid"] not in {e["uuid"] for e in entries}
    with pytest.raises(SandboxControlError) as exc:
        ctl.merge_customers(into["uuid"], into["uuid"])
    assert exc.value.status == 400 and exc.value.body["param"] == "into"
    with pytest.raises(SandboxControlError) as exc:
        ctl.merge_customers("cus_nobody", into["uuid"])
    assert exc.value.status == 400 and exc.value.body["param"] == "from"


def test_a_patch_that_omits_a_system_tag_deletes_it(fresh_sandbox, http):
    """update-customer.txt: the attributes object replaces every tag, ChartMogul's own included; the
    sandbox does not protect them (the pusher must carry them over)."""
    ctl = fresh_sandbox.control
    c = ctl.insert_customer(tags=["vip", MERGED_TAG, AUTO_CHURNED_TAG], custom={"CAC": 3})
    assert ctl.customer(c["uuid"])["attributes"]["tags"] == ["vip", MERGED_TAG, AUTO_CHURNED_TAG]
    body = patch(fresh_sandbox, http, c["uuid"], {"attributes": {"tags": ["vip", MERGED_TAG], "custom": {}}})
    assert body.json()["attributes"]["tags"] == ["vip", MERGED_TAG]
    body = patch(fresh_sandbox, http, c["uuid"], {"attributes": {"tags": ["vip"]}}).json()
    assert body["attributes"]["tags"] == ["vip"] and ctl.customer(c["uuid"])["attributes"]["tags"] == ["vip"]
    ctl.modify_customer(c["uuid"], tags=["vip", AUTO_CHURNED_TAG])  # ChartMogul tags it again
    assert ctl.customer(c["uuid"])["attributes"]["tags"] == ["vip", AUTO_CHURNED_TAG]


def test_status_index_follows_patches_and_deletes(fresh_sandbox, http):
    ctl = fresh_sandbox.control
    c = ctl.insert_customer(status="New Lead", external_id="idx_1")
    assert patch(fresh_sandbox, http, c["uuid"], {"status": "Qualified_Lead"}).status_code == 200
    qualified, pages = walk(http, fresh_sandbox.base_url, status="Qualified_Lead")
    new, _ = walk(http, fresh_sandbox.base_url, status="New_Lead")
    assert c["uuid"] in {e["uuid"] for e in qualified} and c["uuid"] not in {e["uuid"] for e in new}
    assert pages[0]["total_pages"] == 1
    ctl.delete_customer(c["uuid"])
    qualified, _ = walk(http, fresh_sandbox.base_url, status="Qualified_Lead")
    assert c["uuid"] not in {e["uuid"] for e in qualified}
    assert {e["uuid"] for e in qualified} == {
        x["uuid"] for x in ctl.customers() if x["status"] == "Qualified Lead"
    }
