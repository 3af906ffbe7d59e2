"""Error-body parsing for every documented shape, classification, and pickling — no network."""

from __future__ import annotations

import pickle

import pytest

from cm_pipeline.chartmogul.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    PaginationError,
    RateLimitError,
    ServerError,
    TransportError,
    UnprocessableEntityError,
    error_from_response,
    html_excerpt,
    is_duplicate_external_id,
    is_retriable,
    parse_error_body,
)


def test_code_message_param_shape():
    body = '{"code": 400, "message": "Parameter \\"name\\" is missing", "param": "name"}'
    assert parse_error_body(body) == (
        'Parameter "name" is missing',
        "name",
        {
            "code": 400,
            "message": 'Parameter "name" is missing',
            "param": "name",
        },
    )


def test_not_found_shape_builds_not_found_error():
    err = error_from_response(
        404,
        b'{"code": 404, "message": "Customer not found", "param": "customer_uuid"}',
        "application/json",
        method="GET",
        path="/customers/cus_x",
    )
    assert isinstance(err, NotFoundError)
    assert (err.status, err.message, err.param) == (404, "Customer not found", "customer_uuid")
    assert str(err) == "HTTP 404 on GET /customers/cus_x: Customer not found (param 'customer_uuid')"


def test_errors_object_shape_is_a_duplicate_external_id():
    body = '{"errors": {"external_id": "The external ID for this customer already exists in our system."}}'
    err = error_from_response(422, body)
    assert isinstance(err, UnprocessableEntityError)
    assert err.param == "external_id"
    assert err.message == "external_id: The external ID for this customer already exists in our system."
    assert err.details == {
        "errors": {"external_id": "The external ID for this customer already exists in our system."}
    }
    assert is_duplicate_external_id(err)


def test_error_string_shape():
    assert parse_error_body('{"error": "Data source not found"}') == (
        "Data source not found",
        None,
        {"error": "Data source not found"},
    )


def test_field_list_with_error_details_shape():
    body = (
        '{"name": ["can\'t be blank"], "error_details": '
        '[{"param": "name", "code": "blank", "message": "Name can\'t be blank"}]}'
    )
    message, param, details = parse_error_body(body)
    assert message == "Name can't be blank"
    assert param == "name"
    assert details["name"] == ["can't be blank"]


def test_field_list_without_error_details():
    message, param, _ = parse_error_body('{"email": ["is invalid"]}')
    assert (message, param) == ("email: is invalid", "email")


def test_html_500_body_keeps_a_short_stripped_excerpt():
    page = (
        "<!DOCTYPE html><html><head><title>500 Internal Server Error</title>"
        "<style>body{color:red}</style><script>var x = '<b>';</script></head>"
        "<body><h1>Internal Server Error</h1><p>Something went &amp; wrong.</p>"
        + "<p>filler</p>" * 200
        + "</body></html>"
    )
    err = error_from_response(500, page, "text/html; charset=utf-8")
    assert isinstance(err, ServerError)
    assert err.message.startswith("500 Internal Server Error Internal Server Error Something went & wrong.")
    assert "<" not in err.message and "color" not in err.message and "var x" not in err.message
    assert len(err.message) <= 200
    assert err.details is None


def test_empty_and_plain_text_bodies():
    assert parse_error_body(b"")[0] == "empty response body"
    assert parse_error_body("Bad Gateway")[0] == "Bad Gateway"
    assert parse_error_body("{not json")[0] == "{not json"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, ForbiddenError),
        (403, ForbiddenError),
        (404, NotFoundError),
        (409, APIError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, ServerError),
        (501, ServerError),
        (520, ServerError),
    ],
)
def test_status_to_class(status, cls):
    assert type(error_from_response(status, "{}")) is cls


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 520, 524])
def test_retriable_statuses(status):
    assert is_retriable(error_from_response(status, ""))


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 405, 409, 422, 501, 505])
def test_fatal_statuses(status):
    assert not is_retriable(error_from_response(status, ""))


def test_transport_errors_are_retriable_unless_marked():
    assert is_retriable(TransportError("dropped"))
    assert not is_retriable(TransportError("bad certificate", kind="ssl", retriable=False))
    assert not is_retriable(PaginationError("loop"))
    assert not is_retriable(ValueError("x"))


def test_non_duplicate_422_is_not_a_duplicate():
    err = error_from_response(422, '{"errors": {"email": "is invalid"}}')
    assert not is_duplicate_external_id(err)
    assert not is_duplicate_external_id(
        error_from_response(400, '{"errors": {"external_id": "already exists"}}')
    )


def test_errors_pickle_round_trip():
    err = error_from_response(
        422, '{"errors": {"external_id": "already exists"}}', method="POST", path="/customers"
    )
    err.attempts = 3
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is UnprocessableEntityError
    assert (back.status, back.param, back.attempts, str(back)) == (422, "external_id", 3, str(err))
    t = pickle.loads(pickle.dumps(TransportError("x", kind="timeout")))
    assert t.kind == "timeout" and t.retriable


def test_html_excerpt_collapses_whitespace():
    assert html_excerpt("<p>a\n\n   b</p><!-- secret -->") == "a b"
