"""Freshness of chartmogul.customers, in Dagster's own terms: a FreshnessPolicy on the asset, which the
daemon evaluates (its freshness state shows on the asset's page, and its changes are events to alert on).

It follows the refresh cron (WAREHOUSE_REFRESH_CRON, hourly by default): warn once the data is 2 x the
longest gap between two ticks old (a tick was missed and the next one has not landed), fail at 3 x (two
missed). Whole multiples, because the UI's freshness panel rounds a window to its largest unit (1.5 hours
shows as "2 hours"): for hourly, daily and weekly crons the panel shows the windows exactly. A cron of
uneven gaps (weekdays only, say) is judged by its longest one. Dagster's older last-update freshness checks are
superseded by these policies (and warn so), so there is no separate check.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import dagster as dg
from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string

DEFAULT_REFRESH_CRON = "0 * * * *"
REFRESH_CRON_ENV = "WAREHOUSE_REFRESH_CRON"
WARN_FACTOR, FAIL_FACTOR = 2, 3


def refresh_cron_now(environ: Mapping[str, str] | None = None) -> str:
    """The refresh cron in force: WAREHOUSE_REFRESH_CRON if set and not blank, else hourly."""
    environ = os.environ if environ is None else environ
    return (environ.get(REFRESH_CRON_ENV) or "").strip() or DEFAULT_REFRESH_CRON


def longest_gap(cron: str) -> timedelta:
    """The longest time between two consecutive ticks of `cron` (UTC).

    Hand-written because Dagster's freshness policies and checks take a time window, not a cron: the
    ticks of the 400 days after a fixed date (at most 1,000) cover weekly, monthly and leap-day crons.
    """
    if not isinstance(cron, str) or not is_valid_cron_string(cron.strip()):
        raise ValueError(
            f"cron: {cron!r} is not a valid cron expression (five fields, e.g. '0 * * * *' for hourly)"
        )
    start = datetime(2024, 1, 1, tzinfo=UTC)
    ticks = []
    for tick in cron_string_iterator(start.timestamp(), cron.strip(), "UTC"):
        ticks.append(tick)
        if len(ticks) > 1000 or tick - start > timedelta(days=400):
            break
    gaps = [later - earlier for earlier, later in pairwise(ticks)]
    if not gaps:
        raise ValueError(f"cron: {cron!r} does not tick twice in 400 days")
    return max(gaps)


def freshness_policy_for(cron: str = DEFAULT_REFRESH_CRON) -> dg.FreshnessPolicy:
    """The asset's policy for a refresh on `cron`: warn after 2 x, fail after 3 x its longest gap."""
    gap = longest_gap(cron)
    return dg.FreshnessPolicy.time_window(fail_window=gap * FAIL_FACTOR, warn_window=gap * WARN_FACTOR)
