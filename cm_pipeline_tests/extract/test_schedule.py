"""The scheduler: which partition's page goes next, how many are in flight, and when each may start."""

from __future__ import annotations

import threading

from cm_pipeline.extract.plan import parse_partition
from cm_pipeline.extract.schedule import Part, Scheduler, in_flight_cap, remaining


def part(name: str, order: int, **fields) -> Part:
    return Part(parse_partition(name), order, **fields)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_partition_expected_to_last_longest_goes_first():
    parts = [part("New_Lead", 0, expected=300), part("Active@ds_a", 1, expected=5000), part("Past_Due", 2)]
    sched = Scheduler(parts, max_workers=10, per_page=200, sized=True, rate=None)
    assert [sched.take().name for _ in range(3)] == ["Active@ds_a", "New_Lead", "Past_Due"]


def test_an_unsplit_plan_keeps_its_order():
    parts = [part("New_Lead", 0, expected=300), part("Active", 1, expected=5000)]
    sched = Scheduler(parts, max_workers=10, per_page=200, sized=False, rate=None)
    assert [sched.take().name for _ in range(2)] == ["New_Lead", "Active"]


def test_a_first_loads_estimates_follow_the_sample_and_what_the_status_has_shown():
    big, small = part("Cancelled@ds_a", 5, share=0.7), part("Cancelled@ds_b", 4, share=0.1)
    assert remaining(big, 0, 200) > remaining(small, 0, 200)
    assert remaining(big, 5000, 200) > remaining(big, 0, 200)  # the status proved larger
    done_so_far = part("Active@ds_a", 0, expected=1000, customers=1000)
    assert remaining(done_so_far, 0, 200) == 50  # past its estimate: a quarter page, still ahead of nothing


def test_in_flight_stays_below_what_the_rate_starts_in_one_latency():
    assert in_flight_cap(10, None, None) == 10  # nothing known: every worker
    assert in_flight_cap(10, 35, 0.27) == 7  # 35/s x 0.27 s x 80%
    assert in_flight_cap(10, 100_000, 0.005) == 10
    assert in_flight_cap(10, 1, 0.1) == 1
    sched = Scheduler(
        [part(f"Active@ds_{i}", i) for i in range(5)], max_workers=4, per_page=200, sized=True, rate=10
    )
    first = sched.take()
    sched.returned(first, 200, True, 0.25)  # one latency seen: 10/s x 0.25 s x 80% = 2 in flight
    taken = [sched.take(), sched.take()]
    blocked = threading.Thread(target=sched.take, daemon=True)
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()  # a third waits for one of the two to come back
    sched.returned(taken[0], 10, False, 0.25)
    blocked.join(2)
    assert not blocked.is_alive()


def test_starts_are_spaced_by_the_limiters_interval_and_the_best_partition_gets_each():
    clock = FakeClock()
    parts = [part("Active@ds_a", 0, expected=100), part("Active@ds_b", 1, expected=9000)]
    sched = Scheduler(parts, max_workers=10, per_page=200, sized=True, rate=None, interval=0.5, clock=clock)
    assert sched.take().name == "Active@ds_b"
    got = []
    waiter = threading.Thread(target=lambda: got.append(sched.take()), daemon=True)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not got  # the next start is 0.5 s (x 1.02) away
    clock.now += 0.52
    with sched.cond:
        sched.cond.notify_all()
    waiter.join(2)
    assert [p.name for p in got] == ["Active@ds_a"]


def test_a_held_status_keeps_the_walk_open_until_its_split_is_decided():
    sample = part("Active", 0, sample=True)
    sched = Scheduler([sample], max_workers=2, per_page=200, sized=True, rate=None)
    assert sched.take() is sample
    sched.returned(sample, 200, True, 0.1)
    assert sample.held and not sample.done
    ended = []
    waiter = threading.Thread(target=lambda: ended.append(sched.take()), daemon=True)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # not done: its decision is pending
    sched.add([part("Active@ds_a", 1, share=1.0)])
    sched.release(sample, done=True)
    waiter.join(2)
    assert [p.name for p in ended] == ["Active@ds_a"]
    sched.returned(ended[0], 3, False, 0.1)
    assert sched.take() is None  # everything done, nothing held, nothing in flight
