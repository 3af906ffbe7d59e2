"""Helpers of the conformance tests: the reference pages' shared values and a field-by-field comparison."""

from __future__ import annotations

EMAIL = "[email protected]"
DS = "ds_fef05d54-47b4-431b-aed2-eb6b9e545430"
GENERATED = {"id", "uuid", "chartmogul-url", "cursor", "total_pages"}
# The primary contact that create-customer.txt and update-customer.txt both send.
PRIMARY_CONTACT = {
    "first_name": "Anna",
    "last_name": "Gardner",
    "email": EMAIL,
    "title": "CFO",
    "phone": "+123456789",
    "linked_in": "https://linkedin.com/example",
    "twitter": "https://twitter.com/example",
    "notes": "Heading\nBody\nFooter",
}


def assert_conforms(expected, actual, path="$", generated=GENERATED):
    """Same keys and JSON types everywhere; same values except generated keys."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        assert set(actual) == set(expected), f"{path}: keys differ: {set(actual) ^ set(expected)}"
        for key, value in expected.items():
            sub = f"{path}.{key}"
            if key in generated:
                assert type(actual[key]) is type(value), (
                    f"{sub}: {type(actual[key]).__name__} != {type(value).__name__}"
                )
            else:
                assert_conforms(value, actual[key], sub, generated)
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{path}: {actual!r} != {expected!r}"
        )
        for n, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_conforms(e, a, f"{path}[{n}]", generated)
    else:
        assert type(actual) is type(expected) and actual == expected, f"{path}: {actual!r} != {expected!r}"


def admin_fields(example: dict) -> dict:
    """An example response customer -> ctl.insert_customer(**fields) (drops the generated id/uuid)."""
    fields = {k: v for k, v in example.items() if k not in ("id", "uuid", "chartmogul-url")}
    return {k.replace("-", "_"): v for k, v in fields.items()}
