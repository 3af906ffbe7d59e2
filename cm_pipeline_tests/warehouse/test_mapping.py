"""The one mapping from API entry to row (Python half and SQL half, through a real Postgres), and the COPY
text encoding."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from cm_pipeline.chartmogul.vocabulary import parse_timestamp
from cm_pipeline.warehouse.copytext import copy_field, copy_line
from cm_pipeline.warehouse.customers import write_entries
from cm_pipeline.warehouse.mapping import (
    REPLACEMENT,
    RowRejected,
    dump_json,
    parse_integer,
)
from cm_pipeline.warehouse.schema import CUSTOMER_COLUMNS, CUSTOMER_DATA_COLUMNS, ensure_schema
from cm_pipeline_tests.reference_examples import (
    LIST_EXAMPLE,
    RETRIEVE_EXAMPLE,
    TRICKY_STRINGS,
    expected_columns,
)

JSON_COLUMNS = {name for name, ddl in CUSTOMER_COLUMNS if ddl.startswith("jsonb")}


@pytest.fixture(scope="module")
def mapping_db(postgres):
    url = postgres.create_database("cm_map")
    engine = sa.create_engine(url, future=True)
    ensure_schema(engine)
    yield engine
    engine.dispose()
    postgres.drop_database(url)


@pytest.fixture
def map_customer(mapping_db):
    """Map one entry the way every writer does (write_entries) and read the row back: (row, problems).
    jsonb columns come back as Postgres's JSON text."""

    def map_row(entry):
        problems = write_entries(mapping_db, [entry])
        cols = ", ".join(f"{c}::text" if c in JSON_COLUMNS else c for c in CUSTOMER_DATA_COLUMNS)
        with mapping_db.connect() as conn:
            row = conn.execute(
                sa.text(f"SELECT {cols} FROM chartmogul.customers WHERE uuid = :u"), {"u": entry["uuid"]}
            ).one()
        return dict(zip(CUSTOMER_DATA_COLUMNS, row, strict=True)), problems

    return map_row


def decoded(row: dict) -> dict:
    return {k: json.loads(v) if k in JSON_COLUMNS and v is not None else v for k, v in row.items()}


@pytest.mark.parametrize("entry", [LIST_EXAMPLE, RETRIEVE_EXAMPLE], ids=["list", "retrieve"])
def test_reference_examples_map_field_by_field(entry, map_customer):
    row, problems = map_customer(entry)
    assert problems == []
    assert set(row) == set(CUSTOMER_DATA_COLUMNS)
    got, want = decoded(row), expected_columns(entry)
    for column in CUSTOMER_DATA_COLUMNS:
        assert got[column] == want[column], column


def test_unknown_fields_are_kept_in_raw_and_are_not_errors(map_customer):
    entry = {
        **LIST_EXAMPLE,
        "brand_new_field": {"nested": [1, 2]},
        "attributes": {**LIST_EXAMPLE["attributes"], "clearbit": {}},
    }
    row, problems = map_customer(entry)
    assert problems == []
    assert json.loads(row["raw"]) == entry


def test_underscore_spellings_are_accepted(map_customer):
    entry = {
        "uuid": "cus_1",
        "customer_since": "2024-01-01T00:00:00Z",
        "billing_system_type": "Custom",
        "currency_sign": "€",
    }
    row, _ = map_customer(entry)
    assert row["customer_since"] == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert (row["billing_system_type"], row["currency_sign"]) == ("Custom", "€")


def test_missing_fields_are_null(map_customer):
    row, problems = map_customer({"uuid": "cus_min"})
    assert problems == []
    assert all(row[c] is None for c in CUSTOMER_DATA_COLUMNS if c not in ("uuid", "raw"))


@pytest.mark.parametrize(
    ("patch", "field", "column"),
    [
        ({"mrr": "lots"}, "mrr", "mrr"),
        ({"mrr": 10.5}, "mrr", "mrr"),
        ({"arr": True}, "arr", "arr"),
        ({"id": 2**70}, "id", "id"),
        ({"customer-since": "yesterday"}, "customer-since", "customer_since"),
        ({"lead_created_at": 1234}, "lead_created_at", "lead_created_at"),
        ({"name": {"first": "x"}}, "name", "name"),
        ({"external_ids": "34916129"}, "external_ids", "external_ids"),
        ({"attributes": {"tags": "vip"}}, "attributes.tags", "tags"),
        ({"attributes": {"custom": ["x"]}}, "attributes.custom", "custom_attributes"),
    ],
)
def test_a_bad_value_is_null_with_a_problem_naming_the_field_and_the_rest_is_kept(
    patch, field, column, map_customer
):
    entry = {**LIST_EXAMPLE, **patch}
    row, problems = map_customer(entry)
    assert row[column] is None
    assert [p.field for p in problems] == [field]
    assert "cus_de305d54" in str(problems[0]) and repr(field) in str(problems[0])
    assert row["email"] == LIST_EXAMPLE["email"]
    assert json.loads(row["raw"]) == entry  # the bad value is not lost


