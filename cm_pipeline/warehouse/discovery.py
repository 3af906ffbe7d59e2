"""A first load's partition sizes, asked of the API itself (the warehouse knows nothing yet).

A refresh plans its split from the last publish (partitions.warehouse_sizes). A first load has no
publish, so without this every status is one cursor and the pass takes as long as the largest status.
Here, a few cheap requests stand in for the warehouse:

1. one `per_page=1` request per status: the first page's `total_pages` is then the status's exact count;
2. for each status holding more than `threshold` of all customers, one sample page (`per_page=200`) names
   the data sources its customers come from;
3. one `per_page=1` request per (status, data source) gives each sub-partition's exact count.

A status is split only if its data sources' counts add up to at least the status's count, i.e. the
sample found every data source that status has (a merged customer counts once per source it names, so
the sum can exceed the count). Otherwise it stays one cursor. The walk still checks each split status
against the API's count afterwards and walks it whole if short, so a wrong plan costs time, never data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from cm_pipeline.warehouse.partitions import SEPARATOR

SAMPLE_SIZE = 200  # the largest page the API serves


def _exact_count(client, **filters) -> int | None:
    """The number of customers matching `filters`: total_pages of a per_page=1 page (None if not sent)."""
    page = client.list_customers_page(per_page=1, **filters)
    if not page.has_more:
        return len(page.entries)
    if page.total_pages is None or page.per_page not in (None, 1):
        return None
    return page.total_pages


def _sample_sources(client, **filters) -> set[str]:
    """Data sources named by the first page of customers matching `filters`."""
    page = client.list_customers_page(per_page=SAMPLE_SIZE, **filters)
    sources: set[str] = set()
    for entry in page.entries:
        sources.add(entry.get("data_source_uuid"))
        extra = entry.get("data_source_uuids")
        if isinstance(extra, list):
            sources.update(extra)
    return {s for s in sources if isinstance(s, str) and s.strip() and SEPARATOR not in s}


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

    The shape is partitions.plan_partitions' `sizes`; a status the API would not count is left out
    (plan_partitions then walks it unsplit). `note` receives one line per decision, for the run log.
    """
    base = {"system": system} if system else {}
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="cm-discover") as pool:
        found = pool.map(lambda s: _exact_count(client, status=s, **base), statuses)
        known = {s: n for s, n in zip(statuses, found, strict=True) if n is not None}
        total = sum(known.values())
        sizes: dict[str, dict[str, int]] = {s: {"": n} for s, n in known.items()}
        large = [s for s, n in known.items() if total and n / total > threshold and n > SAMPLE_SIZE]
        sampled = pool.map(lambda s: _sample_sources(client, status=s, **base), large)
        samples = dict(zip(large, sampled, strict=True))
        pairs = [(s, ds) for s in large for ds in sorted(samples[s]) if len(samples[s]) >= 2]
        found = pool.map(lambda p: _exact_count(client, status=p[0], data_source_uuid=p[1], **base), pairs)
        by_status: dict[str, dict[str, int | None]] = {}
        for (status, ds), n in zip(pairs, found, strict=True):
            by_status.setdefault(status, {})[ds] = n
    for status in large:
        by_ds = by_status.get(status, {})
        if len(by_ds) < 2:
            note(f"{status}: {known[status]} customers from one data source in the sample; not split")
            continue
        if any(n is None for n in by_ds.values()):
            note(f"{status}: the API gave no count for a data source; not split")
            continue
        summed = sum(by_ds.values())
        if summed < known[status]:
            note(
                f"{status}: its {len(by_ds)} sampled data sources hold {summed} of {known[status]} customers;"
                " not split (another data source exists)"
            )
            continue
        sizes[status] = {ds: n for ds, n in by_ds.items() if n}
        note(f"{status}: {known[status]} customers over {len(sizes[status])} data sources; split")
    return sizes
