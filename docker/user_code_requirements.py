"""Print the project's dependencies that the user-code image installs: pyproject.toml's, minus local-only ones.

The embedded Postgres (pgserver) serves only the demo and tests when WAREHOUSE_URL is unset, and the
webserver runs in its own image, so the code server image leaves both out and installs the project itself
with `pip install --no-deps -e .`. Usage: python user_code_requirements.py pyproject.toml > requirements.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (the image runs 3.11); dagster requires tomli
    import tomli as tomllib

# Distribution names (normalised) that the code server and its runs never import.
LOCAL_ONLY = frozenset({"pgserver", "dagster-webserver"})


def distribution_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"pyproject.toml: dependency {requirement!r} does not start with a package name")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def user_code_requirements(pyproject: Path) -> list[str]:
    """`[project] dependencies` of `pyproject`, without the LOCAL_ONLY distributions."""
    try:
        dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    except KeyError:
        raise ValueError(f"{pyproject}: no [project] dependencies list") from None
    return [dep for dep in dependencies if distribution_name(dep) not in LOCAL_ONLY]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python user_code_requirements.py path/to/pyproject.toml")
    print("\n".join(user_code_requirements(Path(sys.argv[1]))))
