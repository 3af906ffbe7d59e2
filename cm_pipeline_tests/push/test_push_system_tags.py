"""System tags survive (issue 12 item 5): every PATCH keeps every tag the row does not name: ChartMogul's
own tags, tags added in ChartMogul since the refresh, and unicode tags."""

from __future__ import annotations

from cm_pipeline.push.kinds import BY_EMAIL, UPDATES
from cm_pipeline.push.run import push
from cm_pipeline_tests.push.conftest import (
    BY_EMAIL_DDL,
    log_rows,
    make_relation,
    make_updates,
    sync_warehouse,
)

SYSTEM_TAGS = ["merged-customer", "auto-churned-delinquent-subscription"]
UNICODE_TAGS = ["größe", "日本語", "emoji 🎉"]


def test_every_patch_keeps_every_tag_the_row_does_not_name(ctl, client, wh):
    customers = [
        ctl.insert_customer(
            email=f"s{i}@example.com", tags=[*SYSTEM_TAGS, *UNICODE_TAGS, f"own-{i}"], custom={"CAC": i}
        )
        for i in range(4)
    ]
    sync_warehouse(wh, client)
    for c in customers:  # tagged in ChartMogul after the refresh: the warehouse does not know
        ctl.modify_customer(
            c["uuid"], tags=[*ctl.customer(c["uuid"])["attributes"]["tags"], "added-in-chartmogul"]
        )
    a, b, c, d = (x["uuid"] for x in customers)
    make_updates(
        wh,
        [
            {"customer_uuid": a, "add_tags": ["vip"]},
            {"customer_uuid": b, "remove_tags": ["own-1"]},
            {
                "customer_uuid": c,
                "remove_tags": ["größe"],
                "add_tags": ["ß-new"],
            },  # a unicode tag the row names
            {
                "customer_uuid": d,
                "add_tags": ["keyed"],
                "custom_attributes": {"brand_new_key": "x"},
            },  # POST, PATCH
        ],
    )
    result = push(wh, client, "run-1", UPDATES)
    assert result["failed"] == result["rejected"] == 0
    patches = {
        r["target"]: r["payload"]
        for r in log_rows(wh, "run-1")
        if r["payload"] and "attributes" in r["payload"]
    }
    assert set(patches) == {a, b, c, d}
    named = {a: ({"vip"}, set()), b: (set(), {"own-1"}), c: ({"ß-new"}, {"größe"}), d: ({"keyed"}, set())}
    for i, uuid in enumerate((a, b, c, d)):
        before = {*SYSTEM_TAGS, *UNICODE_TAGS, f"own-{i}", "added-in-chartmogul"}
        added, removed = named[uuid]
        expected = (before - removed) | added
        assert set(patches[uuid]["attributes"]["tags"]) == expected, uuid  # what each PATCH sent
        assert set(ctl.customer(uuid)["attributes"]["tags"]) == expected, uuid  # what ChartMogul holds
    assert ctl.customer(d)["attributes"]["custom"] == {"CAC": 3, "brand_new_key": "x"}

    make_relation(  # an add-by-email POST touches no tag at all
        wh,
        "reverse_etl.chartmogul_by_email",
        BY_EMAIL_DDL,
        [{"email": "s0@example.com", "key": "seats", "type": "Integer", "value": 2}],
    )
    assert push(wh, client, "run-2", BY_EMAIL)["applied"] == 1
    assert set(ctl.customer(a)["attributes"]["tags"]) >= {*SYSTEM_TAGS, *UNICODE_TAGS, "vip"}
