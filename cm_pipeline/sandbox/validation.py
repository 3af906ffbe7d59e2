"""Pure validators and normalisers of the sandbox's plain request fields: timestamps, statuses, paging,
string fields, state, country and website. Failures raise responses.ApiFailure (see responses.py);
custom attributes and tags are checked in attributes.py."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from cm_pipeline.chartmogul.vocabulary import LEAD_STATUSES, MAX_PER_PAGE, STATUS_FILTERS, STATUSES
from cm_pipeline.chartmogul.vocabulary import parse_timestamp as parse_iso
from cm_pipeline.sandbox.responses import bad_param, field_errors

STATUS_BY_FILTER = dict(zip(STATUS_FILTERS, STATUSES, strict=True))
STRING_FIELDS = ("name", "email", "company", "city", "zip", "country", "state", "owner", "website_url")

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


# ---------------------------------------------------------------- timestamps


def parse_timestamp(value: Any) -> datetime:
    """A non-empty ISO 8601 string -> aware UTC datetime (vocabulary.parse_timestamp); ValueError in the
    sandbox's own words otherwise."""
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


# ---------------------------------------------------------------- statuses and paging


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


def parse_per_page(raw: str | None) -> int:
    if raw is None or raw == "":
        return MAX_PER_PAGE
    try:
        value = int(raw)
    except ValueError:
        raise bad_param(
            f"per_page must be an integer between 1 and {MAX_PER_PAGE}, got {raw!r}", "per_page"
        ) from None
    if value < 1 or value > MAX_PER_PAGE:
        raise bad_param(f"per_page must be between 1 and {MAX_PER_PAGE}, got {value}", "per_page")
    return value


# ---------------------------------------------------------------- plain fields


def check_string_fields(body: dict) -> None:
    errors = [
        (f, f"{f} must be a string, got {type(body[f]).__name__}")
        for f in STRING_FIELDS
        if f in body and body[f] is not None and not isinstance(body[f], str)
    ]
    if errors:
        raise field_errors(errors)


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
