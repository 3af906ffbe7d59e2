"""The partition plan: pure planning and naming, options, and the plan persisted as checkpoint rows."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cm_pipeline.chartmogul.vocabulary import STATUS_FILTERS
from cm_pipeline.extract.options import ALL_PARTITION, ExtractOptions
from cm_pipeline.extract.plan import (
    PartitionSpec,
    checked_plan,
    first_load_plan,
    parse_partition,
    plan_partitions,
    sample_shares,
    split_sample,
)
from cm_pipeline.warehouse.locks import AdvisoryLock
from cm_pipeline.warehouse.passes import open_pass, replace_partition
from cm_pipeline.warehouse.schema import ensure_schema

SOURCES = ["ds_a", "ds_b", "ds_c"]
SIZES = {
    "Active": {"ds_a": 50, "ds_b": 30},  # 80 in one cursor, longer than the longest pair (50): split
    "Cancelled": {"ds_a": 45},  # one data source: its cursor IS a pair
    "New_Lead": {"ds_a": 3, "ds_b": 2},  # two sources, but short
}


def test_a_status_longer_than_the_longest_pair_is_split_over_every_listed_source_largest_first():
    plan = plan_partitions(STATUS_FILTERS, SIZES, SOURCES)
    assert plan.split == ["Active"] and plan.sized
    assert plan.partitions[:3] == ["Active@ds_a", "Cancelled", "Active@ds_b"]
    # every data source the API lists gets a partition, known to the warehouse or not (ds_c: 0 so far)
    assert set(plan.partitions) == {"Active@ds_a", "Active@ds_b", "Active@ds_c", *STATUS_FILTERS} - {"Active"}
    assert plan.expected["Active@ds_c"] == 0 and plan.expected["Past_Due"] == 0
    assert "1 of 7 statuses split over the 3 data sources" in plan.how


def test_without_the_data_sources_list_or_a_second_source_nothing_is_split():
    failed = plan_partitions(STATUS_FILTERS, SIZES, None)
    assert failed.split == [] and failed.partitions == list(STATUS_FILTERS) and not failed.sized
    assert "by status only" in failed.how
    one = plan_partitions(STATUS_FILTERS, SIZES, ["ds_a"])
    assert one.split == [] and one.partitions == list(STATUS_FILTERS)


def test_a_first_load_starts_every_status_and_its_first_page_decides():
    plan = first_load_plan(STATUS_FILTERS)
    assert sorted(plan.partitions) == sorted(STATUS_FILTERS) and plan.partitions[:2] == [
        "Cancelled",
        "Active",
    ]
    assert split_sample(True, SOURCES)
    assert not split_sample(False, SOURCES)  # one page held them all: the status is done
    assert not split_sample(True, None) and not split_sample(True, ["ds_a"])
    merged = {"data_source_uuid": "ds_a", "data_source_uuids": ["ds_a", "ds_b"]}
    entries = [{"data_source_uuid": "ds_a"}] * 2 + [
        merged,
        {"data_source_uuid": "ds_x", "data_source_uuids": 7},
    ]
    assert sample_shares(entries, SOURCES) == {"ds_a": 0.75, "ds_b": 0.25, "ds_c": 0.0}


def test_partition_names_read_back():
    assert parse_partition("Active") == PartitionSpec("Active", "Active")
    assert parse_partition("Past_Due@ds_x") == PartitionSpec("Past_Due@ds_x", "Past_Due", "ds_x")
    assert parse_partition("Active@fallback") == PartitionSpec("Active@fallback", "Active")  # older passes
    assert parse_partition(ALL_PARTITION).status is None
    assert parse_partition("Active@ds_x").base == "Active"
    for bad in ("Nope@ds_x", "Active@"):
        with pytest.raises(ValueError, match="partition"):
            parse_partition(bad)


def test_split_options():
    assert ExtractOptions().splits
    assert not ExtractOptions(max_workers=1).splits  # one request at a time: the plan changes nothing
    assert not ExtractOptions(partition_by_status=False).splits
    assert not ExtractOptions(data_source_uuid="ds_x").splits
    assert not ExtractOptions(split_large_partitions=False).splits


def test_the_plan_is_persisted_a_split_replaces_its_status_and_a_resumed_pass_keeps_it(fresh_db):
    engine = sa.create_engine(fresh_db)
    try:
        ensure_schema(engine)
        plan = plan_partitions(STATUS_FILTERS, SIZES, SOURCES).partitions
        with AdvisoryLock(engine):
            first = open_pass(engine, filters={}, per_page=20, plan=checked_plan(STATUS_FILTERS, plan))
            replace_partition(engine, first.pass_id, "Cancelled", ["Cancelled@ds_b"])
            subs = ["New_Lead@ds_a", "New_Lead@ds_b"]
            added = replace_partition(engine, first.pass_id, "New_Lead", subs)
            assert set(added) == set(subs) and not any(cp.done for cp in added.values())
            again = open_pass(engine, filters={}, per_page=20, plan=STATUS_FILTERS)  # keeps its own plan
            with pytest.raises(ValueError, match="plan"):
                checked_plan(STATUS_FILTERS, ["Active@ds_a"])
        assert again.resumed and again.pass_id == first.pass_id
        assert set(again.checkpoints) == {*plan, "Cancelled@ds_b", *subs}
        assert again.checkpoints["New_Lead"].done  # replaced: closed where it stood
    finally:
        engine.dispose()
