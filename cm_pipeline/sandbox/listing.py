"""The API's reads that list: GET /v1/customers, GET /v1/customers/search and GET /v1/data_sources.

Both customer listings page by cursor: per_page at most 200 (default 200), an opaque cursor that names
the filters it was issued for (another filter, or the other listing, is a 400 naming `cursor`), and the
deprecated `page`, `per_page`, `current_page`, `total_pages` on a first page only while the
legacy_page_fields knob is on (never on an external_id look-up).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from cm_pipeline.sandbox import validation as v
from cm_pipeline.sandbox.faults import Governor
from cm_pipeline.sandbox.paging import Filters, Page, decode_cursor
from cm_pipeline.sandbox.responses import JSON_TYPE, ApiFailure, Response, bad_param, error_body, missing
from cm_pipeline.sandbox.store import Store


def _query(query: str) -> dict[str, str]:
    return {k: vals[-1] for k, vals in parse_qs(query, keep_blank_values=True).items()}


# ---------------------------------------------------------------- GET /v1/customers


def list_customers(store: Store, governor: Governor, query: str) -> tuple[Response, str | None]:
    """A page of customers; on a continuation page, the pagination_fault knob may break its cursor."""
    q = _query(query)
    per_page = v.parse_per_page(q.get("per_page"))
    status = q.get("status") or None
    filters = Filters(
        data_source_uuid=q.get("data_source_uuid") or None,
        external_id=q.get("external_id") or None,
        status=v.status_from_filter(status) if status else None,
        system=q.get("system") or None,
    )
    after = None
    cursor = q.get("cursor") or None
    if cursor:
        after, cursor_filters = decode_cursor(cursor)
        given = [x for x in filters.as_list() if x is not None]
        if cursor_filters.email is not None or (given and filters != cursor_filters):
            raise bad_param("cursor was issued for different filters than this request's", "cursor")
        filters = cursor_filters
    knobs = governor.knobs
    count = knobs.legacy_page_fields and filters.external_id is None
    page = store.page(filters, per_page, after, count=count)
    next_cursor, has_more, fault = page.cursor, page.has_more, None
    if knobs.pagination_fault is not None and cursor:
        next_cursor, has_more, fault = _pagination_fault(
            store, knobs.pagination_fault, cursor, filters, per_page, page
        )
        if fault is not None:
            governor.count_fault()
    return (200, _page_body(page, per_page, next_cursor, has_more), JSON_TYPE), fault


def _pagination_fault(
    store: Store, knob: str, cursor: str, filters: Filters, per_page: int, page: Page
) -> tuple[str | None, bool, str | None]:
    """(cursor, has_more, fault shown) of a continuation page under the pagination_fault knob."""
    if knob == "rewind_cursor":
        first = store.page(filters, per_page, None, count=False).cursor
        if first is None or first == cursor:
            return page.cursor, page.has_more, None
        return first, True, knob
    if knob == "repeat_cursor":
        return cursor, True, knob
    return None, True, knob  # has_more_without_cursor


def _page_body(page: Page, per_page: int, cursor: str | None, has_more: bool) -> bytes:
    """{"entries", "cursor", "has_more"}, after the deprecated fields when the page was counted."""
    tail = b'"cursor":' + json.dumps(cursor).encode() + b',"has_more":' + (b"true" if has_more else b"false")
    if page.total is not None:
        total_pages = (page.total + per_page - 1) // per_page
        tail = f'"per_page":{per_page},"page":1,"current_page":1,"total_pages":{total_pages},'.encode() + tail
    return b'{"entries":[' + b",".join(page.entries) + b"]," + tail + b"}"


# ---------------------------------------------------------------- GET /v1/customers/search


def search_customers(store: Store, governor: Governor, query: str) -> Response:
    """Every customer with the email (any case, as add-by-email matches), paged like List Customers; a
    first page with nobody is the API's 404, not an empty list."""
    q = _query(query)
    per_page = v.parse_per_page(q.get("per_page"))
    email = q.get("email")
    if email is None or not email.strip():
        raise missing("email")
    filters = Filters(email=email.lower())
    after = None
    cursor = q.get("cursor") or None
    if cursor:
        after, cursor_filters = decode_cursor(cursor)
        if cursor_filters != filters:
            raise bad_param("cursor was issued for a different search than this request's", "cursor")
    page = store.page(filters, per_page, after, count=governor.knobs.legacy_page_fields)
    if after is None and not page.entries:
        message = f'Can\'t find any customers with email: "{email}"'
        raise ApiFailure(404, error_body(404, message, "email"))
    return 200, _page_body(page, per_page, page.cursor, page.has_more), JSON_TYPE


# ---------------------------------------------------------------- GET /v1/data_sources


def list_data_sources(store: Store, query: str) -> dict:
    """Every data source of the account in one answer (no paging), optionally only those of a `name` and
    of a `system` (exact, case-sensitive, as List Customers' `system`)."""
    q = _query(query)
    name, system = q.get("name") or None, q.get("system") or None
    with store.lock:
        records = [
            dict(r)
            for r in store.data_sources.values()
            if (name is None or r["name"] == name) and (system is None or r["system"] == system)
        ]
    return {"data_sources": records}
