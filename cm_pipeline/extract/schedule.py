"""Which page to fetch next: the scheduler the walk's fetcher threads ask, one page at a time.

The wall time of a pass is bounded by max(pages / rate, longest partition's pages x latency). The rate is
shared, the chains are not: the longest chain must never wait. So the scheduler starts requests itself,
one per interval of the client's rate limiter (which then never holds one back), and each start goes to
the partition with the most pages expected to remain (the last publish's count, or on a first load its
data source's share of the status's first page times what the status has shown so far): the longest
chain's next page waits at most one interval. No more requests are in flight than the rate can start in
one observed latency (80% of that), so that the starts seldom queue at all. An unsplit plan keeps the
API's status order (its partitions are as many as the workers, so the order hardly matters, and it is
the order the API documents).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from cm_pipeline.extract.plan import PartitionSpec

LATENCY_WEIGHT = 0.2  # weight of the newest page in the latency average
LOAD = 0.8  # share of the rate x latency concurrency the scheduler fills
SLACK = 1.02  # starts are spaced a little more than the limiter's interval: it never has to wait


@dataclass
class Part:
    """A partition as the walk sees it: where its cursor stands, what it is expected to hold."""

    spec: PartitionSpec
    order: int  # its place in the plan (ties, and the order of an unsplit plan)
    cursor: str | None = None  # the saved cursor to start from (None: the first page)
    customers: int = 0  # staged so far, this run and earlier ones
    expected: int | None = None  # live customers at the last publish
    share: float | None = None  # first load: its data source's share of the status's first page
    done: bool = False
    in_flight: bool = False
    held: bool = False  # a first load's status partition waiting for its split decision
    sample: bool = False  # a first load's status partition, whose first page decides its split
    pages: Iterator | None = field(default=None, repr=False)  # the cursor walk, once started

    @property
    def name(self) -> str:
        return self.spec.name


def remaining(part: Part, status_seen: int, per_page: int) -> float:
    """Customers expected to remain in `part`. Past its estimate (or with none) a quarter page: small
    enough that estimates keep their order, large enough that a partition longer than expected still
    goes ahead of those expected to be nearly done."""
    if part.expected is not None:
        total = part.expected
    elif part.share is not None:
        total = part.share * (status_seen + per_page + 1)  # the status has shown more than a page
    else:
        total = 0
    return max(total - part.customers, per_page / 4)


def in_flight_cap(max_workers: int, rate: float | None, latency: float | None) -> int:
    """Requests to keep in flight: what the rate starts in one latency, 80% of it, within max_workers."""
    if not rate or latency is None:
        return max_workers
    return max(1, min(max_workers, math.floor(LOAD * rate * latency)))


class Scheduler:
    """Hands partitions to fetcher threads by priority; thread-safe (one condition guards everything)."""

    def __init__(
        self,
        parts: list[Part],
        *,
        max_workers: int,
        per_page: int,
        sized: bool,
        rate: float | None,
        interval: float = 0.0,
        clock=time.monotonic,
    ):
        self.cond = threading.Condition()
        self.parts = {p.name: p for p in parts}
        self.max_workers, self.per_page, self.sized, self.rate = max_workers, per_page, sized, rate
        self.interval, self.clock = interval * SLACK, clock
        self.next_start = 0.0
        self.latency: float | None = None
        self.in_flight = 0
        self.stopped = False

    def add(self, parts: list[Part]) -> None:
        with self.cond:
            for part in parts:
                self.parts.setdefault(part.name, part)
            self.cond.notify_all()

    def _priority(self, part: Part, seen: dict[str, int]) -> tuple:
        if not self.sized:
            return (-part.order,)
        return (remaining(part, seen.get(part.spec.status or "", 0), self.per_page), -part.order)

    def _ready(self) -> list[Part]:
        return [p for p in self.parts.values() if not (p.done or p.in_flight or p.held)]

    def take(self) -> Part | None:
        """The partition whose next page to fetch now (waits); None once everything is done or stopped."""
        with self.cond:
            while not self.stopped:
                ready = self._ready()
                if ready and self.in_flight < in_flight_cap(self.max_workers, self.rate, self.latency):
                    wait = self.next_start - self.clock()
                    if wait > 0:  # the next start's time: whoever is best then gets it
                        self.cond.wait(wait)
                        continue
                    self.next_start = self.clock() + self.interval
                    seen: dict[str, int] = {}
                    for p in self.parts.values():
                        if p.spec.data_source_uuid is not None:
                            seen[p.spec.status] = seen.get(p.spec.status, 0) + p.customers
                    part = max(ready, key=lambda p: self._priority(p, seen))
                    part.in_flight, self.in_flight = True, self.in_flight + 1
                    return part
                if not ready and self.in_flight == 0 and not any(p.held for p in self.parts.values()):
                    return None  # nothing left, nothing coming
                self.cond.wait()
            return None

    def returned(self, part: Part, customers: int, has_more: bool, seconds: float) -> None:
        """A page of `part` arrived (and is queued for staging)."""
        with self.cond:
            part.in_flight, self.in_flight = False, self.in_flight - 1
            part.customers += customers
            part.done = part.done or not has_more
            part.held = part.sample and not part.done  # its split is decided before its next page
            part.sample = False
            w = LATENCY_WEIGHT
            self.latency = seconds if self.latency is None else (1 - w) * self.latency + w * seconds
            self.cond.notify_all()

    def release(self, part: Part, *, done: bool) -> None:
        """End a held partition's wait: done (replaced by its split) or walked on as it is."""
        with self.cond:
            part.held = False
            part.done = part.done or done
            self.cond.notify_all()

    def failed(self, part: Part) -> None:
        with self.cond:
            part.in_flight, self.in_flight = False, self.in_flight - 1
            self.stopped = True
            self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
