"""Anti-replay sliding window (RFC 4303 style, window 64)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.aroute.replay import (
    WINDOW,
    MemoryReplayGuard,
    admit_batch,
    window_admit,
)
from kenshin.errors import InvalidSetting, UnknownMeter


def one(last: int, bitmap: int, counter: int) -> tuple[bool, int, int]:
    ok, new_last, new_bitmap = window_admit(
        np.array([last], dtype=np.int64),
        np.array([bitmap], dtype=np.uint64),
        np.array([counter], dtype=np.int64),
    )
    return bool(ok[0]), int(new_last[0]), int(new_bitmap[0])


def test_first_frame_of_a_meter_is_admitted() -> None:
    assert one(-1, 0, 0) == (True, 0, 1)
    assert one(-1, 0, 12345) == (True, 12345, 1)


@pytest.mark.parametrize(
    ("step", "bitmap"),
    [(1, 0b11), (2, 0b101), (63, 1 | 1 << 63), (64, 1), (1000, 1)],
)
def test_window_slides_up(step: int, bitmap: int) -> None:
    assert one(10, 1, 10 + step) == (True, 10 + step, bitmap)


def test_counter_equal_to_last_is_refused_even_without_its_bit() -> None:
    assert one(10, 1, 10)[0] is False
    assert one(10, 0, 10)[0] is False  # a store that lost bit 0 still refuses `last`


def test_out_of_order_within_the_window_is_admitted_once() -> None:
    ok, last, bitmap = one(100, 1, 95)
    assert (ok, last, bitmap) == (True, 100, 1 | 1 << 5)
    assert one(last, bitmap, 95) == (False, 100, bitmap)


def test_edges_of_the_window() -> None:
    assert one(100, 1, 100 - (WINDOW - 1))[0] is True  # oldest counter in the window
    assert one(100, 1, 100 - WINDOW)[0] is False  # just below it
    assert one(100, 1, 0)[0] is False
    assert one(100, 1, -1)[0] is False


def test_window_admit_does_not_modify_its_inputs() -> None:
    last = np.array([5, -1], dtype=np.int64)
    bitmap = np.array([1, 0], dtype=np.uint64)
    counters = np.array([6, 0], dtype=np.int64)
    ok, new_last, new_bitmap = window_admit(last, bitmap, counters)
    assert ok.tolist() == [True, True]
    assert new_last.tolist() == [6, 0]
    assert new_bitmap.tolist() == [3, 1]
    assert last.tolist() == [5, -1]
    assert bitmap.tolist() == [1, 0]


def test_duplicates_in_one_batch_are_admitted_once() -> None:
    guard = MemoryReplayGuard(3)
    ok = guard.admit(np.array([1, 1, 2, 1], dtype=np.int32), np.array([5, 5, 5, 5]))
    assert ok.tolist() == [True, False, True, False]


def test_several_frames_of_one_meter_are_judged_in_arrival_order() -> None:
    guard = MemoryReplayGuard(2)
    ok = guard.admit(np.zeros(5, dtype=np.int32), np.array([3, 1, 2, 1, 200]))
    assert ok.tolist() == [True, True, True, False, True]
    # 3 is now below the window of 200
    assert guard.admit(np.zeros(1, dtype=np.int32), np.array([3])).tolist() == [False]
    assert guard.admit(np.zeros(1, dtype=np.int32), np.array([199])).tolist() == [True]


def test_guard_state_round_trips() -> None:
    guard = MemoryReplayGuard(4)
    guard.admit(np.array([0, 1, 3], dtype=np.int32), np.array([7, 9, 2]))
    last, bitmap = guard.state()
    assert last.tolist() == [7, 9, -1, 2]
    restored = MemoryReplayGuard(0)
    restored.load(last, bitmap.view(np.int64))  # a store without uint64 keeps the int64 view
    assert len(restored) == 4
    keys = np.array([0, 1, 2, 3], dtype=np.int32)
    assert restored.admit(keys, np.array([7, 8, 0, 2])).tolist() == [False, True, True, False]
    with pytest.raises(InvalidSetting):
        restored.load(np.zeros(2), np.zeros(3, dtype=np.uint64))


def test_guard_refuses_meter_keys_it_does_not_hold() -> None:
    guard = MemoryReplayGuard(2)
    with pytest.raises(UnknownMeter):
        guard.admit(np.array([2], dtype=np.int32), np.array([1]))
    with pytest.raises(UnknownMeter):
        guard.admit(np.array([-1], dtype=np.int32), np.array([1]))


def reference(frames: list[tuple[int, int]]) -> list[bool]:
    """The rule restated with sets: admit iff unseen and not older than the window."""
    return reference_with_late(frames)[0]


def reference_with_late(frames: list[tuple[int, int]]) -> tuple[list[bool], list[bool]]:
    """… and which frames were refused for their age alone (older than the window)."""
    seen: dict[int, set[int]] = {}
    out, late = [], []
    for meter, counter in frames:
        mine = seen.setdefault(meter, set())
        highest = max(mine, default=-1)
        too_old = counter <= highest - WINDOW
        ok = counter not in mine and not too_old
        if ok:
            mine.add(counter)
        out.append(ok)
        late.append(too_old)
    return out, late


frames_strategy = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 300)),
    max_size=120,
)


@settings(max_examples=300)
@given(frames=frames_strategy, cuts=st.lists(st.integers(0, 120), max_size=4))
def test_batches_agree_with_the_set_model(frames: list[tuple[int, int]], cuts: list[int]) -> None:
    """However the frames are cut into batches, the outcome is the frame-by-frame rule."""
    guard = MemoryReplayGuard(5)
    got: list[bool] = []
    got_late: list[bool] = []
    bounds = sorted({0, len(frames), *(c for c in cuts if c < len(frames))})
    for lo, hi in itertools.pairwise(bounds):
        chunk = frames[lo:hi]
        keys = np.array([m for m, _ in chunk], dtype=np.int32)
        counters = np.array([c for _, c in chunk], dtype=np.int64)
        late = np.ones(len(chunk), dtype=bool)  # overwritten: every frame gets an answer
        got.extend(guard.admit(keys, counters, late=late).tolist())
        got_late.extend(late.tolist())
    assert (got, got_late) == reference_with_late(frames)


@given(
    counters=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=60),
    meters=st.integers(1, 40),
)
def test_large_rounds_match_the_model(counters: list[int], meters: int) -> None:
    """Many meters with several frames each (exercises the vectorized rounds)."""
    frames = [(i % meters, c) for i, c in enumerate(counters * 3)]
    last = np.full(meters, -1, dtype=np.int64)
    bitmap = np.zeros(meters, dtype=np.uint64)
    late = np.zeros(len(frames), dtype=bool)
    ok = admit_batch(
        last, bitmap, np.array([m for m, _ in frames]), np.array([c for _, c in frames]), late
    )
    assert (ok.tolist(), late.tolist()) == reference_with_late(frames)
