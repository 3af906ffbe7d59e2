"""The API's routes:
  GET /v1/customers, GET /v1/customers/search, GET/PATCH /v1/customers/{uuid}, POST /v1/customers,
  POST /v1/customers/attributes/custom, GET /v1/data_sources
server.py has checked the key (HTTP Basic, key as username) and applied the knobs before these answer.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any, NamedTuple
from urllib.parse import unquote

from cm_pipeline.sandbox.faults import Governor
from cm_pipeline.sandbox.listing import list_customers, list_data_sources, search_customers
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
from cm_pipeline.sandbox.store import Store
from cm_pipeline.sandbox.writes import add_custom_by_email, create_customer, update_customer

ROUTE_LIST = "GET /v1/customers"
ROUTE_GET = "GET /v1/customers/{uuid}"
ROUTE_PATCH = "PATCH /v1/customers/{uuid}"
ROUTE_CREATE = "POST /v1/customers"
ROUTE_ADD_CUSTOM = "POST /v1/customers/attributes/custom"
ROUTE_SEARCH = "GET /v1/customers/search"
ROUTE_DATA_SOURCES = "GET /v1/data_sources"


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
        if path == "/v1/customers/search" and method == "GET":  # "search" is not a customer uuid
            return ROUTE_SEARCH, None
        if path == "/v1/data_sources":
            return (ROUTE_DATA_SOURCES if method == "GET" else None), None
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
        if route == ROUTE_SEARCH:
            return search_customers(store, governor, request.query), None
        if route == ROUTE_DATA_SOURCES:
            return json_response(200, list_data_sources(store, request.query)), None
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
