"""The demo's two ports: `--ui-port` / `--sandbox-port`, else UI_PORT / SANDBOX_PORT from the environment
(`make demo UI_PORT=3001` sets it), else 3000 and 8787. A busy port is refused before anything starts,
with one line naming the port and the variable to set.

`python -m cm_pipeline.demo.ports` runs the same check from the environment alone, with the standard
library only: `make demo` runs it before it installs or starts anything.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass

HOST = "127.0.0.1"


@dataclass(frozen=True)
class PortSetting:
    variable: str
    default: int
    serves: str


UI = PortSetting("UI_PORT", 3000, "the Dagster UI")
SANDBOX = PortSetting("SANDBOX_PORT", 8787, "the sandbox ChartMogul API")


class PortError(ValueError):
    """A port the demo cannot use; the message is one line for the console."""


def parse_port(setting: PortSetting, value: object) -> int:
    """`value` as a TCP port number, or PortError naming the variable and the value."""
    try:
        port = int(str(value).strip())
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise PortError(f"{setting.variable}={value!r} is not a port number (1-65535)")
    return port


def resolve_port(setting: PortSetting, given: int | None, environ: Mapping[str, str]) -> int:
    """The port to use: the command line's, else the environment's, else the default."""
    if given is not None:
        return parse_port(setting, given)
    raw = (environ.get(setting.variable) or "").strip()
    return parse_port(setting, raw) if raw else setting.default


def bind_error(port: int, host: str = HOST) -> OSError | None:
    """Why a server could not listen on host:port right now, or None if it could.

    SO_REUSEADDR as the servers set it, so a port whose last connections are in TIME_WAIT counts as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def _next_free(port: int) -> int | None:
    for candidate in range(port + 1, min(port + 100, 65535) + 1):
        if bind_error(candidate) is None:
            return candidate
    return None


def refusal(setting: PortSetting, port: int, error: OSError) -> str:
    """The one line that refuses `port`, naming the variable that chooses another."""
    if isinstance(error, PermissionError):
        problem = "cannot be opened by this user"
    else:
        problem = "is already in use"
    other = _next_free(port)
    example = f", e.g. make demo {setting.variable}={other}" if other else ""
    return f"port {port} ({setting.serves}) {problem}: set {setting.variable} to a free port{example}"


def check_free(ports: Mapping[PortSetting, int]) -> None:
    """Raise PortError for the first port that is taken or shared by two settings."""
    seen: dict[int, PortSetting] = {}
    for setting, port in ports.items():
        if port in seen:
            raise PortError(
                f"{seen[port].variable} and {setting.variable} are both {port}: choose two different ports"
            )
        seen[port] = setting
        error = bind_error(port)
        if error is not None:
            raise PortError(refusal(setting, port, error))


def ports_from(environ: Mapping[str, str], ui: int | None = None, sandbox: int | None = None) -> dict:
    """{UI: port, SANDBOX: port} from the command line's values and the environment."""
    return {UI: resolve_port(UI, ui, environ), SANDBOX: resolve_port(SANDBOX, sandbox, environ)}


def main() -> int:
    """Check UI_PORT and SANDBOX_PORT from the environment; exit 2 with one line if one is unusable."""
    try:
        check_free(ports_from(os.environ))
    except PortError as exc:
        print(f"make demo: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
