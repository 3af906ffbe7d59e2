"""The Dockerfiles, checked without a Docker engine: what they copy exists, what they run is real, and
the Dagster versions they pin are the ones this project is tested with."""

from __future__ import annotations

import importlib.metadata
import re
import shlex

import pytest

from cm_pipeline.project import REPO_ROOT
from cm_pipeline_tests.deploy.stack import DOCKER_DIR

DOCKERFILES = ("Dockerfile.user_code", "Dockerfile.dagster")


def _instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = (DOCKER_DIR / name).read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def _args(name: str) -> dict[str, str]:
    return dict(a.split("=", 1) for i, a in _instructions(name) if i == "ARG" and "=" in a)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_copied_path_exists(name):
    copies = [args for instruction, args in _instructions(name) if instruction == "COPY"]
    assert copies
    for args in copies:
        *sources, _dest = [a for a in shlex.split(args) if not a.startswith("--")]
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"{name}: COPY {source} does not exist"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_pinned_dagster_versions_match_the_tested_ones(name):
    args = _args(name)
    assert args["DAGSTER_VERSION"] == importlib.metadata.version("dagster")
    assert args["DAGSTER_LIBS_VERSION"] == importlib.metadata.version("dagster-postgres")
    env_example = (DOCKER_DIR / ".env.example").read_text()
    assert f"DAGSTER_VERSION={args['DAGSTER_VERSION']}" in env_example
    assert f"DAGSTER_LIBS_VERSION={args['DAGSTER_LIBS_VERSION']}" in env_example


def test_user_code_image_prepares_dbt_and_serves_the_definitions():
    instructions = _instructions("Dockerfile.user_code")
    runs = " ".join(args for i, args in instructions if i == "RUN")
    assert "python -m cm_pipeline.dbt_project prepare" in runs
    import cm_pipeline.dbt_project as dbt_project

    assert callable(dbt_project.prepare_manifest)
    cmd = next(args for i, args in instructions if i == "CMD")
    assert '"api", "grpc"' in cmd and '"cm_pipeline.definitions"' in cmd
    users = [args for i, args in instructions if i == "USER"]
    assert users and users[-1] != "root"


def test_webserver_image_runs_as_a_user_and_holds_no_user_code():
    instructions = _instructions("Dockerfile.dagster")
    copied = " ".join(args for i, args in instructions if i == "COPY")
    assert "cm_pipeline" not in copied.replace("docker/", "")
    users = [args for i, args in instructions if i == "USER"]
    assert users and users[-1] != "root"
