"""Extraction benchmark: the asset's extraction path against floors measured in the same run.

    .venv/bin/python benchmarks/extract.py                 # full run (100k / 20k / RSS 10k vs 1M)
    .venv/bin/python benchmarks/extract.py --quick         # smaller sizes, for a smoke run

1. Zero latency, N customers (default 100k), SandboxProcess:
   FLOOR       bare `requests` paging (one cursor) + json parsing only;
   FLOOR+COPY  the same + one COPY per page (uuid, raw jsonb) into a scratch table, committed per page;
   EXTRACT     `run_extraction` (what the asset calls) into an empty warehouse: map, stage, checkpoint,
               dedupe, publish; then again on the unchanged data (steady state).
   The client's rate limit is raised to 100000 rps for this part (connections stay 10): at 35 rps the
   limiter, not the code, would be measured. The floors use no limiter at all.
2. 250 ms per request, M customers (default 20k), default limits (35 rps, 10 connections), one warehouse:
   two first loads into empty warehouses (one cursor; partitioned, large statuses split by data source as
   the API's own counts show), then two full refresh passes over
   the same published state: one cursor (what Airbyte and dlt do) and the partitioned pass (large
   statuses split by data source, coverage checked). The sandbox's peak requests/s and concurrency, the
   plans and the coverage checks are printed.
   Part 2 alone: .venv/bin/python benchmarks/extract.py --parts 2
3. Peak RSS of an extraction child process at 10k and at the largest size (default 1M).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from cm_pipeline.chartmogul.client import ChartMogulClient  # noqa: E402
from cm_pipeline.extract.options import ExtractOptions  # noqa: E402
from cm_pipeline.extract.run import run_extraction  # noqa: E402
from cm_pipeline.sandbox import SandboxProcess  # noqa: E402
from cm_pipeline.warehouse.connection import raw_connection  # noqa: E402
from cm_pipeline_tests.pg import PostgresForTests  # noqa: E402

KEY = "bench-key"
FAST = {"max_requests_per_second": 100_000, "max_connections": 10}
QUIET = logging.getLogger("bench.extract")

# Targets of the issue, and each one's verdict as the run measured it (printed again at the end).
TARGET_EXTRACT_VS_COPY = 1.25  # extraction within 1.25 x FLOOR+COPY at zero latency
TARGET_SPEEDUP = 4.0  # partitioned pass at least 4 x faster than one cursor at 250 ms
TARGET_RPS, TARGET_CONNECTIONS = 35, 10  # never above the configured limits
TARGET_RSS_RATIO = 1.5  # peak RSS at the largest size within 1.5 x the RSS at 10k
VERDICTS: list[str] = []


def verdict(name: str, met: bool, figure: str, target: str) -> str:
    """One PASS/FAIL line: what was measured against what was asked; kept for the summary."""
    line = f"{'PASS' if met else 'FAIL'}  {name}: {figure} (target {target})"
    VERDICTS.append(line)
    return line


def floor(base_url: str, per_page: int, copy_engine=None) -> tuple[float, int, int]:
    """One cursor with bare requests + json.loads; with copy_engine, one COPY per page too."""
    session = requests.Session()
    session.auth = (KEY, "")
    conn = None
    if copy_engine is not None:
        conn = raw_connection(copy_engine)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS scratch (uuid text, raw jsonb)")
            cur.execute("TRUNCATE scratch")
        conn.commit()
    started = time.perf_counter()
    cursor, pages, rows = None, 0, 0
    while True:
        params = {"per_page": per_page, **({"cursor": cursor} if cursor else {})}
        body = json.loads(session.get(f"{base_url}/customers", params=params, timeout=60).content)
        entries = body["entries"]
        pages += 1
        rows += len(entries)
        if conn is not None:
            buf = "".join(
                e["uuid"]
                + "\t"
                + json.dumps(e, ensure_ascii=False, separators=(",", ":")).replace("\\", "\\\\")
                + "\n"
                for e in entries
            )
            with conn.cursor() as cur:
                cur.copy_expert("COPY scratch (uuid, raw) FROM STDIN", io.BytesIO(buf.encode()))
            conn.commit()
        if not body.get("has_more"):
            break
        cursor = body["cursor"]
    elapsed = time.perf_counter() - started
    session.close()
    if conn is not None:
        conn.close()
    return elapsed, pages, rows


def extract(base_url: str, db_url: str, **options) -> tuple[float, object]:
    engine = sa.create_engine(db_url)
    client_settings = options.pop("client", {})
    client = ChartMogulClient(KEY, base_url=base_url, **client_settings)
    try:
        started = time.perf_counter()
        result = run_extraction(client, engine, ExtractOptions(progress_interval=30.0, **options), QUIET)
        return time.perf_counter() - started, result
    finally:
        client.close()
        engine.dispose()


def part_zero_latency(pg: PostgresForTests, customers: int, repeat: int) -> None:
    print(f"\n== 1. zero latency, {customers:,} customers, per_page 200, best of {repeat} ==", flush=True)
    with SandboxProcess(customers=customers, seed=1) as srv:
        floor(srv.base_url, 200)  # warm-up: first pages of each kind, imports, connections
        engine = sa.create_engine(pg.create_database("bench_floor"))
        t_floor = t_copy = t_first = t_steady = float("inf")
        try:
            for _ in range(repeat):  # interleaved, so load from other processes hits every variant alike
                elapsed, pages, rows = floor(srv.base_url, 200)
                t_floor = min(t_floor, elapsed)
                t_copy = min(t_copy, floor(srv.base_url, 200, copy_engine=engine)[0])
                db_extract = pg.create_database("bench_extract")
                elapsed, first = extract(srv.base_url, db_extract, client=FAST)
                t_first = min(t_first, elapsed)
                elapsed, steady = extract(srv.base_url, db_extract, client=FAST)
                t_steady = min(t_steady, elapsed)
                assert first.publish.inserted == rows == customers, (first.publish, rows)
                assert steady.publish.unchanged == customers
            t_single, _ = extract(
                srv.base_url, pg.create_database("bench_single"), client=FAST, partition_by_status=False
            )
        finally:
            engine.dispose()
        print(f"FLOOR       bare requests paging + json  {t_floor:7.2f} s  ({pages} pages, {rows:,} rows)")
        print(f"FLOOR+COPY  + one COPY per page          {t_copy:7.2f} s  = {t_copy / t_floor:.2f} x FLOOR")
        print(
            f"EXTRACT     asset path, first load       {t_first:7.2f} s  = {t_first / t_copy:.2f} x FLOOR+COPY"
            f"  ({t_first / t_floor:.2f} x FLOOR; {first.pages} pages, {first.publish.inserted:,} inserted)"
        )
        print(
            f"EXTRACT     asset path, unchanged data   {t_steady:7.2f} s  = {t_steady / t_copy:.2f} x FLOOR+COPY"
            f"  ({steady.publish.unchanged:,} unchanged, 0 rewritten)"
        )
        print(
            f"EXTRACT     same, one cursor, first load {t_single:7.2f} s  = {t_single / t_copy:.2f} x FLOOR+COPY"
        )
        for label, seconds in (("first load", t_first), ("refresh of unchanged data", t_steady)):
            print(
                verdict(
                    f"extraction vs FLOOR+COPY, zero latency, {label}",
                    seconds / t_copy <= TARGET_EXTRACT_VS_COPY,
                    f"{seconds / t_copy:.2f} x ({seconds:.2f} s vs {t_copy:.2f} s, {customers:,} customers)",
                    f"<= {TARGET_EXTRACT_VS_COPY} x",
                )
            )


def part_latency(pg: PostgresForTests, customers: int, latency_ms: int) -> None:
    print(
        f"\n== 2. {latency_ms} ms per request, {customers:,} customers, default limits (35 rps, 10 connections) =="
    )
    with SandboxProcess(customers=customers, seed=2, latency_ms=latency_ms) as srv:
        ctl = srv.control
        db = pg.create_database("bench_lat")
        db_single = pg.create_database("bench_lat_single")

        peaks = {"rps": 0, "concurrency": 0}

        def timed(label: str, target_db: str = db, **opts):
            ctl.reset_stats()
            elapsed, result = extract(srv.base_url, target_db, **opts)
            stats = ctl.stats()
            print(
                f"{label:28s} {elapsed:7.2f} s  {result.pages} pages, {stats['requests']} requests, "
                f"{result.publish.inserted:,} inserted, {result.publish.unchanged:,} unchanged; sandbox saw "
                f"peak {stats['peak_requests_per_second']} req/s, peak {stats['peak_concurrency']} concurrent, "
                f"{stats['rate_limited']} x 429, {stats['over_capacity']} x 503",
                flush=True,
            )
            peaks["rps"] = max(peaks["rps"], stats["peak_requests_per_second"])
            peaks["concurrency"] = max(peaks["concurrency"], stats["peak_concurrency"])
            return elapsed, result

        # First loads: empty warehouses, so the partitioned pass plans its split from the API's counts.
        t_first_single, _ = timed("first load, one cursor", db_single, partition_by_status=False)
        t_first, first = timed("first load, partitioned")
        assert first.publish.inserted == customers, first.publish
        # Steady state: both full passes over the SAME published warehouse (nothing changed since).
        t_single, _ = timed("refresh, one cursor", partition_by_status=False)
        t_part, part = timed("refresh, partitioned + split")
        assert part.publish.unchanged == customers, part.publish
        print(f"speed-up     {t_single / t_part:.2f} x  refresh, partitioned vs one cursor (target >= 4 x)")
        print(
            verdict(
                f"partitioned vs one cursor at {latency_ms} ms",
                t_single / t_part >= TARGET_SPEEDUP,
                f"{t_single / t_part:.2f} x ({t_part:.2f} s vs {t_single:.2f} s, {customers:,} customers)",
                f">= {TARGET_SPEEDUP} x",
            )
        )
        print(
            verdict(
                "client limits respected (sandbox-side peaks over the four passes)",
                peaks["rps"] <= TARGET_RPS and peaks["concurrency"] <= TARGET_CONNECTIONS,
                f"peak {peaks['rps']} requests/s, {peaks['concurrency']} concurrent",
                f"<= {TARGET_RPS} requests/s and <= {TARGET_CONNECTIONS} connections",
            )
        )
        print(
            verdict(
                f"first load, partitioned vs one cursor at {latency_ms} ms",
                t_first_single / t_first >= TARGET_SPEEDUP,
                f"{t_first_single / t_first:.2f} x ({t_first:.2f} s vs {t_first_single:.2f} s, {customers:,} customers)",
                f">= {TARGET_SPEEDUP} x",
            )
        )
        for label, result in (("first load", first), ("refresh", part)):
            biggest = max(p.pages for p in result.partitions.values())
            print(
                f"plan ({label}) {len(result.partitions)} partitions, largest {biggest} of {result.pages} pages"
                f" (bound {result.pages / biggest:.1f} x): "
                + ", ".join(f"{n} {p.pages}" for n, p in result.partitions.items())
            )
        for line in part.coverage:
            print(f"coverage     {line}")
        for url in (db, db_single):
            pg.drop_database(url)


CHILD = """
import resource, sys, time, logging
sys.path.insert(0, sys.argv[3])
import sqlalchemy as sa
from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.extract.options import ExtractOptions
from cm_pipeline.extract.run import run_extraction
engine = sa.create_engine(sys.argv[2])
client = ChartMogulClient("bench-key", base_url=sys.argv[1], max_requests_per_second=100000, max_connections=10)
t = time.perf_counter()
r = run_extraction(client, engine, ExtractOptions(progress_interval=60.0), logging.getLogger("x"))
print(r.publish.inserted, round(time.perf_counter() - t, 2), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def part_rss(pg: PostgresForTests, sizes: list[int]) -> None:
    print(
        f"\n== 3. peak RSS of the extraction process (child), {' vs '.join(f'{n:,}' for n in sizes)} customers =="
    )
    results = []
    for n in sizes:
        with SandboxProcess(customers=n, seed=3, startup_timeout=1800) as srv:
            db = pg.create_database("bench_rss")
            out = subprocess.run(
                [sys.executable, "-c", CHILD, srv.base_url, db, str(REPO_ROOT)],
                capture_output=True,
                text=True,
                check=True,
            )
            inserted, seconds, rss_kb = out.stdout.split()
            results.append((n, int(rss_kb)))
            pg.drop_database(db)
            print(
                f"{n:>9,} customers: {int(rss_kb) / 1024:7.1f} MiB peak RSS, {seconds} s, {int(inserted):,} rows",
                flush=True,
            )
    (small_n, small), (big_n, big) = results[0], results[-1]
    print(
        verdict(
            "peak RSS, largest size vs smallest",
            big / small <= TARGET_RSS_RATIO,
            f"{big / small:.2f} x ({big / 1024:.1f} MiB at {big_n:,} vs {small / 1024:.1f} MiB at {small_n:,})",
            f"<= {TARGET_RSS_RATIO} x",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--latency-customers", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=int, default=250)
    parser.add_argument("--rss-sizes", default="10000,1000000")
    parser.add_argument("--quick", action="store_true", help="10k / 4k / RSS 2k vs 20k")
    parser.add_argument("--parts", default="1,2,3")
    parser.add_argument("--repeat", type=int, default=2, help="best of N for part 1")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.latency_customers, args.rss_sizes = 10_000, 4_000, "2000,20000"
    pg = PostgresForTests()
    created = []
    original = pg.create_database

    def tracked(prefix: str = "bench") -> str:
        url = original(prefix)
        created.append(url)
        return url

    pg.create_database = tracked
    print(f"python {sys.version.split()[0]}, Postgres via {pg.source}")
    try:
        parts = set(args.parts.split(","))
        if "1" in parts:
            part_zero_latency(pg, args.customers, args.repeat)
        if "2" in parts:
            part_latency(pg, args.latency_customers, args.latency_ms)
        if "3" in parts:
            part_rss(pg, [int(x) for x in args.rss_sizes.split(",")])
    finally:
        for url in created:
            try:
                pg.drop_database(url)
            except Exception as exc:
                print(f"could not drop {sa.engine.make_url(url).database}: {exc}")
        pg.close()
    print(f"\nbenchmark process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if VERDICTS:
        sizes = " (--quick sizes: not the issue's sizes)" if args.quick else ""
        print(f"\n== targets{sizes} ==")
        for line in VERDICTS:
            print(line)


if __name__ == "__main__":
    main()
