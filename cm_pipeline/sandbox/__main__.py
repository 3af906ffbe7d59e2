"""`python -m cm_pipeline.sandbox`: serve the sandbox until SIGINT/SIGTERM; first stdout line is
`SANDBOX_READY http://HOST:PORT/v1`. `--help` lists every flag."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from cm_pipeline.sandbox.app import SandboxServer
from cm_pipeline.sandbox.faults import FAULT_KINDS, PAGINATION_FAULTS
from cm_pipeline.sandbox.process import READY_PREFIX
from cm_pipeline.sandbox.seed import ACCOUNTS

ON_OFF = {"on": True, "off": False}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m cm_pipeline.sandbox",
        description="Local ChartMogul-compatible API (see the cm_pipeline.sandbox docstring for its choices).",
    )
    p.add_argument("--port", type=int, default=0, help="port to listen on (0 = pick a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--customers", type=int, default=1000, help="number of seeded customers")
    p.add_argument("--seed", type=int, default=1, help="the same seed seeds the same customers and uuids")
    _account_flags(p)
    p.add_argument("--api-key", default=None, help="accepted API key (default: any non-empty key)")
    _knob_flags(p)
    p.add_argument(
        "--parent-pid", type=int, default=None, help="exit when this process is gone (SandboxProcess)"
    )
    return p.parse_args(argv)


def _account_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--account",
        default="uniform",
        choices=tuple(ACCOUNTS),
        help="shape of the seeded account: uniform (statuses and data sources of similar size) or "
        "realistic (~45%% Cancelled, ~35%% Active, one Stripe source with ~70%%, smaller ones, a Custom "
        "one, merged customers and ChartMogul's system tags); see cm_pipeline.sandbox.seed",
    )
    p.add_argument(
        "--state-file",
        default=None,
        metavar="PATH",
        help="keep the account's changes in PATH (JSON lines): a start replays them after seeding, so a "
        "second start with the same file, seed, customers and account serves the state the first left "
        "(see cm_pipeline.sandbox.journal); default: nothing kept",
    )
    p.add_argument(
        "--legacy-page-fields",
        default="on",
        choices=tuple(ON_OFF),
        help="on: first pages carry the deprecated page, per_page, current_page, total_pages; off: only "
        "entries, cursor, has_more (changeable at run time: SandboxControl.configure)",
    )


def _knob_flags(p: argparse.ArgumentParser) -> None:
    """The flags of faults.Knobs (each also changeable at run time: SandboxControl.configure)."""
    p.add_argument("--latency-ms", type=float, default=0.0, help="milliseconds added to every API request")
    p.add_argument("--rate-limit", type=int, default=None, help="requests per second before 429")
    p.add_argument(
        "--retry-after", type=float, default=None, help="Retry-After seconds on 429 (default: absent)"
    )
    p.add_argument("--max-connections", type=int, default=None, help="in-flight requests above this get 503")
    p.add_argument("--fault-rate", type=float, default=0.0, help="share of API requests (0..1) given a fault")
    p.add_argument(
        "--fault-kinds",
        default="500,502,503,504",
        help=f"comma list of {','.join(FAULT_KINDS)} (see cm_pipeline.sandbox.faults)",
    )
    p.add_argument(
        "--fault-phase",
        default="before",
        choices=("before", "after"),
        help="answer the fault before the request is applied, or after (the write happened)",
    )
    p.add_argument("--fault-methods", default="GET,POST,PATCH,PUT,DELETE", help="methods faults may hit")
    p.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draw (reproducible runs)")
    p.add_argument(
        "--pagination-fault",
        default=None,
        choices=PAGINATION_FAULTS,
        help="break cursor paging on continuation pages (see cm_pipeline.sandbox.faults)",
    )


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.perf_counter()
    try:
        server = SandboxServer(
            customers=a.customers, seed=a.seed, api_key=a.api_key, port=a.port, host=a.host,
            latency_ms=a.latency_ms, rate_limit_rps=a.rate_limit, retry_after=a.retry_after,
            max_connections=a.max_connections, fault_rate=a.fault_rate, fault_kinds=a.fault_kinds,
            fault_phase=a.fault_phase, fault_methods=a.fault_methods, fault_seed=a.fault_seed,
            pagination_fault=a.pagination_fault, legacy_page_fields=ON_OFF[a.legacy_page_fields],
            account=a.account, state_file=a.state_file,
        )  # fmt: skip
        server.start()
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{READY_PREFIX}{server.base_url}", flush=True)
    kept = f", {server.replayed} changes replayed from {a.state_file}" if a.state_file else ""
    print(
        f"sandbox: {a.customers} customers ({a.account} account, seed {a.seed}{kept}) ready in "
        f"{time.perf_counter() - started:.2f}s at {server.base_url}; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    while not stop.wait(0.5):
        if a.parent_pid is not None and os.getppid() != a.parent_pid:
            break  # orphaned: the SandboxProcess owner died without stopping us
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
