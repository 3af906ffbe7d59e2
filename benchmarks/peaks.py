"""Part 3's child processes: one that only loads the definitions, one that also materializes the extract;
each prints its peak RSS (and the run's figures), read by `child`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Peaks are read from VmHWM in /proc/self/status (Linux): it belongs to the process's own memory, begun at
# exec. ru_maxrss is no measure in a child: exec carries the parent's high-water mark into it, and after
# part 1 this script's own process is larger than a definitions-only child.
PEAK = """
def status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
"""
DEFINITIONS_ONLY = (
    PEAK
    + """
from cm_pipeline.definitions import build_defs
build_defs()
print(status_kib("VmHWM"))
"""
)
# Also measured in the run's own process: its resident size just before the run, and its peak from then on
# (writing 5 to /proc/self/clear_refs resets the peak to the current size; Linux).
WITH_A_RUN = (
    PEAK
    + """
import sys, time
import dagster as dg
from cm_pipeline.definitions import build_defs
from cm_pipeline.extract.asset import chartmogul_customers
from cm_pipeline.resources import ChartMogulAccess, ChartMogulResource, WarehouseResource

build_defs()
base_url, db_url = sys.argv[1:3]
peak_before = status_kib("VmHWM")
before = status_kib("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
started = time.perf_counter()
result = dg.materialize(
    [chartmogul_customers],
    resources={
        "chartmogul": ChartMogulResource(
            access=ChartMogulAccess(api_key="bench-key", base_url=base_url),
            max_requests_per_second=100000, max_connections=20,
        ),
        "warehouse": WarehouseResource(url=db_url),
    },
    run_config={"ops": {"chartmogul_customers": {"config": {"progress_interval_seconds": 60}}}},
)
[mat] = result.asset_materializations_for_node("chartmogul_customers")
print(max(peak_before, status_kib("VmHWM")), round(time.perf_counter() - started, 1),
      mat.metadata["inserted"].value, status_kib("VmHWM") - before)
"""
)


def child(code: str, *args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO_ROOT)
    if out.returncode:
        raise SystemExit(f"child failed:\n{out.stderr[-3000:]}")
    return out.stdout.split()
