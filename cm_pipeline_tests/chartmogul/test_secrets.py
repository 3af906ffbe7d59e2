"""Keeping the key out of sight with no network: URL redaction, the key's text forms, scrubbing."""

from __future__ import annotations

import base64

from cm_pipeline.chartmogul.errors import UnprocessableEntityError
from cm_pipeline.chartmogul.secrets import public_url, scrub, scrub_error, secret_forms


def test_public_url_drops_credentials_query_and_fragment():
    assert public_url("https://user:pw@api.example.com:8443/v1?key=k#f") == "https://api.example.com:8443/v1"
    assert public_url("http://127.0.0.1:9/v1") == "http://127.0.0.1:9/v1"
    assert public_url("https://api.chartmogul.com/v1") == "https://api.chartmogul.com/v1"


def test_secret_forms_cover_the_key_and_its_basic_auth_token():
    key = "sk/live+key 1"
    token = base64.b64encode(b"sk/live+key 1:").decode()
    forms = secret_forms(key)
    assert key in forms and token in forms and "sk%2Flive%2Bkey%201" in forms
    assert list(forms) == sorted(forms, key=len, reverse=True)


def test_scrub_reaches_nested_text_and_every_form():
    key = "test-key-7f3a9c"
    token = base64.b64encode(f"{key}:".encode()).decode()
    secrets = secret_forms(key)
    details = {
        key: [f"bad {key}"],
        "error_details": [{"param": key, "message": f"Authorization: Basic {token}"}],
        "n": 3,
    }
    clean = scrub(details, secrets)
    assert clean == {
        "***": ["bad ***"],
        "error_details": [{"param": "***", "message": "Authorization: Basic ***"}],
        "n": 3,
    }
    assert scrub(f"x{token.rstrip('=')}y", secrets) == "x***y"
    assert scrub("nothing secret", secrets) == "nothing secret"


def test_scrub_error_cleans_every_text_part_and_cuts_the_chain():
    key = "test-key-7f3a9c"
    err = UnprocessableEntityError(
        f"bad value {key}", status=422, param=key, details={"errors": {key: "taken"}}, path=f"/x/{key}"
    )
    try:
        raise err from RuntimeError(f"Authorization: Basic {key}")
    except UnprocessableEntityError:
        pass
    clean = scrub_error(err, secret_forms(key))
    assert clean is err
    assert (err.message, err.param, err.path, err.details) == (
        "bad value ***",
        "***",
        "/x/***",
        {"errors": {"***": "taken"}},
    )
    assert err.args == ("bad value ***",) and err.__cause__ is None and err.__context__ is None
