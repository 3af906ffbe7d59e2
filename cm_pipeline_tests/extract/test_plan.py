"""The partition plan: pure planning and naming, options, and the plan persisted as checkpoint rows."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cm_pipeline.chartmogul.vocabulary import STATUS_FILTERS
from cm_pipeline.extract.options import ALL_PARTITION, ExtractOptions
from cm_pipeline.extract.plan import PartitionSpec, checked_plan, parse_partition, plan_partitions
from cm_pipeline.warehouse.locks import AdvisoryLock
from cm_pipeline.warehouse.passes import add_partition, open_pass
from cm_pipeline.warehouse.schema import ensure_schema

SIZES = {
    "Active": {"ds_a": 50, "ds_b": 30, "ds_c": 0},
    "Cancelled": {"ds_a": 15},  # large, but one data source: cannot split
    "New_Lead": {"ds_a": 3, "ds_b": 2},  # two sources, but small
}


def test_a_status_above_the_threshold_with_two_sources_is_split_largest_first():
    plan = plan_partitions(STATUS_FILTERS, SIZES, threshold=0.1)
    assert plan.split == ["Active"]
    assert plan.partitions[:3] == ["Active@ds_a", "Active@ds_b", "Cancelled"]
    assert set(plan.partitions) == {"Active@ds_a", "Active@ds_b", "Active@ds_c", *STATUS_FILTERS} - {"Active"}
    assert plan.expected["Active@ds_c"] == 0 and plan.expected["Past_Due"] == 0


def test_nothing_splits_on_a_first_load_or_below_the_threshold():
    first = plan_partitions(STATUS_FILTERS, {}, threshold=0.1)
    assert first.split == [] and first.partitions == list(STATUS_FILTERS)
    high = plan_partitions(STATUS_FILTERS, SIZES, threshold=0.85)  # Active holds 80%
    assert high.split == [] and high.partitions == list(STATUS_FILTERS)
    with pytest.raises(ValueError, match="threshold"):
        plan_partitions(STATUS_FILTERS, SIZES, threshold=0)


def test_partition_names_read_back():
    assert parse_partition("Active") == PartitionSpec("Active", "Active")
    assert parse_partition("Past_Due@ds_x") == PartitionSpec("Past_Due@ds_x", "Past_Due", "ds_x")
    assert parse_partition("Active@fallback") == PartitionSpec("Active@fallback", "Active", None, True)
    assert parse_partition(ALL_PARTITION).status is None
    assert parse_partition("Active@ds_x").base == "Active"
    for bad in ("Nope@ds_x", "Active@"):
        with pytest.raises(ValueError, match="partition"):
            parse_partition(bad)


def test_split_options():
    assert ExtractOptions().splits and ExtractOptions().threshold == pytest.approx(0.1)
    assert ExtractOptions(max_workers=4).threshold == 0.25
    assert not ExtractOptions(partition_by_status=False).splits
    assert not ExtractOptions(data_source_uuid="ds_x").splits
    assert not ExtractOptions(split_large_partitions=False).splits
    for bad in (0, 1.5, True, "0.2"):
        with pytest.raises(ValueError, match="split_threshold"):
            ExtractOptions(split_threshold=bad)


def test_the_plan_is_persisted_and_a_resumed_pass_keeps_it(fresh_db):
    engine = sa.create_engine(fresh_db)
    try:
        ensure_schema(engine)
        plan = plan_partitions(STATUS_FILTERS, SIZES, threshold=0.1).partitions
        with AdvisoryLock(engine):
            first = open_pass(engine, filters={}, per_page=20, plan=checked_plan(STATUS_FILTERS, plan))
            add_partition(engine, first.pass_id, "Active@fallback")
            again = open_pass(engine, filters={}, per_page=20, plan=STATUS_FILTERS)  # keeps its own plan
            with pytest.raises(ValueError, match="plan"):
                checked_plan(STATUS_FILTERS, ["Active@ds_a"])
        assert again.resumed and again.pass_id == first.pass_id
        assert set(again.checkpoints) == {*plan, "Active@fallback"}
    finally:
        engine.dispose()
