"""`dg`, Dagster's current CLI, works against this code location with the layout it has ([tool.dg] in
pyproject.toml): `dg check defs` validates it and `dg list defs` names what the README promises."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from cm_pipeline.project import REPO_ROOT
from cm_pipeline_tests.deploy.stack import console_script

JOBS = {"warehouse_refresh_job", "push_updates_job", "push_by_email_job", "push_creates_job"}


def _dg(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    return subprocess.Popen(
        [console_script("dg"), *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_dg_checks_and_lists_the_definitions():
    # Both load the code location (about half a minute each on two cores): run them side by side.
    check, listing = _dg("check", "defs"), _dg("list", "defs", "--json")
    check_out, check_err = check.communicate(timeout=200)
    list_out, list_err = listing.communicate(timeout=200)

    assert check.returncode == 0, check_out + check_err
    assert "All definitions loaded successfully" in check_out + check_err
    assert "project_and_activated_venv_mismatch" not in check_err, "the warning [tool.dg.cli] suppresses"

    assert listing.returncode == 0, list_err
    defs = json.loads(list_out)
    assets = {a["asset_key"] for a in defs["assets"]}
    assert "chartmogul_customers" in assets
    assert {"reverse_etl/chartmogul_updates", "reverse_etl/chartmogul_creates"} <= assets, sorted(assets)
    assert JOBS <= {j["name"] for j in defs["jobs"]}
    assert {s["name"] for s in defs["schedules"]} == {"warehouse_refresh_schedule"}
    assert {s["name"] for s in defs["sensors"]} == {"reverse_etl_sensor"}
