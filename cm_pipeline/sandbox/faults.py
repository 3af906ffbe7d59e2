"""Knobs that make the sandbox misbehave like the real API: latency, rate limit, capacity, faults, and
whether first pages carry the deprecated paging fields. Each is a Knobs field: a SandboxServer /
SandboxProcess keyword, a `python -m cm_pipeline.sandbox` flag, and changeable while the sandbox runs
with SandboxControl.configure(name=value).

  latency_ms          added to every API request before it is answered
  rate_limit_rps      API requests admitted per sliding second; the rest get 429 (Retry-After: retry_after)
  max_connections     API requests in flight above this get 503
  legacy_page_fields  true (the default): the first page of GET /v1/customers and of the email search
                      carries the deprecated `page`, `per_page`, `current_page`, `total_pages`, which
                      list-customers.txt says it *may*; false: no page carries them (entries, cursor,
                      has_more only), as a client must expect from a real account

fault_kinds (chosen at random, seeded, for fault_rate of the requests whose method is in fault_methods;
the fault's answer is sent instead of the real one, before or after the request is applied):
  500 502 503 504 520 524  that status with a ChartMogul-style JSON error body
  html500                  a 500 with an HTML page (as a proxy in front of the API would send)
  drop                     the connection is closed with no answer
  empty_body               the route's success status (201 for POST /v1/customers, else 200) and an
                           empty body (Content-Length: 0)
  empty_object             the route's success status and the body `{}`

fault_kinds answer on every API route (customers, search, data sources), never on the /_sandbox admin door.

pagination_fault breaks GET /v1/customers paging on every continuation page (a request that carries a
cursor; the first page stays correct, so a client has already consumed it when the fault shows; the
email search is left alone):
  repeat_cursor            has_more true and the very cursor the request carried
  rewind_cursor            has_more true and the first page's cursor again (a two-page cycle); the page
                           fetched with the first page's cursor itself is answered normally
  has_more_without_cursor  has_more true and cursor null
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields

FAULT_KINDS = ("500", "502", "503", "504", "520", "524", "html500", "drop", "empty_body", "empty_object")
# Kinds that answer a 2xx without the resource: a success in name only.
EMPTY_SUCCESS_BODIES = {"empty_body": b"", "empty_object": b"{}"}
FAULT_PHASES = ("before", "after")
HTTP_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
PAGINATION_FAULTS = ("repeat_cursor", "rewind_cursor", "has_more_without_cursor")


@dataclass
class Knobs:
    latency_ms: float = 0.0
    rate_limit_rps: int | None = None
    retry_after: float | None = None
    max_connections: int | None = None
    fault_rate: float = 0.0
    fault_kinds: list[str] = field(default_factory=lambda: ["500", "502", "503", "504"])
    fault_phase: str = "before"
    fault_methods: list[str] = field(default_factory=lambda: list(HTTP_METHODS))
    fault_seed: int = 0
    pagination_fault: str | None = None
    legacy_page_fields: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


KNOB_NAMES = tuple(f.name for f in fields(Knobs))


def validated_knobs(current: Knobs, changes: dict) -> Knobs:
    """A new Knobs with `changes` applied; ValueError naming the knob on a bad value or unknown name."""
    data = current.as_dict()
    for name, value in changes.items():
        if name not in KNOB_NAMES:
            raise ValueError(f"unknown knob {name!r}; known: {', '.join(KNOB_NAMES)}")
        data[name] = value
    k = Knobs(**data)
    if not isinstance(k.latency_ms, (int, float)) or k.latency_ms < 0:
        raise ValueError(f"latency_ms must be a number >= 0, got {k.latency_ms!r}")
    for name in ("rate_limit_rps", "max_connections"):
        val = getattr(k, name)
        if val is not None and (not isinstance(val, int) or isinstance(val, bool) or val < 1):
            raise ValueError(f"{name} must be a positive integer or null, got {val!r}")
    if k.retry_after is not None and (not isinstance(k.retry_after, (int, float)) or k.retry_after < 0):
        raise ValueError(f"retry_after must be a number >= 0 or null, got {k.retry_after!r}")
    if not isinstance(k.fault_rate, (int, float)) or not 0 <= k.fault_rate <= 1:
        raise ValueError(f"fault_rate must be between 0 and 1, got {k.fault_rate!r}")
    if isinstance(k.fault_kinds, str):
        k.fault_kinds = [x for x in k.fault_kinds.split(",") if x]
    bad = [x for x in k.fault_kinds if x not in FAULT_KINDS]
    if bad or not k.fault_kinds:
        raise ValueError(
            f"fault_kinds must be a non-empty list from {', '.join(FAULT_KINDS)}, got {k.fault_kinds!r}"
        )
    if k.fault_phase not in FAULT_PHASES:
        raise ValueError(f"fault_phase must be 'before' or 'after', got {k.fault_phase!r}")
    if isinstance(k.fault_methods, str):
        k.fault_methods = [x for x in k.fault_methods.split(",") if x]
    k.fault_methods = [m.upper() for m in k.fault_methods]
    if not isinstance(k.fault_seed, int):
        raise ValueError(f"fault_seed must be an integer, got {k.fault_seed!r}")
    if k.pagination_fault is not None and k.pagination_fault not in PAGINATION_FAULTS:
        raise ValueError(
            f"pagination_fault must be null or one of {', '.join(PAGINATION_FAULTS)}, got {k.pagination_fault!r}"
        )
    if not isinstance(k.legacy_page_fields, bool):
        raise ValueError(f"legacy_page_fields must be true or false, got {k.legacy_page_fields!r}")
    return k


class Governor:
    """Per-request gatekeeping and counters, shared by all handler threads."""

    def __init__(self, knobs: Knobs):
        self.lock = threading.Lock()
        self.knobs = knobs
        self._fault_rng = random.Random(knobs.fault_seed)
        self.in_flight = 0
        self._accepted: deque[float] = deque()  # start times of requests admitted in the last second
        self._started: deque[float] = deque()  # start times of all API requests in the last second
        self.reset_stats()

    def reset_stats(self) -> None:
        """Zero the counters, and the one-second windows too, so a test starts from a quiet server."""
        with self.lock:
            self._accepted.clear()
            self._started.clear()
            self.stats = {
                "requests": 0,
                "by_route": {},
                "by_status": {},
                "rate_limited": 0,
                "over_capacity": 0,
                "faults": 0,
                "peak_concurrency": 0,
                "peak_requests_per_second": 0,
            }

    def configure(self, changes: dict) -> Knobs:
        with self.lock:
            new = validated_knobs(self.knobs, changes)
            if "fault_seed" in changes:
                self._fault_rng = random.Random(new.fault_seed)
            self.knobs = new
            return new

    def enter(self, route: str) -> str | None:
        """Admit one API request. Returns None, 'over_capacity' or 'rate_limited'. Always pair with leave()."""
        now = time.monotonic()
        with self.lock:
            s = self.stats
            s["requests"] += 1
            s["by_route"][route] = s["by_route"].get(route, 0) + 1
            self.in_flight += 1
            s["peak_concurrency"] = max(s["peak_concurrency"], self.in_flight)
            started = self._started
            started.append(now)
            while started and started[0] <= now - 1.0:
                started.popleft()
            s["peak_requests_per_second"] = max(s["peak_requests_per_second"], len(started))
            k = self.knobs
            if k.max_connections is not None and self.in_flight > k.max_connections:
                s["over_capacity"] += 1
                return "over_capacity"
            if k.rate_limit_rps is not None:
                acc = self._accepted
                while acc and acc[0] <= now - 1.0:
                    acc.popleft()
                if len(acc) >= k.rate_limit_rps:
                    s["rate_limited"] += 1
                    return "rate_limited"
                acc.append(now)
            return None

    def leave(self, status: int | None) -> None:
        with self.lock:
            self.in_flight -= 1
            if status is not None:
                key = str(status)
                self.stats["by_status"][key] = self.stats["by_status"].get(key, 0) + 1

    def pick_fault(self, method: str) -> tuple[str, str] | None:
        """(kind, phase) for this request, or None; seeded so a run is reproducible."""
        with self.lock:
            k = self.knobs
            if k.fault_rate <= 0 or method not in k.fault_methods:
                return None
            if self._fault_rng.random() >= k.fault_rate:
                return None
            self.stats["faults"] += 1
            return self._fault_rng.choice(k.fault_kinds), k.fault_phase

    def count_fault(self) -> None:
        """Count a fault decided outside pick_fault (a pagination fault)."""
        with self.lock:
            self.stats["faults"] += 1

    def snapshot(self) -> dict:
        with self.lock:
            return {
                **self.stats,
                "by_route": dict(self.stats["by_route"]),
                "by_status": dict(self.stats["by_status"]),
            }
