"""The partition plan of a pass: one cursor per status filter, and large statuses split by data source.

A cursor chain is sequential, so a pass can be no faster than its largest partition. A status holding
more than `threshold` of the live customers (as the last publish knows them) and spread over two or more
data sources is walked as one sub-partition per (status, data source), named "Active@ds_...". A split
status is checked afterwards against the API's exact count; if short, the fallback partition
"Active@fallback" walks the whole status with one cursor. The checkpoint rows of a pass ARE its plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.vocabulary import STATUS_FILTERS, status_to_filter
from cm_pipeline.warehouse.customers import live_counts_by_status_and_source

SEPARATOR = "@"
FALLBACK = "fallback"  # "<status>@fallback": the whole status, one cursor (after a failed coverage check)


@dataclass(frozen=True)
class PartitionSpec:
    """What a partition name means: the list filters its cursor walks."""

    name: str
    status: str | None  # a status filter (underscores), or None for the unpartitioned pass
    data_source_uuid: str | None = None  # set for a split status's sub-partition
    fallback: bool = False

    @property
    def base(self) -> str:
        """The status partition this one belongs to (itself when unsplit)."""
        return self.name.split(SEPARATOR, 1)[0]


def sub_partition(status: str, data_source_uuid: str) -> str:
    return f"{status}{SEPARATOR}{data_source_uuid}"


def fallback_partition(status: str) -> str:
    return f"{status}{SEPARATOR}{FALLBACK}"


def parse_partition(name: str) -> PartitionSpec:
    """Read a checkpoint's partition name: "Active", "Active@ds_x", "Active@fallback" or "all"."""
    base, sep, rest = name.partition(SEPARATOR)
    if base not in STATUS_FILTERS:
        if sep:
            raise ValueError(f"partition {name!r}: {base!r} is not a status filter")
        return PartitionSpec(name, None)
    if not sep:
        return PartitionSpec(name, base)
    if not rest:
        raise ValueError(f"partition {name!r}: nothing after {SEPARATOR!r}")
    if rest == FALLBACK:
        return PartitionSpec(name, base, None, True)
    return PartitionSpec(name, base, rest)


def base_partition(name: str) -> str:
    return name.split(SEPARATOR, 1)[0]


@dataclass(frozen=True)
class Plan:
    """Checkpoint partitions, largest expected first, and the statuses that were split."""

    partitions: list[str]
    expected: dict[str, int]  # partition -> live customers the warehouse holds for it (an estimate)
    split: list[str]  # statuses split by data source

    def describe(self) -> str:
        return ", ".join(f"{name} ~{self.expected.get(name, 0)}" for name in self.partitions)


def plan_partitions(
    statuses: Sequence[str], sizes: Mapping[str, Mapping[str, int]], threshold: float
) -> Plan:
    """Split each status whose share of the live customers exceeds `threshold` over its data sources.

    `sizes` maps a status filter to {data_source_uuid: live customers whose primary source it is}; a source
    listed with 0 still gets a sub-partition (customers merged from it name it only in data_source_uuids).
    With no customers known (a first load), nothing is split.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold: must be in (0, 1], got {threshold!r}")
    total = sum(sum(by_ds.values()) for status, by_ds in sizes.items() if status in statuses)
    expected: dict[str, int] = {}
    split: list[str] = []
    for status in statuses:
        by_ds = sizes.get(status, {})
        count = sum(by_ds.values())
        if total and count / total > threshold and len(by_ds) >= 2:
            split.append(status)
            for ds, n in by_ds.items():
                expected[sub_partition(status, ds)] = n
        else:
            expected[status] = count
    # With splits there are more partitions than workers: start the longest cursor chains first. Without,
    # the status order stays (one partition per status, as an unsplit pass always walked them).
    order = sorted(expected, key=lambda name: (-expected[name], name)) if split else list(expected)
    return Plan(order, expected, split)


def warehouse_sizes(engine: Engine, system: str | None = None) -> dict[str, dict[str, int]]:
    """Live customers per status filter and data source, from the published table (the last pass)."""
    sizes: dict[str, dict[str, int]] = {}
    for status, ds, count in live_counts_by_status_and_source(engine, system):
        try:
            status_filter = status_to_filter(status)
        except ValueError:
            continue  # a status no filter selects: the unsplit walks cannot reach it either
        if ds.strip() and SEPARATOR not in ds:
            sizes.setdefault(status_filter, {})[ds] = count
    return sizes


def checked_plan(partitions: Sequence[str], plan: Sequence[str]) -> list[str]:
    """`plan`, once it is known to cover exactly the status `partitions`; ValueError naming both if not."""
    chosen = list(plan)
    if {base_partition(p) for p in chosen} != set(partitions):
        raise ValueError(f"plan: {chosen!r} does not cover exactly the partitions {list(partitions)!r}")
    return chosen
