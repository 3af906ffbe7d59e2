"""Freshness follows the refresh cron: the pure windows, the asset's default policy, and the check at run time."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from cm_pipeline.extract.asset import chartmogul_customers
from cm_pipeline.extract.checks import customers_freshness, freshness_verdict
from cm_pipeline.extract.freshness import (
    DEFAULT_REFRESH_CRON,
    REFRESH_CRON_ENV,
    freshness_policy_for,
    freshness_windows,
    refresh_cron_now,
)
from cm_pipeline.extract.job import DEFAULT_REFRESH_CRON as SCHEDULES_DEFAULT
from cm_pipeline.extract.job import REFRESH_CRON_ENV as SCHEDULES_ENV
from cm_pipeline.resources import WarehouseResource
from cm_pipeline.warehouse.schema import ensure_schema

H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("cron", "gap"),
    [
        ("0 * * * *", H),  # hourly
        ("0 3 * * *", 24 * H),  # daily
        ("*/15 * * * *", timedelta(minutes=15)),
        ("30 6 * * 1", 7 * 24 * H),  # weekly
        ("0 9 * * 1-5", 72 * H),  # weekdays: judged by the weekend, its longest gap
    ],
)
def test_windows_are_one_and_a_half_and_two_times_the_longest_gap(cron, gap):
    w = freshness_windows(cron)
    assert (w.longest_gap, w.warn, w.fail) == (gap, gap * 1.5, gap * 2)


def test_a_bad_cron_is_named():
    with pytest.raises(ValueError, match=r"cron: 'every hour' is not a valid cron expression"):
        freshness_windows("every hour")


def test_the_defaults_agree_with_the_schedule_and_the_asset_policy_is_the_hourly_one():
    assert (DEFAULT_REFRESH_CRON, REFRESH_CRON_ENV) == (SCHEDULES_DEFAULT, SCHEDULES_ENV)
    policy = chartmogul_customers.specs_by_key[dg.AssetKey("chartmogul_customers")].freshness_policy
    assert policy == freshness_policy_for(DEFAULT_REFRESH_CRON)
    assert (policy.warn_window.to_timedelta(), policy.fail_window.to_timedelta()) == (1.5 * H, 2 * H)
    daily = freshness_policy_for("0 3 * * *")
    assert (daily.warn_window.to_timedelta(), daily.fail_window.to_timedelta()) == (36 * H, 48 * H)


def test_the_cron_in_force_comes_from_the_environment():
    assert refresh_cron_now({}) == DEFAULT_REFRESH_CRON
    assert refresh_cron_now({REFRESH_CRON_ENV: "  "}) == DEFAULT_REFRESH_CRON
    assert refresh_cron_now({REFRESH_CRON_ENV: " 0 3 * * * "}) == "0 3 * * *"


def test_verdicts():
    hourly = freshness_windows("0 * * * *")
    assert freshness_verdict(None, hourly)[:2] == (False, "ERROR")
    assert freshness_verdict(80 * 60, hourly) == (True, "WARN", None)
    passed, severity, why = freshness_verdict(100 * 60, hourly)
    assert (passed, severity) == (False, "WARN") and "0 * * * *" in why
    assert freshness_verdict(3 * 3600, hourly)[:2] == (False, "ERROR")


def evaluate(db_url: str) -> dg.AssetCheckResult:
    return customers_freshness(warehouse=WarehouseResource(url=db_url))


def test_the_check_reads_the_cron_when_it_runs(fresh_db, monkeypatch):
    engine = sa.create_engine(fresh_db)
    try:
        ensure_schema(engine)
        with engine.begin() as conn:  # a publish three hours ago
            conn.execute(
                sa.text(
                    "INSERT INTO cm_pipeline.publish_log (pass_id, published_at, row_count, live_count, seen,"
                    " inserted, updated, unchanged, deleted, undeleted, filters)"
                    " VALUES (1, now() - interval '3 hours', 0, 0, 0, 0, 0, 0, 0, 0, '{}')"
                )
            )
    finally:
        engine.dispose()
    monkeypatch.delenv(REFRESH_CRON_ENV, raising=False)
    hourly = evaluate(fresh_db)
    assert (hourly.passed, hourly.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert hourly.metadata["limit_seconds"].value == 7200
    monkeypatch.setenv(REFRESH_CRON_ENV, "0 3 * * *")
    daily = evaluate(fresh_db)
    assert daily.passed and daily.metadata["refresh_cron"].value == "0 3 * * *"
    monkeypatch.setenv(REFRESH_CRON_ENV, "0 */2 * * *")  # warn after 3 h, fail after 4 h
    every_two = evaluate(fresh_db)
    assert (every_two.passed, every_two.severity) == (False, dg.AssetCheckSeverity.WARN)
    monkeypatch.setenv(REFRESH_CRON_ENV, "whenever")
    bad = evaluate(fresh_db)
    assert not bad.passed and REFRESH_CRON_ENV in bad.description
