import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.core.timeslots import (
    JST,
    Resolution,
    day_slot_ends,
    from_epoch_us,
    is_aligned,
    slot_end,
    slot_ends,
    slot_numbers,
    slot_of,
    to_epoch_us,
)


def jst(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=JST)


def test_slot_one_is_the_first_half_hour():
    assert slot_of(jst(2026, 4, 1, 0, 30), Resolution.MIN30) == (dt.date(2026, 4, 1), 1)
    assert slot_end(dt.date(2026, 4, 1), 1, Resolution.MIN30) == jst(2026, 4, 1, 0, 30)


def test_midnight_belongs_to_the_last_slot_of_the_previous_day():
    assert slot_of(jst(2026, 4, 2), Resolution.MIN30) == (dt.date(2026, 4, 1), 48)
    assert slot_of(jst(2026, 4, 2), Resolution.MIN15) == (dt.date(2026, 4, 1), 96)
    assert slot_of(jst(2026, 4, 2), Resolution.MIN5) == (dt.date(2026, 4, 1), 288)
    assert slot_of(jst(2026, 4, 2), Resolution.MIN1) == (dt.date(2026, 4, 1), 1440)
    assert slot_end(dt.date(2026, 4, 1), 48, Resolution.MIN30) == jst(2026, 4, 2)


def test_instant_inside_a_slot_belongs_to_it():
    assert slot_of(jst(2026, 4, 2, 0, 0, 0, 1), Resolution.MIN30) == (dt.date(2026, 4, 2), 1)
    assert slot_of(jst(2026, 4, 1, 23, 59, 59), Resolution.MIN30) == (dt.date(2026, 4, 1), 48)


def test_year_boundary_and_other_time_zones():
    # 15:00 UTC on Dec 31 is 00:00 JST on Jan 1: the last slot of Dec 31 in JST
    utc = dt.datetime(2025, 12, 31, 15, 0, tzinfo=dt.UTC)
    assert slot_of(utc, Resolution.MIN30) == (dt.date(2025, 12, 31), 48)
    assert slot_of(utc + dt.timedelta(minutes=5), Resolution.MIN5) == (dt.date(2026, 1, 1), 1)


def test_day_has_the_right_number_of_slots():
    for res in Resolution:
        ends = day_slot_ends(dt.date(2026, 3, 1), res)
        assert len(ends) == res.slots_per_day
        days, slots = slot_numbers(ends, res)
        assert set(days.tolist()) == {dt.date(2026, 3, 1).toordinal()}
        assert slots.tolist() == list(range(1, res.slots_per_day + 1))


def test_slot_ends_are_exclusive_of_start_inclusive_of_end():
    ends = slot_ends(jst(2026, 4, 1), jst(2026, 4, 1, 2), Resolution.MIN30)
    assert [from_epoch_us(int(e)) for e in ends] == [
        jst(2026, 4, 1, h, m) for h, m in ((0, 30), (1, 0), (1, 30), (2, 0))
    ]


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="no time zone"):
        to_epoch_us(dt.datetime(2026, 4, 1))


def test_bad_slot_numbers_are_refused():
    with pytest.raises(ValueError, match="1–48"):
        slot_end(dt.date(2026, 4, 1), 49, Resolution.MIN30)
    with pytest.raises(ValueError, match="1–48"):
        slot_end(dt.date(2026, 4, 1), 0, Resolution.MIN30)


def test_resolution_parse():
    assert Resolution.parse("30") is Resolution.MIN30
    assert Resolution.parse("5min") is Resolution.MIN5
    assert Resolution.parse(15) is Resolution.MIN15
    with pytest.raises(ValueError, match="resolution must be one of"):
        Resolution.parse("10")


def test_alignment():
    assert is_aligned(jst(2026, 4, 1, 0, 30), Resolution.MIN30)
    assert not is_aligned(jst(2026, 4, 1, 0, 35), Resolution.MIN30)
    assert is_aligned(jst(2026, 4, 1, 0, 35), Resolution.MIN5)


@given(st.integers(min_value=0, max_value=2**32), st.sampled_from(list(Resolution)))
def test_vectorized_matches_scalar(seconds, res):
    ts = dt.datetime(2000, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    days, slots = slot_numbers(np.array([to_epoch_us(ts)]), res)
    day, slot = slot_of(ts, res)
    assert (int(days[0]), int(slots[0])) == (day.toordinal(), slot)
    # the slot's end is at or after the instant and less than one slot later
    end = slot_end(day, slot, res)
    assert dt.timedelta(0) <= end - ts < dt.timedelta(minutes=int(res))
