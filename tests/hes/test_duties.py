"""Deadline accounting and re-read scheduling, hand-computed on a tiny fleet."""

from __future__ import annotations

import datetime as dt

import numpy as np

from kenshin.hes.duties import SlotTracker, coalesce_ranges
from kenshin.hes.policy import Duty

MIN = 60_000_000
STEP = 30 * MIN
T0 = 1_775_000_000 // 1800 * 1800 * 1_000_000  # a slot boundary


def tracker(window: int = 4, memory_us: int = 0) -> SlotTracker:
    deadline = np.array([3600, 3600, 1800], dtype=np.int64)  # two LV meters, one HV
    return SlotTracker(
        Duty.A1,
        3,
        STEP,
        window,
        T0 + STEP,
        deadline,
        np.ones(3, dtype=bool),
        memory_us=memory_us,
    )


def test_on_time_is_judged_per_meter_deadline() -> None:
    t = tracker()
    t.advance(T0 + STEP)  # slot ending T0+30min is open
    end = np.array([T0 + STEP] * 3)
    t.record(np.array([0]), end[:1], T0 + STEP + 50 * MIN)  # LV, 50 min: on time
    t.record(np.array([2]), end[:1], T0 + STEP + 40 * MIN)  # HV, 40 min: late (30 min)
    t.advance(T0 + STEP + 61 * MIN)  # past the longest deadline: judged
    [day] = t.days.values()
    assert (day.expected, day.on_time) == (3, 1)


def test_rereads_follow_the_schedule_then_every_late_interval() -> None:
    t = tracker(window=8)
    t.advance(T0 + STEP)
    delays = (dt.timedelta(minutes=10), dt.timedelta(minutes=20))
    late = dt.timedelta(hours=1)
    asked = []
    for minute in range(0, 200, 5):
        now = T0 + STEP + minute * MIN
        t.advance(now)
        keys, ends = t.due_rereads(now, delays, late)
        asked += [(minute, int(k)) for k, e in zip(keys, ends, strict=True) if e == T0 + STEP]
    minutes_for_meter_1 = [m for m, k in asked if k == 1]
    assert minutes_for_meter_1 == [10, 20, 80, 140]


def test_gaps_beyond_the_window_are_asked_for_until_memory_runs_out() -> None:
    t = tracker(window=2, memory_us=10 * STEP)
    t.advance(T0 + STEP)
    first = T0 + STEP
    t.record(np.array([0, 2]), np.array([first, first]), first + MIN)  # meter 1 missing
    t.advance(first + 3 * STEP)  # the slot leaves the 2-slot window
    assert {g for g in t.old_gaps if g[1] == first} == {(1, first)}
    keys, ends = t.due_old_gaps(first + 3 * STEP, STEP)
    assert (1, first) in set(zip(keys, ends, strict=True))
    assert t.due_old_gaps(first + 3 * STEP + MIN, STEP) == ([], [])  # not again so soon
    t.record(np.array([1]), np.array([first]), first + 4 * STEP)  # the re-read came back
    assert (1, first) not in t.old_gaps
    t.advance(first + 4 * STEP)
    missing_end = first + 3 * STEP  # nobody sent this one
    t.advance(first + 7 * STEP)
    assert (0, missing_end) in t.old_gaps
    t.due_old_gaps(missing_end + 10 * STEP, STEP)  # memory (10 slots) has run out
    assert (0, missing_end) not in t.old_gaps and t.gaps_abandoned >= 3


def test_coalesce_ranges_makes_one_request_per_contiguous_run() -> None:
    keys = np.array([5, 5, 5, 2, 5], dtype=np.int64)
    ends = np.array([T0, T0 + STEP, T0 + 3 * STEP, T0, T0 + 2 * STEP], dtype=np.int64)
    assert coalesce_ranges(keys, ends, STEP) == [(2, T0, T0), (5, T0, T0 + 3 * STEP)]
