"""Seeded data (reproducible, realistic, hostile text) and the sandbox as a subprocess / CLI."""

from __future__ import annotations

import socket
from collections import Counter

import pytest
import requests

from cm_pipeline.chartmogul.vocabulary import STATUSES
from cm_pipeline.sandbox import SandboxProcess
from cm_pipeline.sandbox.__main__ import parse_args
from cm_pipeline.sandbox.attributes import coerce_value
from cm_pipeline.sandbox.process import cli_args
from cm_pipeline.sandbox.seed import SEED_DEFINITIONS, generate
from cm_pipeline.sandbox.store import Store

N = 3000


@pytest.fixture(scope="module")
def docs():
    return list(generate(N, seed=5))


def test_same_seed_same_data_other_seed_other_data(docs):
    assert list(generate(N, seed=5)) == docs
    other = list(generate(N, seed=6))
    assert [d["uuid"] for d in other] != [d["uuid"] for d in docs]
    assert Store(50, 5).all() == Store(50, 5).all()


def test_realistic_mix(docs):
    statuses = Counter(d["status"] for d in docs)
    assert set(statuses) == set(STATUSES)
    assert statuses["Active"] > statuses["Past Due"] > 0
    systems = Counter(d["billing-system-type"] for d in docs)
    assert {"Stripe", "Recurly", "Chargebee", "Braintree", "Custom"} <= set(systems)
    assert len({d["data_source_uuid"] for d in docs}) >= 6
    for d in docs:
        assert d["data_source_uuid"].startswith("ds_") and d["uuid"].startswith("cus_")
        assert d["arr"] == d["mrr"] * 12 and isinstance(d["mrr"], int)
        if d["status"].endswith("Lead") or d["status"] == "Cancelled":
            assert d["mrr"] == 0
        if d["status"] in ("Active", "Past Due"):
            assert d["mrr"] > 0 and d["customer-since"]
        assert bool(d["attributes"]["stripe"]) == (d["billing-system-type"] == "Stripe")
        for key, value in d["attributes"]["custom"].items():
            # already in the form the API answers (e.g. Timestamp "2023-09-08 00:00:00")
            assert coerce_value(SEED_DEFINITIONS[key], value, key) == value, (key, value)
        assert d["address"]["country"] == d["country"] and len(d["country"]) == 2  # alpha-2
    assert len({(d["data_source_uuid"], d["external_id"]) for d in docs}) == N
    emails = Counter(d["email"].lower() for d in docs)
    assert any(n > 1 for n in emails.values()), "some emails are shared"
    assert any(d["email"] != d["email"].lower() for d in docs), "mixed-case emails"
    assert sum(bool(d["attributes"]["tags"]) for d in docs) > N / 2


def test_hostile_text_is_present(docs):
    text = " ".join(d["name"] + d["company"] + "".join(d["attributes"]["tags"]) for d in docs)
    for fragment in ("'", '"', "\\", "\t", "\n", ";", "--", "%", "$$", "\\N", "🚀", "東京", "é"):
        assert fragment in text, fragment
    assert "\x00" not in text


def free_port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_cli_args_from_knobs():
    args = cli_args(
        10, 2, "k", 0, "127.0.0.1", {"latency_ms": 5, "fault_kinds": ["500", "drop"], "retry_after": None}
    )
    assert args[:8] == ["--port", "0", "--customers", "10", "--seed", "2", "--host", "127.0.0.1"]
    assert "--api-key" in args and "--latency-ms" in args and "--retry-after" not in args
    assert args[args.index("--fault-kinds") + 1] == "500,drop"
    assert "--pagination-fault" not in args
    args = cli_args(1, 1, None, 0, "127.0.0.1", {"pagination_fault": "repeat_cursor"})
    assert args[args.index("--pagination-fault") + 1] == "repeat_cursor"
    assert parse_args(args).pagination_fault == "repeat_cursor"
    with pytest.raises(ValueError, match="pagination_fault"):
        cli_args(1, 1, None, 0, "127.0.0.1", {"pagination_fault": "loop_forever"})
    with pytest.raises(ValueError, match="fault_rate"):
        cli_args(1, 1, None, 0, "127.0.0.1", {"fault_rate": 3})


def test_sandbox_process_serves_and_stops():
    with SandboxProcess(customers=500, seed=2, api_key="proc-key", latency_ms=1, rate_limit_rps=1000) as proc:
        assert proc.base_url.startswith("http://127.0.0.1:") and proc.base_url.endswith("/v1")
        assert proc.control.health() == {"ok": True, "customers": 500}
        cfg = proc.control.config()
        assert cfg["latency_ms"] == 1 and cfg["rate_limit_rps"] == 1000
        r = requests.get(f"{proc.base_url}/customers", auth=("proc-key", ""), params={"per_page": 100})
        assert r.status_code == 200 and r.json()["total_pages"] == 5
        assert requests.get(f"{proc.base_url}/customers", auth=("other", "")).status_code == 401
        assert r.json()["entries"] == Store(500, 2).all()[:100], (
            "the child seeds exactly what this process seeds"
        )
        port, pid, child = proc.port, proc.pid, proc._proc
    assert proc.pid is None and pid
    assert child.returncode == 0, "SIGTERM stops the sandbox cleanly"
    assert free_port_is_closed(port)


def test_sandbox_process_exits_when_its_owner_dies():
    import os
    import subprocess
    import sys
    import time

    code = (
        "import os\nfrom cm_pipeline.sandbox import SandboxProcess\n"
        "p = SandboxProcess(customers=10).start()\nprint(p.pid, flush=True)\nos._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, 9)
    raise AssertionError("orphaned sandbox process kept running")
