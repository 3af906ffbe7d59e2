"""Filesystem locations of the project, computed once."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


def state_dir() -> Path:
    """Project-local folder for the embedded Postgres and other local state."""
    return Path(os.environ.get("CM_PIPELINE_STATE_DIR", REPO_ROOT / ".cm_pipeline"))