@pytest.mark.parametrize("entry", [None, [], "cus_x", {"name": "no uuid"}, {"uuid": ""}, {"uuid": 12}])
def test_entries_without_a_usable_uuid_are_rejected_with_a_reason(entry, map_customer):
    with pytest.raises(RowRejected, match="uuid|object"):
        map_customer(entry)


def test_numbers_coerce_only_when_whole():
    assert parse_integer(3000) == 3000
    assert parse_integer(4100.0) == 4100
    assert parse_integer("36000") == 36000
    assert parse_integer(None) is None
    for bad in (1.5, "1.5", "abc", False, float("nan"), [1]):
        with pytest.raises(ValueError):
            parse_integer(bad)


def test_timestamps_normalise_to_utc():
    assert parse_timestamp("2023-06-09T13:16:00-04:00") == datetime(2023, 6, 9, 17, 16, tzinfo=timezone.utc)
    assert parse_timestamp("2023-06-09T13:16:00Z") == datetime(2023, 6, 9, 13, 16, tzinfo=timezone.utc)
    assert parse_timestamp("2023-09-08 00:00:00") == datetime(2023, 9, 8, tzinfo=timezone.utc)
    assert parse_timestamp("2023-06-09T13:16:00.123456+02:00").microsecond == 123456
    assert parse_timestamp("") is None and parse_timestamp(None) is None


def test_nul_and_lone_surrogates_are_replaced_and_reported(map_customer):
    entry = {
        "uuid": "cus_nul",
        "name": "a\x00b",
        "attributes": {"tags": ["x\ud800y"], "custom": {"k\x00": "v"}},
    }
    row, problems = map_customer(entry)
    assert row["name"] == f"a{REPLACEMENT}b"
    assert json.loads(row["tags"]) == [f"x{REPLACEMENT}y"]
    assert json.loads(row["custom_attributes"]) == {f"k{REPLACEMENT}": "v"}
    assert "\\u0000" not in row["raw"] and REPLACEMENT in row["raw"]
    assert {p.field for p in problems} == {"name", "attributes.tags", "attributes.custom"}


def test_a_literal_backslash_u0000_text_is_not_mangled():
    value = "literally \\u0000 here"
    text, replaced = dump_json({"v": value})
    assert json.loads(text) == {"v": value}
    assert not replaced


def test_non_finite_numbers_become_null_in_json():
    text, _ = dump_json({"x": float("nan"), "y": [float("inf"), 1]})
    assert json.loads(text) == {"x": None, "y": [None, 1]}


@pytest.mark.parametrize("value", TRICKY_STRINGS)
def test_copy_text_escaping_round_trips(value):
    field = copy_field(value)
    assert "\t" not in field and "\n" not in field and "\r" not in field
    # Postgres' COPY text decoding of the escapes we emit:
    unescaped = field.replace("\\\\", "\x00").replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "\r")
    assert unescaped.replace("\x00", "\\") == value


def test_copy_line_shapes():
    assert (
        copy_line(["a", None, 3, datetime(2024, 1, 1, tzinfo=timezone.utc)])
        == "a\t\\N\t3\t2024-01-01T00:00:00+00:00\n"
    )
    assert copy_field(r"\N") == r"\\N"  # a literal backslash-N is not NULL


@pytest.mark.parametrize(
    "patch",
    [
        {},
        {"mrr": "lots"},
        {"customer-since": "yesterday"},
        {"name": {"first": "x"}},
        {"attributes": {"tags": "vip"}},
    ],
)
def test_staging_preparation_reports_the_same_fields_as_the_row_mapping(patch, map_customer):
    from cm_pipeline.warehouse.mapping import TYPED_COLUMNS, prepare_entry

    entry = {**LIST_EXAMPLE, **patch}
    prepared = prepare_entry(entry)
    row, problems = map_customer(entry)
    assert [p.field for p in prepared.problems] == [p.field for p in problems]
    assert prepared.typed == [row[c] for c in TYPED_COLUMNS]
    assert json.loads(prepared.raw) == entry and prepared.uuid == entry["uuid"]
