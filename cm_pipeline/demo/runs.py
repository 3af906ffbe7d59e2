"""One console line when a run starts and one when it ends, with its outcome and counts.

The refresh's counts are its asset's materialization metadata; a push's are its rows in
cm_pipeline.push_log by outcome (so a push that was stopped still says what it did).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cm_pipeline.demo.ui import ENDED, DagsterUI, Run

EXTRACT_ASSET = "chartmogul_customers"
OUTCOME_WORDS = {"SUCCESS": "succeeded", "FAILURE": "FAILED", "CANCELED": "stopped"}
# The order a push's outcomes are listed in; zero counts are left out (failed is always shown).
PUSH_OUTCOME_ORDER = ("applied", "unchanged", "rejected", "dry_run", "pending", "failed")


def _n(value: float | None) -> str:
    return f"{int(value or 0):,}"


def refresh_summary(numbers: Mapping[str, float]) -> str:
    """'5,000 customers: 5,000 inserted, 0 updated, 0 deleted' from the extract asset's metadata."""
    if not numbers:
        return "nothing published"
    customers = numbers.get("dagster/row_count", numbers.get("live_customers"))
    changes = ", ".join(f"{_n(numbers.get(k))} {k}" for k in ("inserted", "updated", "deleted"))
    return f"{_n(customers)} customers: {changes}"


def push_summary(counts: Mapping[str, int]) -> str:
    """'3,141 applied, 116 rejected, 0 failed' from a push run's push_log outcomes."""
    shown = [k for k in PUSH_OUTCOME_ORDER if counts.get(k) or k == "failed"]
    shown += sorted(k for k in counts if counts[k] and k not in PUSH_OUTCOME_ORDER)
    return ", ".join(f"{_n(counts.get(k))} {k}" for k in shown)


def never_started(run: Run) -> bool:
    """A queued run canceled before it was launched (Dagster gives it a start time all the same)."""
    return run.status == "CANCELED" and run.start is not None and (run.end or run.start) - run.start < 0.5


def started_line(run: Run) -> str:
    return f"run started: {run.job} ({run.run_id[:8]})"


def ended_line(run: Run, summary: str) -> str:
    """'run succeeded: push_updates_job in 35 s: 3,141 applied, 0 failed'."""
    took = f" in {run.end - run.start:.0f} s" if run.start and run.end else ""
    word = OUTCOME_WORDS.get(run.status, run.status.lower())
    return f"run {word}: {run.job}{took}" + (f": {summary}" if summary else "")


class RunWatcher:
    """Turns the webserver's run list into start and end lines, each printed once per run."""

    def __init__(
        self,
        ui: DagsterUI,
        since: float,
        push_counts: Callable[[Run], Mapping[str, int] | None],
        refresh_job: str = "warehouse_refresh_job",
    ) -> None:
        self.ui = ui
        self.since = since
        self.push_counts = push_counts
        self.refresh_job = refresh_job
        self._started: set[str] = set()
        self._ended: set[str] = set()

    def summary(self, run: Run) -> str:
        if run.job == self.refresh_job:
            return refresh_summary(self.ui.materialization_numbers(run.run_id, EXTRACT_ASSET))
        counts = self.push_counts(run)
        return push_summary(counts) if counts is not None else ""

    def poll(self) -> list[str]:
        """Lines for the runs that started or ended since the last poll (oldest first)."""
        lines = []
        for run in reversed(self.ui.runs()):
            if run.start is None or run.start < self.since:
                continue  # queued (it gets its line when it starts), or a run of an earlier demo
            if run.run_id not in self._started:
                self._started.add(run.run_id)
                if never_started(run):
                    self._ended.add(run.run_id)
                    lines.append(f"run canceled before it started: {run.job}")
                    continue
                lines.append(started_line(run))
            if run.status in ENDED and run.run_id not in self._ended:
                self._ended.add(run.run_id)
                lines.append(ended_line(run, self.summary(run)))
        return lines

    def all_ended(self) -> bool:
        """True when every run this watcher saw start has ended."""
        return self._started == self._ended
