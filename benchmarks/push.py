"""Reverse-ETL push figures: N changed customers against a sandbox limited to 40 req/s. Not a test.

Each changed customer costs a GET (read live state) and a PATCH (the merged tags + custom), so calls/s
counts both. Only successful (non-429) calls count towards the target; all calls are shown too. The client
is set to --client-rps (default 39, under the API's 40/s: see "API limits" in docs/architecture.md).
Printed:

1. floor: bare GETs through the same client and limiter (no Postgres, no merge) measured in this run
2. the push: successful and all calls/s vs the limit and vs the floor, updates/s, the 429s seen
   (client and sandbox), the unresolved 429s (rows whose call still ended in 429: must be 0)
3. the same push again, every row now unchanged: the calls it made (must be 0)
4. one PASS/FAIL line per target

Usage: .venv/bin/python benchmarks/push.py [--customers 10000] [--rate-limit 40] [--client-rps 39]
       [--workers 10] [--warehouse-url postgresql+psycopg2://...]   (a scratch database is created
       next to the warehouse URL's database and dropped at the end)
"""

from __future__ import annotations

import argparse
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.push.kinds import UPDATES
from cm_pipeline.push.run import push
from cm_pipeline.sandbox import SandboxProcess
from cm_pipeline.warehouse.connection import ensure_database, resolve_url
from cm_pipeline.warehouse.customers import write_entries
from cm_pipeline.warehouse.schema import ensure_schema

KEY = "bench-key"


def scratch_database(url: str) -> tuple[str, str]:
    """(admin URL, URL of a new scratch database on the same server)."""
    admin = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    name = f"cm_bench_push_{uuid.uuid4().hex[:8]}"
    ensure_database(admin, name)
    return admin, make_url(url).set(database=name).render_as_string(hide_password=False)


def load_warehouse(engine, client) -> int:
    """Copy every sandbox customer into chartmogul.customers (one statement per page)."""
    n = 0
    for page in client.list_customers():
        write_entries(engine, page.entries)
        n += len(page.entries)
    return n


