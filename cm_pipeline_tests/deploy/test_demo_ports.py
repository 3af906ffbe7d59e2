"""The demo's ports: chosen by flag or UI_PORT / SANDBOX_PORT, and a busy one refused before anything starts
with one line naming the port and the variable (no traceback)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from cm_pipeline.demo.ports import SANDBOX, UI, PortError, check_free, ports_from, resolve_port
from cm_pipeline.project import REPO_ROOT
from cm_pipeline_tests.deploy.stack import free_port


@pytest.fixture
def busy_port():
    """A port something listens on for the length of the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _demo(
    args: list[str], env: dict[str, str], module: str = "cm_pipeline.demo"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("setting", [UI, SANDBOX], ids=["ui", "sandbox"])
def test_a_busy_port_from_the_environment_is_refused_before_anything_starts(setting, busy_port, tmp_path):
    other = SANDBOX if setting is UI else UI
    env = {
        setting.variable: str(busy_port),
        other.variable: str(free_port()),
        "CM_PIPELINE_STATE_DIR": str(tmp_path),
    }
    for module in ("cm_pipeline.demo", "cm_pipeline.demo.ports"):  # the demo, and `make demo`'s first check
        result = _demo([], env, module)
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f"port {busy_port}" in lines[0] and f"set {setting.variable}" in lines[0], lines[0]
        assert "Traceback" not in result.stderr + result.stdout
        assert result.stdout == ""
    assert list(tmp_path.iterdir()) == [], "nothing may be started or written before the ports are checked"


def test_a_busy_port_given_as_a_flag_is_refused(busy_port, tmp_path):
    result = _demo(
        ["--ui-port", str(busy_port)],
        {"CM_PIPELINE_STATE_DIR": str(tmp_path), "SANDBOX_PORT": str(free_port())},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert f"port {busy_port} (the Dagster UI) is already in use: set UI_PORT" in result.stderr


def test_ports_come_from_flags_then_environment_then_defaults():
    assert ports_from({}) == {UI: 3000, SANDBOX: 8787}
    assert ports_from({"UI_PORT": "3001", "SANDBOX_PORT": " 8788 "}) == {UI: 3001, SANDBOX: 8788}
    assert ports_from({"UI_PORT": "3001"}, ui=3002) == {UI: 3002, SANDBOX: 8787}
    assert resolve_port(UI, None, {"UI_PORT": ""}) == 3000


@pytest.mark.parametrize("value", ["abc", "0", "70000", "-1", "3000.5"])
def test_a_bad_port_value_is_named(value):
    with pytest.raises(PortError, match=rf"^UI_PORT='{value}' is not a port number \(1-65535\)$"):
        ports_from({"UI_PORT": value})


def test_the_same_port_twice_is_refused():
    port = free_port()
    with pytest.raises(PortError, match=f"UI_PORT and SANDBOX_PORT are both {port}"):
        check_free({UI: port, SANDBOX: port})
