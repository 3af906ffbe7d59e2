"""A first load's partition sizes, asked of the API itself (the warehouse knows nothing yet).

A refresh plans its split from the last publish (partitions.warehouse_sizes). A first load has no
publish, so without this every status is one cursor and the pass takes as long as the largest status.
Here, a few cheap requests stand in for the warehouse:

1. each status's first page (`per_page=200`, concurrently): the data sources its customers come from,
   and its size within a page (`total_pages` of the first page);
2. for each status holding more than `threshold` of all customers, its exact count and each (status,
   data source)'s exact count: one `per_page=1` request each, whose first page's `total_pages` is the
   count (concurrently too).

A status is split only if its data sources' counts add up to at least the status's count, i.e. the
sample found every data source that status has (a merged customer counts once per source it names, so
the sum can exceed the count). Otherwise it stays one cursor. The walk still checks each split status
against the API's count afterwards and walks it whole if short, so a wrong plan costs time, never data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cm_pipeline.extract.plan import SEPARATOR

SAMPLE_SIZE = 200  # the largest page the API serves


def exact_count(client, **filters) -> tuple[int | None, str]:
    """(customers matching `filters`, "") from the total_pages of a per_page=1 page, or (None, why not)."""
    page = client.list_customers_page(per_page=1, **filters)
    if not page.has_more:
        return len(page.entries), ""
    if page.total_pages is None:
        return None, "the API sent no total_pages"
    if page.per_page not in (None, 1):
        return None, f"the API answered per_page {page.per_page}, not 1"
    return page.total_pages, ""


@dataclass(frozen=True)
class _Sample:
    """A status's first page: its customers' data sources and how many customers it has (about)."""

    count: int | None  # exact when one page holds them all, else total_pages x page size (an upper bound)
    exact: bool
    sources: frozenset[str]


def _sample(client, **filters) -> _Sample:
    """The first page of customers matching `filters` (per_page=200): data sources and a size."""
    page = client.list_customers_page(per_page=SAMPLE_SIZE, **filters)
    sources: set[str] = set()
    for entry in page.entries:
        sources.add(entry.get("data_source_uuid"))
        extra = entry.get("data_source_uuids")
        if isinstance(extra, list):
            sources.update(extra)
    named = frozenset(s for s in sources if isinstance(s, str) and s.strip() and SEPARATOR not in s)
    if not page.has_more:
        return _Sample(len(page.entries), True, named)
    size = page.per_page or SAMPLE_SIZE
    return _Sample(page.total_pages * size if page.total_pages is not None else None, False, named)


def discover_sizes(
    client,
    statuses: Sequence[str],
    threshold: float,
    *,
    system: str | None = None,
    max_workers: int = 10,
    note: Callable[[str], object] = lambda _msg: None,
) -> dict[str, dict[str, int]]:
    """{status filter: {data source: count}} for statuses worth splitting, {status: {"": count}} for others.

    Two rounds of concurrent requests: every status's first page (its data sources and its size within a
    page), then, for the large statuses only, their exact counts and one count per (status, data source).
    The shape is partitions.plan_partitions' `sizes`; a status the API would not size is left out
    (plan_partitions then walks it unsplit). `note` receives one line per decision, for the run log.
    """
    base = {"system": system} if system else {}
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="cm-discover") as pool:
        sampled = pool.map(lambda s: _sample(client, status=s, **base), statuses)
        samples = {s: x for s, x in zip(statuses, sampled, strict=True) if x.count is not None}
        total = sum(x.count for x in samples.values())
        sizes: dict[str, dict[str, int]] = {s: {"": x.count} for s, x in samples.items()}
        large = [s for s, x in samples.items() if not x.exact and total and x.count / total > threshold]
        asks = [(s, None) for s in large]
        asks += [(s, ds) for s in large for ds in sorted(samples[s].sources) if len(samples[s].sources) >= 2]
        counted = pool.map(
            lambda a: exact_count(
                client, status=a[0], **({"data_source_uuid": a[1]} if a[1] else {}), **base
            )[0],
            asks,
        )
        exact: dict[str, int | None] = {}
        by_status: dict[str, dict[str, int | None]] = {}
        for (status, ds), n in zip(asks, counted, strict=True):
            if ds is None:
                exact[status] = n
            else:
                by_status.setdefault(status, {})[ds] = n
    for status in large:
        count = exact.get(status)
        if count is not None:
            sizes[status] = {"": count}
        by_ds = by_status.get(status, {})
        if len(by_ds) < 2:
            note(
                f"{status}: about {samples[status].count} customers, one data source in the sample; not split"
            )
            continue
        if count is None or any(n is None for n in by_ds.values()):
            note(f"{status}: the API gave no count for it or one of its data sources; not split")
            continue
        summed = sum(by_ds.values())
        if summed < count:
            note(
                f"{status}: its {len(by_ds)} sampled data sources hold {summed} of {count} customers;"
                " not split (another data source exists)"
            )
            continue
        sizes[status] = {ds: n for ds, n in by_ds.items() if n}
        note(f"{status}: {count} customers over {len(sizes[status])} data sources; split")
    return sizes
