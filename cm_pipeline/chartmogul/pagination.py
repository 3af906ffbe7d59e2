"""The cursor/has_more walker for GET /customers: pure, network-free, and unable to loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cm_pipeline.chartmogul.errors import PaginationError

# A run of pages that advance the cursor yet return nothing is treated as a loop, not as data.
MAX_CONSECUTIVE_EMPTY_PAGES = 50


@dataclass(frozen=True)
class CustomerPage:
    """One page of customers and the cursors around it (checkpoint `cursor` to resume after this page)."""

    entries: list[dict]
    cursor: str | None  # the next cursor as returned by the API
    has_more: bool
    request_cursor: str | None  # the cursor used to fetch this page (None for the first page)
    number: int  # 1-based page number within this walk
    # Deprecated first-page fields, when the API sent non-negative integers. The cursor is the only way
    # forward, but `total_pages` of a per_page=1 request is an exact count (extract checks coverage with it).
    total_pages: int | None = None
    per_page: int | None = None

    def __repr__(self) -> str:
        return (
            f"CustomerPage(number={self.number}, entries={len(self.entries)}, has_more={self.has_more}, "
            f"cursor={self.cursor!r}, request_cursor={self.request_cursor!r})"
        )


def page_from_body(body: object, *, request_cursor: str | None, number: int) -> CustomerPage:
    """Validate one list response and build its page; PaginationError names what is wrong."""
    if not isinstance(body, dict):
        raise PaginationError(f"page {number}: expected a JSON object, got {type(body).__name__}")
    if "entries" not in body:
        shown = f"keys: {', '.join(sorted(body))[:120]}" if body else "an empty object"
        raise PaginationError(
            f"page {number}: 'entries' must be a list, but the answer has no 'entries' ({shown}); "
            "reading it as an empty last page could silently miss customers"
        )
    entries = body.get("entries")
    if not isinstance(entries, list):
        raise PaginationError(f"page {number}: 'entries' must be a list, got {type(entries).__name__}")
    bad = next((i for i, e in enumerate(entries) if not isinstance(e, dict)), None)
    if bad is not None:
        raise PaginationError(f"page {number}: entries[{bad}] is not an object")
    has_more = body.get("has_more", False)
    if not isinstance(has_more, bool):
        raise PaginationError(f"page {number}: 'has_more' must be a boolean, got {has_more!r}")
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise PaginationError(
            f"page {number}: 'cursor' must be a string or null, got {type(cursor).__name__}"
        )
    cursor = cursor or None
    if has_more and cursor is None:
        raise PaginationError(f"page {number}: has_more is true but no cursor was returned; cannot continue")
    if has_more and cursor == request_cursor:
        raise PaginationError(
            f"page {number}: the API returned the cursor it was given ({cursor!r}); would loop"
        )
    return CustomerPage(
        entries=entries,
        cursor=cursor,
        has_more=has_more,
        request_cursor=request_cursor,
        number=number,
        total_pages=_count_field(body, "total_pages"),
        per_page=_count_field(body, "per_page"),
    )


def _count_field(body: dict, key: str) -> int | None:
    """A deprecated paging field as a non-negative int, or None when absent or not an integer."""
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


class CursorWalker:
    """Walks pages from `start_cursor` with a fetch(cursor) -> body function; fails loudly on any loop.

    A cursor that repeats within the walk, has_more without a cursor, or a long run of empty pages that
    still claim has_more raise PaginationError instead of fetching again.
    """

    def __init__(self, fetch: Callable[[str | None], object], *, start_cursor: str | None = None) -> None:
        self._fetch = fetch
        self.start_cursor = start_cursor
        self.seen: set[str] = set()
        self.pages = 0

    def __iter__(self) -> Iterator[CustomerPage]:
        cursor = self.start_cursor
        if cursor is not None:
            self.seen.add(cursor)
        empty_run = 0
        while True:
            page = page_from_body(self._fetch(cursor), request_cursor=cursor, number=self.pages + 1)
            self.pages += 1
            if page.has_more:
                if page.cursor in self.seen:
                    raise PaginationError(
                        f"page {page.number}: cursor {page.cursor!r} was already used in this walk; "
                        "the API is looping, stopping instead of fetching it again"
                    )
                empty_run = empty_run + 1 if not page.entries else 0
                if empty_run >= MAX_CONSECUTIVE_EMPTY_PAGES:
                    raise PaginationError(
                        f"page {page.number}: {empty_run} consecutive empty pages still report has_more; "
                        "treating it as a loop"
                    )
                self.seen.add(page.cursor)
            yield page
            if not page.has_more:
                return
            cursor = page.cursor
