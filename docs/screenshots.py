"""Run the demo as a person would, time it, count its console lines, and take the README's screenshots.

    .venv/bin/python docs/screenshots.py [--customers 5000] [--starts 2] [--no-screenshots]

Each start runs `python -m cm_pipeline.demo` on free ports in one temporary state folder (a first start,
then starts on the state it left), waits for a full cycle (the refresh, then the three pushes, then the
demo's "idle" line), takes the screenshots on the first start with headless Chromium (Debian's
`chromium` package), then presses Ctrl-C (SIGINT to its process group) and times the stop. It prints,
per start, when each console line appeared, how many there were, and how long the stop took.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from cm_pipeline.demo.driver import DemoProcess  # noqa: E402
from cm_pipeline.warehouse.connection import stop_embedded  # noqa: E402

DOCS = REPO_ROOT / "docs"
# (file, path in the UI): the Runs list after a cycle, and what the extract feeds (dbt, the outbound models).
SHOTS = (
    ("demo-runs.png", "/runs"),
    ("demo-lineage.png", "/assets/chartmogul_customers?view=lineage&lineageScope=downstream"),
)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1600,1000",
    "--virtual-time-budget=20000",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dismiss_welcome(port: str) -> None:
    """Record on the instance that the UI's "Join the Dagster community" dialog was seen (a fresh browser
    profile would show it over every page)."""
    import requests

    requests.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=30
    ).raise_for_status()


def screenshot(url: str, path: Path) -> None:
    """A PNG of `url` from headless Chromium with a fresh profile."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="cm_chromium_") as profile:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}", url],
            check=True,
            capture_output=True,
            timeout=120,
        )
    print(f"  wrote {path.relative_to(REPO_ROOT)}")


REJECTIONS = """
SELECT kind, regexp_replace(error, '''' || '[^'']*' || '''', '...', 'g') AS reason, count(*)
FROM cm_pipeline.push_log WHERE outcome = 'rejected' GROUP BY 1, 2 ORDER BY 3 DESC
"""


def rejections(state: Path) -> None:
    """What the pushes rejected, by kind and reason with the values left out (the README explains them)."""
    import sqlalchemy as sa

    from cm_pipeline.demo.warehouse import demo_warehouse_url

    os.environ["CM_PIPELINE_STATE_DIR"] = str(state)
    engine = sa.create_engine(demo_warehouse_url())
    with engine.connect() as conn:
        for kind, reason, count in conn.execute(sa.text(REJECTIONS)):
            print(f"  rejected {count:5d} {kind}: {reason[:120]}")
    engine.dispose()


def one_start(env: dict[str, str], customers: int, shots: bool) -> None:
    demo = DemoProcess(env, ["--customers", str(customers)])
    try:
        ui, _ = demo.wait_for("Dagster UI:", 600)
        idle, _ = demo.wait_for("idle:", 3600)
        if shots:
            port = env["UI_PORT"]
            dismiss_welcome(port)
            for name, path in SHOTS:
                screenshot(f"http://127.0.0.1:{port}{path}", DOCS / name)
        stop = demo.ctrl_c()
    finally:
        demo.kill()
    for at, line in demo.timed_lines:
        print(f"  {at:7.1f} s  {line}")
    print(f"  UI answered after {ui:.0f} s; every run ended by {idle - 45:.0f} s (the idle line waits 45 s)")
    print(f"  {len(demo.lines)} console lines; Ctrl-C to exit took {stop:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--starts", type=int, default=2, help="starts on the same state (default 2)")
    parser.add_argument("--no-screenshots", action="store_true")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="cm_demo_state_"))
    env = {
        **os.environ,
        "CM_PIPELINE_STATE_DIR": str(state),
        "UI_PORT": str(free_port()),
        "SANDBOX_PORT": str(free_port()),
    }
    env.pop("WAREHOUSE_URL", None)  # the embedded Postgres, as for a person
    try:
        for start in range(1, args.starts + 1):
            print(f"start {start} ({args.customers} customers, state {state})")
            one_start(env, args.customers, shots=start == 1 and not args.no_screenshots)
            rejections(state)
    finally:
        if (state / "pgdata" / "postmaster.pid").exists():
            stop_embedded(state / "pgdata")
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
