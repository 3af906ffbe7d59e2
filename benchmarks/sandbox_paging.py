"""Paging speed of the sandbox: a full cursor walk of N customers (default 100k, 200 per page) from a
separate client process, against a floor measured in the same run.

Floor: a bare socket server (another process) that answers each request with the SAME page bytes the
sandbox produced, read by the same http.client loop; so the ratio is the sandbox's own cost per page.

    .venv/bin/python benchmarks/sandbox_paging.py [--customers 100000] [--per-page 200] [--account realistic]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

import requests

from cm_pipeline.sandbox import SandboxProcess

AUTH = {"Authorization": "Basic " + base64.b64encode(b"bench-key:").decode()}

FLOOR_SERVER = r"""
import socket, sys
bodies = open(sys.argv[1], "rb").read().split(b"\n\x00SPLIT\x00\n")
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
buf = b""
for body in bodies:
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            sys.exit(0)
        buf += chunk
    buf = buf.split(b"\r\n\r\n", 1)[1]
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
conn.close()
"""


def walk_http_client(
    host: str, port: int, per_page: int, capture: list | None = None
) -> tuple[int, int, float]:
    """Walk all pages with http.client (keep-alive), decoding only enough JSON to find the cursor."""
    conn = http.client.HTTPConnection(host, port)
    cursor, pages, customers = None, 0, 0
    started = time.perf_counter()
    while True:
        path = f"/v1/customers?per_page={per_page}" + (f"&cursor={cursor}" if cursor else "")
        conn.request("GET", path, headers=AUTH)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise SystemExit(f"unexpected {resp.status}: {body[:200]!r}")
        if capture is not None:
            capture.append(body)
        page = json.loads(body)
        pages += 1
        customers += len(page["entries"])
        if not page["has_more"]:
            break
        cursor = page["cursor"]
    elapsed = time.perf_counter() - started
    conn.close()
    return pages, customers, elapsed


def walk_requests(base_url: str, per_page: int) -> tuple[int, int, float]:
    """The way an extractor would: requests.Session + full JSON decode."""
    s = requests.Session()
    s.auth = ("bench-key", "")
    cursor, pages, customers = None, 0, 0
    started = time.perf_counter()
    while True:
        params = {"per_page": per_page, **({"cursor": cursor} if cursor else {})}
        page = s.get(f"{base_url}/customers", params=params, timeout=60).json()
        pages += 1
        customers += len(page["entries"])
        if not page["has_more"]:
            break
        cursor = page["cursor"]
    elapsed = time.perf_counter() - started
    s.close()
    return pages, customers, elapsed


def floor_walk(bodies: list[bytes], per_page: int) -> float:
    """Same request loop against a bare socket server replaying the captured bytes."""
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(b"\n\x00SPLIT\x00\n".join(bodies))
        path = f.name
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, path], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        _, customers, elapsed = walk_http_client("127.0.0.1", port, per_page)
        assert customers == sum(len(json.loads(b)["entries"]) for b in bodies)
        return elapsed
    finally:
        proc.wait(10)
        os.unlink(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--per-page", type=int, default=200)
    p.add_argument(
        "--account", default="uniform", choices=("uniform", "realistic"), help="seeded account shape"
    )
    a = p.parse_args()

    started = time.perf_counter()
    with SandboxProcess(customers=a.customers, seed=1, account=a.account, startup_timeout=900) as proc:
        startup = time.perf_counter() - started
        host, port = "127.0.0.1", proc.port
        captured: list[bytes] = []
        pages, customers, t_sandbox = walk_http_client(host, port, a.per_page, capture=captured)
        _, _, t_requests = walk_requests(proc.base_url, a.per_page)
        stats = proc.control.stats()
    assert customers == a.customers, (customers, a.customers)
    t_floor = floor_walk(captured, a.per_page)
    mb = sum(map(len, captured)) / 1e6

    print(
        f"sandbox paging benchmark: {customers} customers ({a.account} account), {pages} pages of {a.per_page},"
        f" {mb:.1f} MB of JSON"
    )
    print(f"  sandbox start-up incl. seeding ({a.customers} customers):  {startup:6.2f} s")
    print(f"  floor   (bare socket replaying the same bytes, http.client): {t_floor:6.2f} s  "
          f"{customers / t_floor:10,.0f} customers/s  {pages / t_floor:7,.0f} pages/s")  # fmt: skip
    print(f"  sandbox (http.client, keep-alive, json.loads per page):      {t_sandbox:6.2f} s  "
          f"{customers / t_sandbox:10,.0f} customers/s  {pages / t_sandbox:7,.0f} pages/s  "
          f"ratio to floor {t_sandbox / t_floor:4.2f}x")  # fmt: skip
    print(f"  sandbox (requests.Session + .json(), as an extractor):       {t_requests:6.2f} s  "
          f"{customers / t_requests:10,.0f} customers/s  {pages / t_requests:7,.0f} pages/s  "
          f"ratio to floor {t_requests / t_floor:4.2f}x")  # fmt: skip
    print(f"  server counters: requests={stats['requests']} by_status={stats['by_status']}")


if __name__ == "__main__":
    main()
