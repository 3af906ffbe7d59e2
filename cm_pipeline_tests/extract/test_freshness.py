"""Freshness follows the refresh cron: the windows of the asset's FreshnessPolicy for each kind of cron."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from cm_pipeline.extract.asset import chartmogul_customers
from cm_pipeline.extract.freshness import (
    DEFAULT_REFRESH_CRON,
    REFRESH_CRON_ENV,
    freshness_policy_for,
    longest_gap,
    refresh_cron_now,
)
from cm_pipeline.extract.job import DEFAULT_REFRESH_CRON as SCHEDULES_DEFAULT
from cm_pipeline.extract.job import REFRESH_CRON_ENV as SCHEDULES_ENV

H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("cron", "gap"),
    [
        ("0 * * * *", H),  # hourly
        ("0 3 * * *", 24 * H),  # daily
        ("*/15 * * * *", timedelta(minutes=15)),
        ("30 6 * * 1", 7 * 24 * H),  # weekly
        ("0 9 * * 1-5", 72 * H),  # weekdays: judged by the weekend, its longest gap
        ("0 0 1 * *", 31 * 24 * H),  # monthly: the longest month
    ],
)
def test_windows_are_two_and_three_times_the_longest_gap(cron, gap):
    assert longest_gap(cron) == gap
    policy = freshness_policy_for(cron)
    assert (policy.warn_window.to_timedelta(), policy.fail_window.to_timedelta()) == (gap * 2, gap * 3)


def test_a_bad_cron_is_named():
    with pytest.raises(ValueError, match=r"cron: 'every hour' is not a valid cron expression"):
        longest_gap("every hour")


def test_the_defaults_agree_with_the_schedule_and_the_asset_policy_is_the_hourly_one():
    assert (DEFAULT_REFRESH_CRON, REFRESH_CRON_ENV) == (SCHEDULES_DEFAULT, SCHEDULES_ENV)
    policy = chartmogul_customers.specs_by_key[dg.AssetKey("chartmogul_customers")].freshness_policy
    assert policy == freshness_policy_for(DEFAULT_REFRESH_CRON)
    assert (policy.warn_window.to_timedelta(), policy.fail_window.to_timedelta()) == (2 * H, 3 * H)


def test_the_cron_in_force_comes_from_the_environment():
    assert refresh_cron_now({}) == DEFAULT_REFRESH_CRON
    assert refresh_cron_now({REFRESH_CRON_ENV: "  "}) == DEFAULT_REFRESH_CRON
    assert refresh_cron_now({REFRESH_CRON_ENV: " 0 3 * * * "}) == "0 3 * * *"
