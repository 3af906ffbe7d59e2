"""How healthy a push run was, and whether it must fail (pure).

Each row counts once, by its last push_log entry of the run (a row whose first PATCH met a missing key
and whose retry went through is applied). A run whose rejected-plus-failed share of its rows is over
`max_rejected_share` fails, from THRESHOLD_FROM_ROWS rows up (below that a single bad row would be a
large share): after every row is logged, with the counts, the three commonest reasons and the query
that lists them. A run under the threshold that still rejected or failed rows passes, and its push
asset's check shows a warning.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from cm_pipeline.warehouse.schema import PUSH_LOG_TABLE

DEFAULT_MAX_REJECTED_SHARE = 0.05
THRESHOLD_FROM_ROWS = 20
REASON_CHARS = 160

_SHAPES = (
    (re.compile(r"cus_[\w-]+"), "cus_…"),
    (re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"), "<email>"),
    (re.compile(r"'[^']*'"), "'…'"),
    (re.compile(r'"[^"]*"'), '"…"'),
    (re.compile(r"\b\d+(\.\d+)?\b"), "N"),
)


def reason_of(error: str | None) -> str:
    """An error's shape, for counting: uuids, emails, quoted values and numbers blanked out."""
    text = (error or "no error text").strip()
    for pattern, blank in _SHAPES:
        text = pattern.sub(blank, text)
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


@dataclass(frozen=True)
class Health:
    """A run's rows by final outcome, the share rejected or failed, and its commonest reasons."""

    rows: int
    rejected: int
    failed: int
    reasons: tuple[tuple[str, int], ...]  # the top three (reason, rows)
    max_share: float

    @property
    def bad(self) -> int:
        return self.rejected + self.failed

    @property
    def share(self) -> float:
        return self.bad / self.rows if self.rows else 0.0

    @property
    def over(self) -> bool:
        """Whether the run must fail: over the share, with enough rows for a share to mean something."""
        return self.rows >= THRESHOLD_FROM_ROWS and self.share > self.max_share


def check_share(value: float) -> float:
    """`max_rejected_share` as given, or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"max_rejected_share: must be a number from 0 to 1, got {value!r}")
    return float(value)


def assess(final: Iterable[tuple[str, str | None]], max_share: float = DEFAULT_MAX_REJECTED_SHARE) -> Health:
    """Health of a run from each row's (final outcome, error) (push_log.final_outcomes)."""
    final = list(final)
    bad = [(outcome, error) for outcome, error in final if outcome in ("rejected", "failed")]
    reasons = Counter(reason_of(error) for _, error in bad)
    return Health(
        rows=len(final),
        rejected=sum(1 for outcome, _ in bad if outcome == "rejected"),
        failed=sum(1 for outcome, _ in bad if outcome == "failed"),
        reasons=tuple(reasons.most_common(3)),
        max_share=check_share(max_share),
    )


def log_query(run_id: str, kind: str) -> str:
    """The SQL that lists a run's rejected and failed rows."""
    quoted = run_id.replace("'", "''")
    return (
        f"SELECT target, outcome, http_status, error FROM {PUSH_LOG_TABLE} WHERE run_id = '{quoted}' "
        f"AND kind = '{kind}' AND outcome IN ('rejected', 'failed') ORDER BY id;"
    )


def summary_line(health: Health) -> str:
    """'N of M rows rejected or failed (R rejected, F failed, S%)'."""
    return (
        f"{health.bad} of {health.rows} rows rejected or failed ({health.rejected} rejected, "
        f"{health.failed} failed, {health.share:.1%})"
    )


def failure_message(kind: str, run_id: str, health: Health) -> str:
    """Why a run over the threshold fails: counts, the top three reasons with their counts, the query."""
    reasons = "\n".join(f"  {n} × {reason}" for reason, n in health.reasons)
    return (
        f"push {kind}: {summary_line(health)}, over max_rejected_share {health.max_share:.1%} "
        f"(applied from {THRESHOLD_FROM_ROWS} rows). Every row is logged. Top reasons:\n{reasons}\n"
        f"See them all with:\n  {log_query(run_id, kind)}"
    )
