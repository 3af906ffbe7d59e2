"""Finds credentials written into deployment files: what `test_no_credentials_in_docker` looks for."""

from __future__ import annotations

import re

# ${VAR}, ${VAR:-default}, ${VAR:?message}, nested: compose/shell references, not values.
_REFERENCE = re.compile(r"\$\{[^${}]*\}")
# <password>-style placeholders in examples.
_PLACEHOLDER = re.compile(r"^<[^<>]*>$")
# A key that names a secret, assigned a value: `KEY=value`, `key: value`, `"key": "value"`.
_SECRET_ASSIGNMENT = re.compile(
    r"""(?ix)
    (?P<key>[A-Za-z0-9_.-]*(?:password|passwd|pwd|api[_-]?key|apikey|secret[_-]?key|token))
    ["']?\s*[:=]\s*
    (?P<value>[^\s#,}]*)
    """
)
# scheme://user:password@host
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?P<user>[^\s/@:]*):(?P<password>[^\s/@]*)@")


def _strip_references(text: str) -> str:
    previous = None
    while previous != text:
        previous, text = text, _REFERENCE.sub("", text)
    return text


def _is_value(value: str) -> bool:
    value = value.strip().strip("\"'")
    return bool(value) and not _PLACEHOLDER.match(value) and value not in ("~", "null", "None", "|", ">")


def credential_findings(text: str) -> list[str]:
    """Lines of `text` that hold a literal credential (a secret-named key with a value, or a URL password).

    `${VAR}` references, Dagster's `env:` indirection (the value is on the next line), empty values and
    `<placeholder>`s are not credentials.
    """
    findings = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_references(raw)
        for match in _SECRET_ASSIGNMENT.finditer(line):
            if _is_value(match.group("value")):
                findings.append(f"line {number}: {match.group('key')} is given a literal value")
        for match in _URL_PASSWORD.finditer(line):
            if _is_value(match.group("password")):
                findings.append(f"line {number}: URL with an embedded password")
    return findings
