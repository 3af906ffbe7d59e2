"""ChartMogul client figures against the sandbox (a subprocess). Prints ratios; not a test.

1. floor: a bare requests.Session walking every page (no limiter, no retries, no validation)
2. the client walking the same pages with its limiter opened wide: overhead ratio vs the floor
3. the client at its defaults (35 req/s, 10 connections) hammered by 16 threads against a sandbox
   with 100 ms latency: achieved rate vs the cap, and the server-measured peaks

Usage: .venv/bin/python benchmarks/chartmogul_client.py [--customers 20000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import threading
import time

import requests

from cm_pipeline.chartmogul.client import ChartMogulClient
from cm_pipeline.sandbox import SandboxProcess

KEY = "bench-key"


def bare_walk(base_url: str) -> tuple[int, int, float]:
    s = requests.Session()
    s.auth = (KEY, "")
    t0 = time.perf_counter()
    cursor, pages, rows = None, 0, 0
    while True:
        params = {"per_page": 200, **({"cursor": cursor} if cursor else {})}
        body = s.get(base_url + "/customers", params=params, timeout=(5, 60)).json()
        pages += 1
        rows += len(body["entries"])
        if not body["has_more"]:
            break
        cursor = body["cursor"]
    s.close()
    return pages, rows, time.perf_counter() - t0


def client_walk(base_url: str) -> tuple[int, int, float]:
    with ChartMogulClient(KEY, base_url, max_requests_per_second=1_000_000, max_connections=1) as c:
        t0 = time.perf_counter()
        pages = rows = 0
        for page in c.list_customers():
            pages += 1
            rows += len(page.entries)
        return pages, rows, time.perf_counter() - t0


def hammer(base_url: str, seconds: float, threads: int) -> tuple[int, float, dict]:
    client = ChartMogulClient(KEY, base_url)  # the defaults: 35 req/s, 10 connections
    stop = time.monotonic() + seconds
    count = 0
    lock = threading.Lock()

    def work():
        nonlocal count
        while time.monotonic() < stop:
            client.list_customers_page(per_page=1)
            with lock:
                count += 1

    t0 = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    stats = client.stats
    client.close()
    return count, elapsed, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=16)
    args = ap.parse_args()

    with SandboxProcess(customers=args.customers, seed=1) as sb:
        ctl = sb.control
        bare_walk(sb.base_url)  # warm-up
        runs = [
            (bare_walk(sb.base_url), client_walk(sb.base_url)) for _ in range(3)
        ]  # interleaved, best of 3
        pages, rows, floor = min((b for b, _ in runs), key=lambda r: r[2])
        cpages, crows, ctime = min((c for _, c in runs), key=lambda r: r[2])
        assert (cpages, crows) == (pages, rows)
        print(
            f"floor   bare requests walk: {rows} customers, {pages} pages in {floor:.2f} s ({pages / floor:.0f} pages/s)"
        )
        print(
            f"client  unthrottled walk:   {crows} customers, {cpages} pages in {ctime:.2f} s; ratio to floor {ctime / floor:.2f}x"
        )

        ctl.configure(latency_ms=100, rate_limit_rps=40, max_connections=20)
        ctl.reset_stats()
        time.sleep(1.1)  # let the walk above leave the server's one-second window
        ctl.reset_stats()
        n, elapsed, stats = hammer(sb.base_url, args.seconds, args.threads)
        server = ctl.stats()
        rate = n / elapsed
        print(
            f"limiter {args.threads} threads, cap 35 req/s & 10 conns: {n} requests in {elapsed:.2f} s = {rate:.1f} req/s "
            f"(ratio to cap {rate / 35:.2f}); server peak {server['peak_requests_per_second']} req in any 1 s, "
            f"peak concurrency {server['peak_concurrency']}, client peak in flight {stats['peak_in_flight']}, "
            f"429s {server['rate_limited']}, 503s {server['over_capacity']}"
        )


if __name__ == "__main__":
    main()
