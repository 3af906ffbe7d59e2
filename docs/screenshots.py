"""Run the demo as a person would, time it, count its console lines, and take the README's screenshots.

    .venv/bin/python docs/screenshots.py                     # the README's figures and screenshots
    .venv/bin/python docs/screenshots.py --no-screenshots --stops dagster refresh push push idle

Each start runs `python -m cm_pipeline.demo` on free ports in one temporary state folder (a first start,
then starts on the state it left) and presses Ctrl-C (SIGINT to its process group) in the phase `--stops`
names for it (default `idle idle`): `idle` after a full cycle (the refresh, the three pushes, the demo's
"idle" line), `dagster` while Dagster is starting, `refresh` while the refresh runs, `push` while
push_updates_job applies rows. Per start it prints when each console line appeared, how many there were,
how long the stop took, and push_log's outcomes so far (a stop must leave no `failed` row). If the last
start waits for idle, the screenshots are taken before its stop with headless Chromium (Debian's
`chromium` package): the Runs list then shows both starts' runs, each ended.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from cm_pipeline.demo.driver import DemoProcess  # noqa: E402
from cm_pipeline.warehouse.connection import stop_embedded  # noqa: E402

DOCS = REPO_ROOT / "docs"
# (file, path in the UI): the Runs list after a cycle, and what the extract feeds (dbt, the outbound models).
SHOTS = (
    ("demo-runs.png", "/runs"),
    ("demo-lineage.png", "/assets/chartmogul_customers?view=lineage&lineageScope=downstream&lineageDepth=3"),
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
# Where each phase of --stops presses Ctrl-C: (console line to wait for, its timeout, seconds after it).
STOP_POINTS = {
    "dagster": ("starting Dagster", 300, 10.0),
    "refresh": ("run started: warehouse_refresh_job", 600, 15.0),
    "push": ("run started: push_updates_job", 1800, 30.0),
    "idle": ("idle:", 3600, 0.0),
}


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


OUTCOMES = "SELECT kind, outcome, count(*) FROM cm_pipeline.push_log GROUP BY 1, 2 ORDER BY 1, 2"
REJECTIONS = """
SELECT kind, regexp_replace(error, '''' || '[^'']*' || '''', '...', 'g') AS reason, count(*)
FROM cm_pipeline.push_log WHERE outcome = 'rejected' GROUP BY 1, 2 ORDER BY 3 DESC
"""


def push_log_report(state: Path) -> None:
    """push_log's outcomes by kind so far, and the rejections by reason with the values left out."""
    import sqlalchemy as sa

    from cm_pipeline.demo.warehouse import demo_warehouse_url

    os.environ["CM_PIPELINE_STATE_DIR"] = str(state)
    engine = sa.create_engine(demo_warehouse_url())
    try:
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT to_regclass('cm_pipeline.push_log')")).scalar() is None:
                print("  push_log: not created yet")
                return
            outcomes = conn.execute(sa.text(OUTCOMES)).all()
            print("  push_log: " + (", ".join(f"{k} {o} {n}" for k, o, n in outcomes) or "empty"))
            for kind, reason, count in conn.execute(sa.text(REJECTIONS)):
                print(f"  rejected {count:5d} {kind}: {reason[:120]}")
    finally:
        engine.dispose()


def one_start(env: dict[str, str], customers: int, stop_in: str, shots: bool) -> None:
    """One start of the demo, stopped with Ctrl-C in phase `stop_in`; print what it showed and timed."""
    pattern, timeout, after = STOP_POINTS[stop_in]
    demo = DemoProcess(env, ["--customers", str(customers)])
    ui = None
    try:
        if stop_in != "dagster":
            ui, _ = demo.wait_for("Dagster UI:", 600)
        reached, _ = demo.wait_for(pattern, timeout)
        time.sleep(after)
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
    if ui is not None:
        print(f"  UI answered after {ui:.0f} s")
    if stop_in == "idle":
        print(f"  every run ended by {reached - 45:.0f} s (the idle line waits 45 s)")
    print(
        f"  {len(demo.lines)} console lines; Ctrl-C in phase '{stop_in}' ({after:.0f} s after "
        f"'{pattern}' at {reached:.0f} s): the demo exited {stop:.1f} s later"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument(
        "--stops",
        nargs="+",
        choices=sorted(STOP_POINTS),
        default=["idle", "idle"],
        help="one start per entry, on the same state, stopped in that phase (default: idle idle)",
    )
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
        for start, stop_in in enumerate(args.stops, 1):
            print(f"start {start} ({args.customers} customers, state {state})", flush=True)
            shots = start == len(args.stops) and stop_in == "idle" and not args.no_screenshots
            one_start(env, args.customers, stop_in, shots)
            push_log_report(state)
            sys.stdout.flush()
    finally:
        if (state / "pgdata" / "postmaster.pid").exists():
            stop_embedded(state / "pgdata")
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
