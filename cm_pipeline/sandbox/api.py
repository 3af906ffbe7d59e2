"""The API's routes:
  GET /v1/customers, GET/PATCH /v1/customers/{uuid}, POST /v1/customers,
  POST /v1/customers/attributes/custom
server.py has checked the key (HTTP Basic, key as username) and applied the knobs before these answer.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote

from cm_pipeline.sandbox import validation as v
from cm_pipeline.sandbox.faults import Governor
from cm_pipeline.sandbox.responses import (
    HTML_500,
    HTML_TYPE,
    JSON_TYPE,
    ApiFailure,
    Response,
    bad_param,
    error_body,
    json_response,
)
from cm_pipeline.sandbox.store import Filters, Page, Store, decode_cursor
from cm_pipeline.sandbox.writes import add_custom_by_email, create_customer, update_customer

ROUTE_LIST = "GET /v1/customers"
ROUTE_GET = "GET /v1/customers/{uuid}"
ROUTE_PATCH = "PATCH /v1/customers/{uuid}"
ROUTE_CREATE = "POST /v1/customers"
ROUTE_ADD_CUSTOM = "POST /v1/customers/attributes/custom"


class ApiRequest(NamedTuple):
    method: str
    target: str  # as the request line sent it
    path: str  # without query and trailing slash
    query: str
    body: bytes

    def route(self) -> tuple[str | None, str | None]:
        """(route, customer uuid); (None, None) when no route takes the request."""
        method, path = self.method, self.path
        if path == "/v1/customers":
            return {"GET": ROUTE_LIST, "POST": ROUTE_CREATE}.get(method), None
        if path == "/v1/customers/attributes/custom":
            return (ROUTE_ADD_CUSTOM if method == "POST" else None), None
        if path.startswith("/v1/customers/") and path.count("/") == 3:
            uuid = unquote(path.rsplit("/", 1)[1])
            return {"GET": ROUTE_GET, "PATCH": ROUTE_PATCH}.get(method), uuid
        return None, None


def api_answer(store: Store, governor: Governor, request: ApiRequest) -> tuple[Response, str | None]:
    """The answer to an API request and the pagination fault it carries, if any (see faults.py).
    A sandbox bug answers as the API's own failures do (an HTML 500), not as a dropped line."""
    route, uuid = request.route()
    try:
        if route is None:
            message = f"No route for {request.method} {request.target}"
            return json_response(404, error_body(404, message)), None
        if route == ROUTE_LIST:
            return list_customers(store, governor, request.query)
        if route == ROUTE_GET:
            return (200, store.get_bytes(uuid), JSON_TYPE), None
        data = _parse_json(request.body)
        if route == ROUTE_CREATE:
            return json_response(201, create_customer(store, data)), None
        if route == ROUTE_PATCH:
            return json_response(200, update_customer(store, uuid, data)), None
        return json_response(200, {"entries": add_custom_by_email(store, data)}), None  # ROUTE_ADD_CUSTOM
    except ApiFailure as exc:
        return json_response(exc.status, exc.body), None
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return (500, HTML_500, HTML_TYPE), None


def _parse_json(body: bytes) -> Any:
    if not body:
        raise bad_param("Request body is missing", None)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_param(f"Request body is not valid JSON: {exc}", None) from None


# ---------------------------------------------------------------- GET /v1/customers


def list_customers(store: Store, governor: Governor, query: str) -> tuple[Response, str | None]:
    """A page of customers; on a continuation page, the pagination_fault knob may break its cursor."""
    q = {k: vals[-1] for k, vals in parse_qs(query, keep_blank_values=True).items()}
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
        if given and filters != cursor_filters:
            raise bad_param("cursor was issued for different filters than this request's", "cursor")
        filters = cursor_filters
    page = store.page(filters, per_page, after)
    next_cursor, has_more, fault = page.cursor, page.has_more, None
    knob = governor.knobs.pagination_fault
    if knob is not None and cursor:
        next_cursor, has_more, fault = _pagination_fault(store, knob, cursor, filters, per_page, page)
        if fault is not None:
            governor.count_fault()
    return (200, _page_body(page, per_page, filters, next_cursor, has_more), JSON_TYPE), fault


def _pagination_fault(
    store: Store, knob: str, cursor: str, filters: Filters, per_page: int, page: Page
) -> tuple[str | None, bool, str | None]:
    """(cursor, has_more, fault shown) of a continuation page under the pagination_fault knob."""
    if knob == "rewind_cursor":
        first = store.page(filters, per_page, None).cursor
        if first is None or first == cursor:
            return page.cursor, page.has_more, None
        return first, True, knob
    if knob == "repeat_cursor":
        return cursor, True, knob
    return None, True, knob  # has_more_without_cursor


def _page_body(page: Page, per_page: int, filters: Filters, cursor: str | None, has_more: bool) -> bytes:
    tail = b'"cursor":' + json.dumps(cursor).encode() + b',"has_more":' + (b"true" if has_more else b"false")
    # First pages carry the deprecated paging fields, except external_id look-ups, which answer
    # exactly {"entries": [...], "has_more": ..., "cursor": ...} (README facts).
    if page.total is not None and filters.external_id is None:
        total_pages = (page.total + per_page - 1) // per_page
        tail = f'"per_page":{per_page},"page":1,"current_page":1,"total_pages":{total_pages},'.encode() + tail
    return b'{"entries":[' + b",".join(page.entries) + b"]," + tail + b"}"
