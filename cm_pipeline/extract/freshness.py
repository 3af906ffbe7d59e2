"""Freshness windows of chartmogul.customers, derived from the refresh cron (pure, no I/O but the env read).

The table is refreshed on the refresh cron (WAREHOUSE_REFRESH_CRON, hourly by default). It is stale when
a tick was missed: warn after 1.5 x the longest gap between two consecutive ticks, fail after 2 x. The
longest gap is measured over a fixed sample of ticks, so a cron of uneven gaps (weekdays only, say) is
judged by its longest one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string

# The refresh cron's default and variable; cm_pipeline.schedules takes them from here (this module imports
# no jobs, so the assets can use it).
DEFAULT_REFRESH_CRON = "0 * * * *"
REFRESH_CRON_ENV = "WAREHOUSE_REFRESH_CRON"

WARN_FACTOR = 1.5
FAIL_FACTOR = 2.0
_SAMPLE_START = datetime(2024, 1, 1, tzinfo=UTC)  # fixed: the same cron always gives the same windows
_SAMPLE_TICKS = 1000
_SAMPLE_SPAN = timedelta(days=800)  # long enough for monthly and leap-day crons


@dataclass(frozen=True)
class FreshnessWindows:
    """How long the table may go without a publish: `longest_gap` between ticks, then warn, then fail."""

    cron: str
    longest_gap: timedelta
    warn: timedelta
    fail: timedelta


def freshness_windows(cron: str, timezone: str = "UTC") -> FreshnessWindows:
    """Warn/fail windows for a refresh on `cron`: 1.5x and 2x the longest gap between consecutive ticks."""
    if not isinstance(cron, str) or not is_valid_cron_string(cron.strip()):
        raise ValueError(
            f"cron: {cron!r} is not a valid cron expression (five fields, e.g. '0 * * * *' for hourly)"
        )
    cron = cron.strip()
    end = _SAMPLE_START + _SAMPLE_SPAN
    longest = timedelta(0)
    previous: datetime | None = None
    for count, tick in enumerate(cron_string_iterator(_SAMPLE_START.timestamp(), cron, timezone)):
        if previous is not None:
            longest = max(longest, tick - previous)
        previous = tick
        if count >= _SAMPLE_TICKS or tick >= end:
            break
    if longest <= timedelta(0):
        raise ValueError(f"cron: {cron!r} does not tick at least twice in {_SAMPLE_SPAN.days} days")
    return FreshnessWindows(cron, longest, longest * WARN_FACTOR, longest * FAIL_FACTOR)


def refresh_cron_now(environ: Mapping[str, str] | None = None) -> str:
    """The refresh cron in force: WAREHOUSE_REFRESH_CRON if set and not blank, else hourly."""
    environ = os.environ if environ is None else environ
    return (environ.get(REFRESH_CRON_ENV) or "").strip() or DEFAULT_REFRESH_CRON


def freshness_policy_for(cron: str = DEFAULT_REFRESH_CRON) -> dg.FreshnessPolicy:
    """The asset's FreshnessPolicy for a refresh on `cron` (set it when the code location loads)."""
    windows = freshness_windows(cron)
    return dg.FreshnessPolicy.time_window(fail_window=windows.fail, warn_window=windows.warn)