def floor_calls_per_second(client, uuids: list[str], workers: int, seconds: float) -> float:
    """Bare GETs through the client's limiter for ~`seconds`: the best rate the limiter allows here."""
    from concurrent.futures import ThreadPoolExecutor

    count = max(1, int(seconds * client.limiter.max_requests_per_second))
    targets = (uuids * (count // max(1, len(uuids)) + 1))[:count]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(client.retrieve_customer, targets))
    return count / (time.perf_counter() - t0)


OUTBOUND = (
    "CREATE TABLE reverse_etl.chartmogul_updates AS SELECT uuid AS customer_uuid, "
    "'[\"bench\"]'::jsonb AS add_tags, '[]'::jsonb AS remove_tags, "
    "jsonb_build_object('bench_run', 1) AS custom_attributes, "
    '\'{"bench_run": "Integer"}\'::jsonb AS attribute_types FROM chartmogul.customers'
)
# The key is known to the warehouse, as after an extraction.
KEY_HOLDER = (
    "UPDATE chartmogul.customers SET custom_attributes = custom_attributes || '{\"bench_run\": 0}' "
    "WHERE uuid = (SELECT min(uuid) FROM chartmogul.customers)"
)


def prepare(engine, client, sandbox) -> tuple[int, list[str]]:
    """Load the sandbox's customers, plan one change per customer, give `bench_run` to one of them."""
    ensure_schema(engine)
    loaded = load_warehouse(engine, client)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS reverse_etl"))
        conn.execute(sa.text(OUTBOUND))
    # bench_run must exist in the account for PATCH: give it to one customer by admin insert
    sandbox.control.insert_customer(email="bench-key-holder@example.com", custom={"bench_run": 0})
    with engine.begin() as conn:
        conn.execute(sa.text(KEY_HOLDER))
        uuids = [r[0] for r in conn.execute(sa.text("SELECT uuid FROM chartmogul.customers LIMIT 200"))]
    return loaded, uuids


def measure(args, engine) -> dict:
    """Floor, the push, the same push again, and the sandbox's own counters."""
    with SandboxProcess(
        customers=args.customers, seed=1, rate_limit_rps=args.rate_limit, retry_after=None
    ) as sandbox:
        with ChartMogulClient(
            KEY, sandbox.base_url, max_requests_per_second=args.client_rps, max_connections=args.workers
        ) as client:
            loaded, uuids = prepare(engine, client, sandbox)
            floor = floor_calls_per_second(client, uuids, args.workers, args.floor_seconds)
            time.sleep(1.1)  # start the push with an empty rate window
            sandbox.control.reset_stats()
            before = client.stats
            t0 = time.perf_counter()
            result = push(engine, client, "bench", UPDATES, max_workers=args.workers)
            elapsed = time.perf_counter() - t0
            after = client.stats
            t1 = time.perf_counter()
            again = push(engine, client, "bench-again", UPDATES, max_workers=args.workers)
            again_elapsed = time.perf_counter() - t1
        server = sandbox.control.stats()
    with engine.connect() as conn:
        unresolved = conn.execute(
            sa.text(
                "SELECT count(*) FROM cm_pipeline.push_log WHERE outcome = 'failed' AND http_status = 429"
            )
        ).scalar()
    return dict(
        loaded=loaded, floor=floor, result=result, elapsed=elapsed, before=before, after=after,
        again=again, again_elapsed=again_elapsed, server=server, unresolved=unresolved,
    )  # fmt: skip


def verdict(name: str, met: bool, figure: str, target: str) -> str:
    return f"{'PASS' if met else 'FAIL'}  {name}: {figure} (target {target})"


def report(args, m: dict) -> bool:
    """Print the figures and one PASS/FAIL line per target; True when every target is met."""
    before, after, result, again, server = m["before"], m["after"], m["result"], m["again"], m["server"]
    calls = after["requests"] - before["requests"]
    # Calls the API answered with something other than 429: only these count against the target
    # (a 429 is a call the limit refused, not throughput).
    answered = {
        status: n - before["by_status"].get(status, 0)
        for status, n in after["by_status"].items()
        if n - before["by_status"].get(status, 0)
    }
    ok_calls = sum(n for status, n in answered.items() if status != "429")
    rate, ok_rate = calls / m["elapsed"], ok_calls / m["elapsed"]
    print(f"customers loaded: {m['loaded']}; changed rows pushed: {result['rows']}")
    print(
        f"outcomes: applied {result['applied']}, unchanged {result['unchanged']}, rejected {result['rejected']}, "
        f"failed {result['failed']}"
    )
    print(f"floor (bare GETs through the same limiter, {args.workers} threads): {m['floor']:.1f} calls/s")
    print(f"push: {calls} calls in {m['elapsed']:.1f} s = {rate:.1f} calls/s (all, 429s included)")
    print(
        f"  successful (non-429) calls: {ok_calls} = {ok_rate:.1f} calls/s; by status: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(answered.items()))
    )
    print(f"  vs the floor: {ok_rate / m['floor']:.1%}; updates/s: {result['applied'] / m['elapsed']:.1f}")
    print(
        f"  429s seen: client {after['rate_limited'] - before['rate_limited']}, sandbox {server['rate_limited']}; "
        f"peak requests in any 1 s window: {server['peak_requests_per_second']}, "
        f"peak concurrency: {server['peak_concurrency']}"
    )
    print(f"push again (every row unchanged): {again['rows']} rows in {m['again_elapsed']:.1f} s")
    checks = [
        verdict(
            "successful calls/s, share of the API's limit",
            ok_rate >= 0.9 * args.rate_limit,
            f"{ok_rate:.1f}/s = {ok_rate / args.rate_limit:.1%} of {args.rate_limit}/s",
            ">= 90%",
        ),
        verdict("rows whose call still ended in 429", m["unresolved"] == 0, str(m["unresolved"]), "0"),
        verdict("rows failed", result["failed"] == 0, str(result["failed"]), "0"),
        verdict("calls for unchanged rows", again["calls"] == 0, str(again["calls"]), "0"),
    ]
    print("\n".join(checks))
    return all(line.startswith("PASS") for line in checks)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=10_000)
    p.add_argument("--rate-limit", type=int, default=40, help="sandbox requests/second (the API's limit)")
    p.add_argument("--client-rps", type=float, default=39.0, help="client limiter cap")
    p.add_argument("--workers", type=int, default=10)
    p.add_argument("--floor-seconds", type=float, default=5.0)
    p.add_argument("--warehouse-url", default=None, help="server to create the scratch database on")
    args = p.parse_args()

    admin, url = scratch_database(resolve_url(args.warehouse_url))
    engine = sa.create_engine(url, pool_size=args.workers + 2)
    try:
        measured = measure(args, engine)
    finally:
        engine.dispose()
        drop = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        with drop.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        drop.dispose()
    return 0 if report(args, measured) else 1


if __name__ == "__main__":
    raise SystemExit(main())
