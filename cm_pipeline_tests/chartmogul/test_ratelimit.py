"""The shared limiter with no network: even spacing, in-flight cap, pause, thread safety."""

from __future__ import annotations

import threading
import time

import pytest

from cm_pipeline.chartmogul.ratelimit import RateLimiter


class FakeTime:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def max_in_any_window(starts: list[float], width: float = 1.0) -> int:
    starts = sorted(starts)
    best, j = 0, 0
    for i, t in enumerate(starts):
        while starts[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_starts_are_evenly_spaced_never_a_burst():
    ft = FakeTime()
    lim = RateLimiter(10, 5, margin_seconds=0.05, clock=ft.clock, sleep=ft.sleep)
    starts = []
    for _ in range(25):
        with lim.slot():
            starts.append(ft.now)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(g == pytest.approx(0.105) for g in gaps)
    # a closed 1-second window never holds more than the cap
    assert max_in_any_window(starts, 1.0 + 1e-9) == 10


def test_idle_time_is_not_banked_into_a_burst():
    ft = FakeTime()
    lim = RateLimiter(10, 5, clock=ft.clock, sleep=ft.sleep)
    with lim.slot():
        pass
    ft.now += 60  # long idle
    starts = []
    for _ in range(5):
        with lim.slot():
            starts.append(ft.now)
    assert starts[1] - starts[0] == pytest.approx(lim.interval)


def test_pause_holds_the_next_start():
    ft = FakeTime()
    lim = RateLimiter(100, 5, clock=ft.clock, sleep=ft.sleep)
    lim.pause(2.5)
    t0 = ft.now
    with lim.slot():
        assert ft.now - t0 == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_requests_per_second": 0}, "max_requests_per_second"),
        ({"max_connections": 0}, "max_connections"),
    ],
)
def test_bad_limits_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RateLimiter(**{"max_requests_per_second": 10, "max_connections": 2, **kwargs})


def test_threads_share_one_limiter_real_clock():
    lim = RateLimiter(40, 3)
    starts: list[float] = []
    lock = threading.Lock()
    current = 0
    peak = 0

    def work():
        nonlocal current, peak
        for _ in range(5):
            with lim.slot():
                with lock:
                    starts.append(time.monotonic())
                    current += 1
                    peak = max(peak, current)
                time.sleep(0.03)
                with lock:
                    current -= 1

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(starts) == 50
    assert peak <= 3 and lim.stats["peak_in_flight"] == peak
    assert max_in_any_window(starts) <= 40
    starts.sort()
    assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= lim.interval * 0.9
    assert lim.stats["acquired"] == 50 and lim.stats["in_flight"] == 0
