"""Python's cyclic garbage collector during an extraction: collect young objects less often.

A page parses into ~10,000 dicts, lists and strings, with no reference cycles among them. With Python's
default threshold (a young collection every 700 net allocations) the collector runs ~15 times per page,
and pages waiting in the staging queue survive into older generations, which are then traversed again and
again: measured, a third of a refresh's own CPU time at zero latency (benchmarks/README.md). Raising the
young threshold for the run leaves the collector on (cycles are still freed) but runs it ~70 times less
often; memory stays bounded, as a young collection still follows every YOUNG_THRESHOLD allocations.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 50_000  # net allocations between two young collections while extracting (default 700)

_lock = threading.Lock()
_active = 0
_saved: tuple[int, ...] | None = None


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the young generation's threshold while the block runs, then restore it (process-wide: with
    nested or concurrent uses, the last one out restores what the first one found)."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
            young, *older = _saved
            gc.set_threshold(max(young, YOUNG_THRESHOLD), *older)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
