"""Pure validators and normalisers for the sandbox's request bodies.

Every failure raises ApiFailure carrying the HTTP status and one of the documented error body shapes:
  400 {"code", "message", "param"}                      missing/bad parameter
  422 {"errors": {"external_id": "..."}}                duplicate external_id
  422 {"error": "Data source not found"}                unknown data source
  422 {"errors": {"data_source_uuid": "..."}}           create into a non-Custom data source
  422 {"<field>": ["..."], "error_details": [{...}]}    field validation failures (custom attributes,
                                                        timestamps, status, ...)
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

from cm_pipeline.chartmogul.vocabulary import (
    ATTRIBUTE_KEY_RE,
    CUSTOM_ATTRIBUTE_TYPES,
    FALSE_FORMS,
    LEAD_STATUSES,
    MAX_STRING,
    STATUS_FILTERS,
    STATUSES,
    TRUE_FORMS,
)
from cm_pipeline.chartmogul.vocabulary import parse_timestamp as parse_iso

ALL_STATUSES = STATUSES
STATUS_BY_FILTER = dict(zip(STATUS_FILTERS, STATUSES, strict=True))
BOOLEAN_STRINGS = {**dict.fromkeys(TRUE_FORMS, True), **dict.fromkeys(FALSE_FORMS, False)}
# add-custom-attributes-by-email.txt: Integer "accepts only numeric characters" (ASCII digits, a leading
# minus for negatives); Decimal "accepts floating point numbers". Used with fullmatch (no trailing newline).
_INT_RE = re.compile(r"-?[0-9]+")
_DECIMAL_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")

US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "FL": "Florida", "GA": "Georgia",
    "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa", "KS": "Kansas",
    "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts",
    "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi", "MO": "Missouri", "MT": "Montana",
    "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico",
    "NY": "New York", "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma",
    "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina",
    "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont",
    "VA": "Virginia", "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
    "DC": "District of Columbia",
}  # fmt: skip


class ApiFailure(Exception):
    """An API error: HTTP status plus the JSON body to send."""

    def __init__(self, status: int, body: dict):
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def bad_param(message: str, param: str | None, status: int = 400) -> ApiFailure:
    return ApiFailure(status, {"code": status, "message": message, "param": param})


def missing(param: str) -> ApiFailure:
    return bad_param(f'Parameter "{param}" is missing', param)


def field_errors(errors: list[tuple[str, str]], status: int = 422) -> ApiFailure:
    """The {field: [msgs], error_details: [{param, code, message}]} shape, for one or more fields."""
    body: dict[str, Any] = {}
    for param, message in errors:
        body.setdefault(param, []).append(message)
    body["error_details"] = [{"param": p, "code": "invalid", "message": m} for p, m in errors]
    return ApiFailure(status, body)


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


# ---------------------------------------------------------------- timestamps


def parse_timestamp(value: Any) -> datetime:
    """A non-empty ISO 8601 string -> aware UTC datetime; ValueError in the sandbox's own words otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an ISO 8601 formatted string")
    try:
        return parse_iso(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 formatted time") from None


def format_timestamp(dt: datetime) -> str:
    """The API's response form, e.g. 2023-01-01T00:00:00.000Z."""
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def format_attribute_timestamp(dt: datetime) -> str:
    """A Timestamp custom attribute's response form, as list/retrieve-customer.txt show it: UTC
    "2023-09-08 00:00:00"; a non-zero fraction of a second is kept ("2023-09-08 00:00:00.25")."""
    dt = dt.astimezone(timezone.utc)
    text = dt.strftime("%Y-%m-%d %H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text


def past_timestamp(field: str, value: Any, now: datetime) -> datetime:
    try:
        dt = parse_timestamp(value)
    except ValueError as exc:
        raise field_errors([(field, f"{field} {exc}")]) from None
    if dt > now:
        raise field_errors([(field, f"{field} must be in the past, got {value!r}")])
    return dt


def validate_lead_and_trial(body: dict, now: datetime, current: dict | None = None) -> dict[str, str | None]:
    """Validate lead_created_at / free_trial_started_at present in body; returns normalised strings."""
    out: dict[str, str | None] = {}
    parsed: dict[str, datetime | None] = {}
    for field in ("lead_created_at", "free_trial_started_at"):
        if field in body:
            if body[field] is None:
                out[field] = None
                parsed[field] = None
            else:
                dt = past_timestamp(field, body[field], now)
                parsed[field] = dt
                out[field] = format_timestamp(dt)
        elif current is not None and current.get(field):
            parsed[field] = parse_timestamp(current[field])
    lead, trial = parsed.get("lead_created_at"), parsed.get("free_trial_started_at")
    if lead is not None and trial is not None and trial < lead and out:
        raise field_errors(
            [("free_trial_started_at", "free_trial_started_at must be the same as or after lead_created_at")]
        )
    return out


# ---------------------------------------------------------------- custom attributes


def validate_key(key: Any, param: str = "key") -> str:
    if not isinstance(key, str) or not key:
        raise field_errors([(param, "Custom attribute key must be a non-empty string")])
    if not ATTRIBUTE_KEY_RE.match(key):
        raise field_errors(
            [(key, f"Custom attribute key {key!r} may contain only alphanumeric characters and underscores")]
        )
    return key


def coerce_value(attr_type: str, value: Any, key: str) -> Any:
    """Validate `value` against a custom attribute type and return the stored form. None clears a value."""
    if value is None:
        return None

    def fail(why: str) -> ApiFailure:
        return field_errors([(key, f"Custom attribute {key!r} ({attr_type}): {why}, got {value!r}")])

    if attr_type == "String":
        # The pages' String values are all JSON strings; a number or boolean is not silently stringified.
        if not isinstance(value, str):
            raise fail(f"expected a string, not a JSON {_json_kind(value)}")
        if len(value) > MAX_STRING:
            raise field_errors(
                [
                    (
                        key,
                        f"Custom attribute {key!r} (String): at most {MAX_STRING} characters, got {len(value)}",
                    )
                ]
            )
        return value
    if attr_type == "Integer":
        if isinstance(value, bool):
            raise fail("expected an integer, not a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and _INT_RE.fullmatch(value):
            return int(value)
        raise fail("expected an integer (numeric characters 0-9 only, optionally a leading '-')")
    if attr_type == "Decimal":
        if isinstance(value, bool):
            raise fail("expected a decimal number, not a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise fail("expected a finite decimal number")
            return value
        if isinstance(value, str) and _DECIMAL_RE.fullmatch(value):
            num = float(value)
            if not math.isfinite(num):
                raise fail("expected a decimal number within range")
            return num
        raise fail("expected a decimal number (a JSON number or a string such as 12.5 or -1e3)")
    if attr_type == "Timestamp":
        try:
            return format_attribute_timestamp(parse_timestamp(value))
        except ValueError:
            raise fail("expected an ISO 8601 timestamp") from None
    if attr_type == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value in BOOLEAN_STRINGS:
            return BOOLEAN_STRINGS[value]
        raise fail("expected one of TRUE, true, t, 1, FALSE, false, f, 0")
    raise field_errors([(key, f"Unknown custom attribute type {attr_type!r}")])


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def validate_custom_items(items: Any, param: str = "custom") -> list[tuple[str, str, Any]]:
    """A list of {type, key, value[, source]} -> [(key, type, stored value)]."""
    if not isinstance(items, list):
        raise bad_param(f'Parameter "{param}" must be an array of custom attributes', param)
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad_param(f"{param}[{n}] must be an object with type, key and value", param)
        for required in ("type", "key", "value"):
            if required not in item:
                raise missing(f"{param}[{n}].{required}")
        key = validate_key(item["key"])
        attr_type = item["type"]
        if attr_type not in CUSTOM_ATTRIBUTE_TYPES:
            raise field_errors(
                [
                    (
                        key,
                        f"Custom attribute {key!r}: type must be one of {', '.join(CUSTOM_ATTRIBUTE_TYPES)}, got {attr_type!r}",
                    )
                ]
            )
        out.append((key, attr_type, coerce_value(attr_type, item["value"], key)))
    return out


def check_type_conflicts(items: list[tuple[str, str, Any]], definitions: dict[str, str]) -> None:
    errors = []
    seen: dict[str, str] = {}
    for key, attr_type, _ in items:
        existing = definitions.get(key) or seen.get(key)
        if existing is not None and existing != attr_type:
            errors.append(
                (
                    key,
                    f"Custom attribute {key!r} is already defined with type {existing}, cannot use {attr_type}",
                )
            )
        seen[key] = attr_type
    if errors:
        raise field_errors(errors)


def validate_custom_patch(custom: Any, definitions: dict[str, str]) -> dict[str, Any]:
    """PATCH attributes.custom: {key: value | {"value": v, "source": s}}; every key must already exist."""
    if not isinstance(custom, dict):
        raise bad_param('Parameter "attributes.custom" must be an object', "attributes.custom")
    out = {}
    for key, raw in custom.items():
        validate_key(key)
        if key not in definitions:
            raise field_errors(
                [(key, f"Custom attribute {key!r} does not exist in this account; create it first with "
                       "POST /v1/customers/attributes/custom")]
            )  # fmt: skip
        value = raw
        if isinstance(raw, dict):
            if "value" not in raw:
                raise missing(f"attributes.custom.{key}.value")
            value = raw["value"]
        out[key] = coerce_value(definitions[key], value, key)
    return out


def validate_tags(tags: Any, param: str = "attributes.tags") -> list[str]:
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise bad_param(f'Parameter "{param}" must be an array of strings', param)
    return list(tags)


# ---------------------------------------------------------------- plain fields


def normalise_state(state: Any) -> str | None:
    """'US-CA' -> 'CA'; other values are kept (trimmed)."""
    if state is None:
        return None
    text = str(state).strip()
    if len(text) == 5 and text[2] == "-" and text[:2].upper() == "US":
        return text[3:].upper()
    return text


def normalise_website(url: Any) -> str | None:
    if url is None or url == "":
        return url
    text = str(url).strip()
    if not re.match(r"^https?://", text, re.IGNORECASE):
        text = "https://" + text
    return text


def state_full_name(state: str | None, country: str | None) -> str | None:
    if state is None:
        return None
    if (country or "US").upper() == "US":
        return US_STATES.get(state.upper(), state)
    return state


def address_country(country: str | None) -> str | None:
    """address.country: the ISO 3166-1 alpha-2 code, as list-customers.txt describes it ("US")."""
    if isinstance(country, str) and len(country.strip()) == 2 and country.strip().isascii():
        return country.strip().upper()
    return country


def status_from_filter(value: str) -> str:
    """Query filter value (underscores) -> status with spaces; 400 on anything else."""
    if value in STATUS_BY_FILTER:
        return STATUS_BY_FILTER[value]
    raise bad_param(
        f"Invalid status {value!r}; use one of {', '.join(STATUS_BY_FILTER)}",
        "status",
    )


def lead_status(value: Any) -> str:
    """PATCH status: only the four lead statuses (spaces or underscores)."""
    text = value.replace("_", " ") if isinstance(value, str) else value
    if text not in LEAD_STATUSES:
        raise field_errors(
            [("status", f"status can only be set to one of {', '.join(LEAD_STATUSES)}; got {value!r}")]
        )
    return text


STRING_FIELDS = ("name", "email", "company", "city", "zip", "country", "state", "owner", "website_url")


def check_string_fields(body: dict, fields: tuple[str, ...] = STRING_FIELDS) -> None:
    errors = [
        (f, f"{f} must be a string, got {type(body[f]).__name__}")
        for f in fields
        if f in body and body[f] is not None and not isinstance(body[f], str)
    ]
    if errors:
        raise field_errors(errors)


def parse_per_page(raw: str | None) -> int:
    if raw is None or raw == "":
        return 200
    try:
        value = int(raw)
    except ValueError:
        raise bad_param(f"per_page must be an integer between 1 and 200, got {raw!r}", "per_page") from None
    if value < 1 or value > 200:
        raise bad_param(f"per_page must be between 1 and 200, got {value}", "per_page")
    return value
