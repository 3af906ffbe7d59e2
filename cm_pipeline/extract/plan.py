"""The partition plan of a pass: one cursor per status filter, statuses split by data source.

A cursor chain is sequential, so a pass can be no faster than its longest partition. The finest partition
the API's filters allow is (status, data source): GET /v1/data_sources names every data source of the
account, and every customer belongs to one (a merged one to several, and each data source filter lists
it), so a status split over all of them is complete by construction; no count is needed to prove it.

- A refresh knows the sizes from the last publish: a status is split when its cursor would be longer than
  the longest (status, data source) partition, i.e. when it alone would bound the wall time.
- A first load knows nothing: every status starts as one cursor, and its first page decides. A status
  with more customers than a page is split over every data source (its first page's customers are
  fetched again there, the only customers a pass fetches twice by design); the others are done.
- When GET /v1/data_sources fails, the pass walks by status alone, and says so.

The checkpoint rows of a pass ARE its plan: a resumed pass keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from cm_pipeline.chartmogul.vocabulary import STATUS_FILTERS, status_to_filter
from cm_pipeline.warehouse.customers import live_counts_by_status_and_source

SEPARATOR = "@"
# "<status>@fallback" (the whole status, one cursor) was added by an older coverage check; a pass that
# an older version left unfinished still resumes with it.
FALLBACK = "fallback"


@dataclass(frozen=True)
class PartitionSpec:
    """What a partition name means: the list filters its cursor walks."""

    name: str
    status: str | None  # a status filter (underscores), or None for the unpartitioned pass
    data_source_uuid: str | None = None  # set for a split status's sub-partition

    @property
    def base(self) -> str:
        """The status partition this one belongs to (itself when unsplit)."""
        return self.name.split(SEPARATOR, 1)[0]


def sub_partition(status: str, data_source_uuid: str) -> str:
    return f"{status}{SEPARATOR}{data_source_uuid}"


def parse_partition(name: str) -> PartitionSpec:
    """Read a checkpoint's partition name: "Active", "Active@ds_x" or "all"."""
    base, sep, rest = name.partition(SEPARATOR)
    if base not in STATUS_FILTERS:
        if sep:
            raise ValueError(f"partition {name!r}: {base!r} is not a status filter")
        return PartitionSpec(name, None)
    if not sep:
        return PartitionSpec(name, base)
    if not rest:
        raise ValueError(f"partition {name!r}: nothing after {SEPARATOR!r}")
    return PartitionSpec(name, base, None if rest == FALLBACK else rest)


def base_partition(name: str) -> str:
    return name.split(SEPARATOR, 1)[0]


@dataclass(frozen=True)
class Plan:
    """Checkpoint partitions in walking order, their expected sizes, and how the plan was made."""

    partitions: list[str]
    expected: dict[str, int] = field(default_factory=dict)  # partition -> live customers last published
    split: list[str] = field(default_factory=list)  # statuses split by data source
    how: str = ""  # one line for the log and the metadata

    @property
    def sized(self) -> bool:
        """Whether the walk orders partitions by size: a split plan (more partitions than workers), not an
        unsplit one, whose statuses keep the API's order."""
        return bool(self.split)

    def describe(self) -> str:
        return ", ".join(f"{name} ~{self.expected.get(name, 0)}" for name in self.partitions)


def plan_partitions(
    statuses: Sequence[str], sizes: Mapping[str, Mapping[str, int]], data_sources: Sequence[str] | None
) -> Plan:
    """A refresh's plan: split each status whose cursor would be longer than the longest (status, data
    source) partition over every data source of the account.

    `sizes` maps a status filter to {data_source_uuid: live customers whose primary source it is} (the last
    publish); `data_sources` lists every data source of the account, or is None when GET /v1/data_sources
    failed (nothing is split: only the full list makes a split complete).
    """
    totals = {s: sum(sizes.get(s, {}).values()) for s in statuses}
    sources = list(data_sources or [])
    longest = max((sizes.get(s, {}).get(ds, 0) for s in statuses for ds in sources), default=0)
    expected: dict[str, int] = {}
    split: list[str] = []
    for status in statuses:
        if data_sources is not None and len(sources) >= 2 and totals[status] > longest:
            split.append(status)
            expected.update({sub_partition(status, ds): sizes.get(status, {}).get(ds, 0) for ds in sources})
        else:
            expected[status] = totals[status]
    order = sorted(expected, key=lambda name: -expected[name]) if split else list(expected)
    if data_sources is None:
        how = "by status only (GET /v1/data_sources failed)"
    else:
        how = (
            f"{len(split)} of {len(statuses)} statuses split over the {len(sources)} data sources of"
            " GET /v1/data_sources (those whose cursor would outlast the longest (status, data source)"
            " partition, as last published)"
        )
    return Plan(order, expected, split, how)


# With nothing known of an account, the order its statuses usually rank in by size: churned customers pile
# up over an account's life, paying ones next; leads exist only where leads are imported. A first load
# starts its statuses, and breaks ties between its estimates, in this order.
LIKELY_LARGEST_FIRST = ("Cancelled", "Active", "Past_Due", "New_Lead", "Working_Lead", "Qualified_Lead")


def first_load_plan(statuses: Sequence[str]) -> Plan:
    """Nothing published yet: one cursor per status; each one's first page decides its split (walk.py)."""
    rank = {s: i for i, s in enumerate(LIKELY_LARGEST_FIRST)}
    order = sorted(statuses, key=lambda s: rank.get(s, len(rank)))
    how = "first load: each status's first page decides its split over GET /v1/data_sources"
    return Plan(order, {}, [], how)


def split_sample(has_more: bool, data_sources: Sequence[str] | None) -> bool:
    """Whether a first load splits a status whose first page has just arrived: when more customers follow
    and the account has two or more data sources (then every one gets a partition)."""
    return has_more and data_sources is not None and len(data_sources) >= 2


def sample_shares(entries: Iterable[dict], data_sources: Sequence[str]) -> dict[str, float]:
    """Each data source's share of a status's first page (a merged customer counts for each of its data
    sources): what a first load sizes the status's sub-partitions by until they report themselves."""
    counts = dict.fromkeys(data_sources, 0)
    total = 0
    for entry in entries:
        extra = entry.get("data_source_uuids")
        named = {entry.get("data_source_uuid"), *(extra if isinstance(extra, list) else [])}
        for ds in {x for x in named if isinstance(x, str)} & counts.keys():
            counts[ds] += 1
        total += 1
    return {ds: n / total if total else 0.0 for ds, n in counts.items()}


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
