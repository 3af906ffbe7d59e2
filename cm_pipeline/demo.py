"""The demo: sandbox API + embedded Postgres, one warehouse refresh, then the Dagster UI.

Run with `make demo` (or `python -m cm_pipeline.demo`). Nothing here is needed in production.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from cm_pipeline.project import REPO_ROOT, state_dir

DEMO_API_KEY = "demo-sandbox-key"
# The production instance config; the demo takes its run and pool limits from it (one source of truth).
DEPLOYED_DAGSTER_YAML = REPO_ROOT / "docker" / "dagster.yaml"


def _dagster_bin(name: str) -> str:
    """The console script installed beside this interpreter (the project's virtualenv)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def demo_instance_config(deployed: Path = DEPLOYED_DAGSTER_YAML) -> dict:
    """The demo instance's dagster.yaml: local storage defaults plus the deployed `concurrency` limits."""
    try:
        concurrency = (yaml.safe_load(deployed.read_text()) or {})["concurrency"]
    except (OSError, KeyError, TypeError) as exc:
        raise RuntimeError(
            f"{deployed}: the demo copies its `concurrency` block (one refresh at a time), "
            f"which could not be read ({type(exc).__name__}: {exc})"
        ) from None
    return {"concurrency": concurrency, "telemetry": {"enabled": False}}


def write_instance_config(dagster_home: Path, deployed: Path = DEPLOYED_DAGSTER_YAML) -> Path:
    """Write DAGSTER_HOME/dagster.yaml for the demo (replacing an earlier demo's) and return its path."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    header = f"# Written by cm_pipeline/demo.py on each start: `concurrency` is copied from {deployed}.\n"
    path.write_text(header + yaml.safe_dump(demo_instance_config(deployed), sort_keys=False))
    return path


def demo_environment(base_url: str, warehouse_url: str, dagster_home: Path) -> dict[str, str]:
    """Environment for every Dagster process of the demo: sandbox API, embedded warehouse, local instance."""
    env = dict(os.environ)
    env.update(
        {
            "CHARTMOGUL_API_KEY": env.get("CHARTMOGUL_API_KEY") or DEMO_API_KEY,
            "CHARTMOGUL_BASE_URL": base_url,
            "WAREHOUSE_URL": warehouse_url,
            "DAGSTER_HOME": str(dagster_home),
        }
    )
    return env


def _run(cmd: list[str], env: dict[str, str], check: bool = True) -> int:
    print(f"$ {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd, env=env, cwd=REPO_ROOT, check=check).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000, help="seeded sandbox customers")
    parser.add_argument("--sandbox-port", type=int, default=8787)
    parser.add_argument("--ui-port", type=int, default=3000)
    parser.add_argument("--once", action="store_true", help="run the refresh and exit without serving the UI")
    args = parser.parse_args(argv)

    from cm_pipeline.sandbox import SandboxProcess
    from cm_pipeline.warehouse.connection import redact, resolve_url

    warehouse_url = resolve_url()  # WAREHOUSE_URL, else the embedded Postgres under .cm_pipeline/
    dagster_home = state_dir() / "dagster_home"
    write_instance_config(dagster_home)  # the deployed queue limits: one refresh, one push at a time
    print(f"warehouse: {redact(warehouse_url)}", flush=True)

    with SandboxProcess(customers=args.customers, seed=42, port=args.sandbox_port) as sandbox:
        print(f"sandbox ChartMogul API: {sandbox.base_url} ({args.customers} customers)", flush=True)
        env = demo_environment(sandbox.base_url, warehouse_url, dagster_home)
        refresh = ["job", "execute", "-m", "cm_pipeline.definitions", "-j", "warehouse_refresh_job"]
        _run([_dagster_bin("dagster"), *refresh], env)
        if args.once:
            return 0
        # The schedule runs by default; the push sensor is off by default (nothing is written to
        # ChartMogul until someone turns it on), so the demo turns it on. A second `make demo` finds it
        # already running, which is fine.
        _run(
            [_dagster_bin("dagster"), "sensor", "start", "reverse_etl_sensor", "-w", "workspace.yaml"],
            env,
            False,
        )
        print(f"Dagster UI: http://127.0.0.1:{args.ui_port}  (Ctrl-C stops everything)", flush=True)
        ui = subprocess.Popen(
            [_dagster_bin("dagster"), "dev", "-w", "workspace.yaml", "-p", str(args.ui_port)],
            env=env,
            cwd=REPO_ROOT,
        )
        try:
            return ui.wait()
        except KeyboardInterrupt:
            ui.send_signal(signal.SIGINT)
            try:
                ui.wait(timeout=30)
            except subprocess.TimeoutExpired:
                ui.kill()
            time.sleep(0.2)
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
