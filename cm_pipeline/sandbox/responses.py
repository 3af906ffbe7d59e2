"""What the sandbox answers: JSON bodies, the HTML 500 page, and the API's documented error shapes.

Every API failure raises ApiFailure carrying the HTTP status and one of these bodies:
  400 {"code", "message", "param"}                      missing/bad parameter
  404 {"code", "message", "param"}                      no such customer, no customer with that email
  422 {"errors": {"external_id": "..."}}                duplicate external_id
  422 {"error": "Data source not found"}                unknown data source
  422 {"errors": {"data_source_uuid": "..."}}           create into a non-Custom data source
  422 {"<field>": ["..."], "error_details": [{...}]}    field validation failures (custom attributes,
                                                        timestamps, status, ...)
"""

from __future__ import annotations

import json
from typing import Any

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
HTML_500 = (
    b"<!DOCTYPE html>\n<html><head><title>We're sorry, but something went wrong (500)</title></head>"
    b"<body><h1>We're sorry, but something went wrong.</h1></body></html>\n"
)

Response = tuple[int, bytes, str]  # status, body, content type


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(status: int, body: Any) -> Response:
    return status, dumps(body), JSON_TYPE


def error_body(code: int, message: str, param: str | None = None) -> dict:
    """The API's {"code", "message", "param"} error body."""
    return {"code": code, "message": message, "param": param}


class ApiFailure(Exception):
    """An API error: HTTP status plus the JSON body to send."""

    def __init__(self, status: int, body: dict):
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def bad_param(message: str, param: str | None) -> ApiFailure:
    return ApiFailure(400, error_body(400, message, param))


def missing(param: str) -> ApiFailure:
    return bad_param(f'Parameter "{param}" is missing', param)


def field_errors(errors: list[tuple[str, str]]) -> ApiFailure:
    """The 422 {field: [msgs], error_details: [{param, code, message}]} shape, for one or more fields."""
    body: dict[str, Any] = {}
    for param, message in errors:
        body.setdefault(param, []).append(message)
    body["error_details"] = [{"param": p, "code": "invalid", "message": m} for p, m in errors]
    return ApiFailure(422, body)


def customer_not_found() -> ApiFailure:
    return ApiFailure(404, error_body(404, "Customer not found", "customer_uuid"))


def no_customer_with_email(email: str) -> ApiFailure:
    return ApiFailure(404, error_body(404, f"No customers found with email {email!r}", "email"))


def duplicate_external_id() -> ApiFailure:
    return ApiFailure(
        422, {"errors": {"external_id": "The external ID for this customer already exists in our system."}}
    )


def data_source_not_found() -> ApiFailure:
    return ApiFailure(422, {"error": "Data source not found"})


def not_a_custom_data_source(uuid: str, system: str) -> ApiFailure:
    """Customers created through the API live in Custom data sources (list-customers.txt)."""
    return ApiFailure(
        422,
        {"errors": {"data_source_uuid": f"Data source {uuid} is a {system} data source; customers can only "
                                        "be created through the API in a Custom data source."}},
    )  # fmt: skip
