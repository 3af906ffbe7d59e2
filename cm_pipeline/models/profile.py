"""The connection dbt runs with: dbt_project/profiles.yml, with the warehouse filled in.

One profile serves both ways of running dbt. profiles.yml reads CM_DBT_* with env_var(), with defaults
that let `dbt parse` render with nothing set; by hand, export the variables this module prints:

    eval "$(.venv/bin/python -m cm_pipeline.models.profile)"   # password included

Under Dagster nothing is exported: each dbt invocation gets a private copy of profiles.yml with the
warehouse's host, port, user, password and database written in (cm_pipeline/models/resource.py), so no
process-wide environment changes and two invocations in one process never see each other's connection.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from cm_pipeline.warehouse.connection import libpq_params, resolve_url

PROFILES_YML = "profiles.yml"

# The variables profiles.yml reads, by libpq_params() key.
PROFILE_ENV_VARS: Mapping[str, str] = {
    "host": "CM_DBT_HOST",
    "port": "CM_DBT_PORT",
    "user": "CM_DBT_USER",
    "password": "CM_DBT_PASSWORD",
    "dbname": "CM_DBT_DBNAME",
}


def warehouse_profile_env(url: str) -> dict[str, str]:
    """The CM_DBT_* variables that point profiles.yml at the warehouse `url` (a socket dir is a valid host)."""
    params = libpq_params(url)
    return {var: params[key] for key, var in PROFILE_ENV_VARS.items()}


def jinja_literal(value: str) -> str:
    """A Jinja expression that renders to `value`: dbt renders every string of a profile, so a password
    holding `{{` or `{#` would otherwise be read as a template."""
    return "{{ " + json.dumps(value, ensure_ascii=False) + " }}"


def connected_profiles(profiles: Mapping, params: Mapping[str, str]) -> dict:
    """`profiles` (profiles.yml's content) with each profile's target output connected per `params`
    (libpq_params() keys); its other settings (schema, threads: env_var() with defaults) are kept."""
    connected = copy.deepcopy(dict(profiles))
    for profile in connected.values():
        output = profile["outputs"][profile["target"]]
        output.update({key: jinja_literal(params[key]) for key in PROFILE_ENV_VARS if key != "port"})
        output["port"] = int(params["port"])
    return connected


def read_profiles(profiles_dir: str | Path) -> dict:
    """The content of the profiles.yml in `profiles_dir`."""
    return yaml.safe_load((Path(profiles_dir) / PROFILES_YML).read_text())


def write_private_profiles(profiles: Mapping) -> Path:
    """A new directory only this user can enter (0700) holding `profiles` as profiles.yml (0600).

    The caller removes it; it holds the password.
    """
    folder = Path(tempfile.mkdtemp(prefix="cm_dbt_profiles_"))  # mkdtemp creates it 0700
    descriptor = os.open(folder / PROFILES_YML, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        yaml.safe_dump(dict(profiles), handle, sort_keys=False)
    return folder


if __name__ == "__main__":
    for name, value in warehouse_profile_env(resolve_url()).items():
        print(f"export {name}={shlex.quote(value)}")
