"""History day planes (kenshin.mdms.history): the statistics folded from planes equal those of
the raw history, and a cache kept between sweeps gives what reading the store afresh gives, also
after late data and manual edits land on days it holds."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kenshin.core.batches import readings_table
from kenshin.core.channels import Channel
from kenshin.core.quality import Quality, Source
from kenshin.core.schema import REGISTER_READS_SCHEMA
from kenshin.core.timeslots import Resolution
from kenshin.mdms.estimate import history_stats
from kenshin.mdms.history import DayPlane, HistoryCache, fold
from kenshin.mdms.sweep import day_window, run_sweep

FIRST = dt.date(2026, 5, 4)  # a Monday
US30 = Resolution.MIN30.microseconds
F, R30 = Channel.ACTIVE_FORWARD, Resolution.MIN30


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_folding_planes_equals_the_raw_history_statistics(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 4))
    d = data.draw(st.integers(1, 9))
    s = data.draw(st.integers(1, 6))
    history = data.draw(hnp.arrays(np.int64, (n, d, s), elements=st.integers(0, 40_000)))
    usable = data.draw(hnp.arrays(np.bool_, (n, d)))
    classes = data.draw(hnp.arrays(np.int8, d, elements=st.integers(0, 2)))
    target = data.draw(st.integers(0, 2))
    like = data.draw(st.integers(1, 4))
    # days with no rows at all (before the fleet began): empty planes, no meter usable
    empty = data.draw(hnp.arrays(np.bool_, d))
    usable[:, empty] = False
    keys = np.arange(n, dtype=np.int64)
    planes = []
    for day in range(d):
        if empty[day]:
            planes.append(DayPlane.empty(keys, s, built_us=0))
            continue
        quality = np.full((n, s), Quality.VALID, np.int16)
        quality[~usable[:, day], 0] = Quality.ESTIMATED  # one estimate spoils the day
        planes.append(
            DayPlane.of(keys, history[:, day], np.ones((n, s), bool), quality, built_us=0)
        )
    folded = fold(planes, classes, target, like)
    oracle = history_stats(history, usable, classes, target, like_days=like, lookback_days=d)
    np.testing.assert_array_equal(folded.recent_max, oracle.recent_max)
    np.testing.assert_array_equal(folded.day_max, oracle.day_max)
    np.testing.assert_array_equal(folded.like_days_used, oracle.like_days_used)
    np.testing.assert_allclose(folded.like_day, oracle.like_day)


def test_a_plane_keeps_values_in_the_smallest_type_and_marks_unusable_days() -> None:
    keys = np.arange(3, dtype=np.int64)
    values = np.array([[10, 20], [30, 40], [50_000, 1]])
    quality = np.array([[1, 4], [1, 2], [1, 1]], np.int16)  # valid+edited, estimated, valid
    present = np.array([[True, True], [True, True], [True, False]])
    plane = DayPlane.of(keys, values, present, quality, built_us=5)
    assert plane.usable.tolist() == [True, False, False]
    assert plane.totals.tolist() == [30, -1, -1]
    assert plane.values.tolist() == [[10, 20], [-1, -1], [-1, -1]]
    assert plane.values.dtype == np.int16  # 50,000 was on an unusable day
    big = DayPlane.of(keys[:1], np.array([[70_000, 1]]), present[:1], quality[:1], built_us=5)
    assert big.values.dtype == np.int32 and big.values[0, 0] == 70_000


def _rows(
    meters: list[int], day: dt.date, slots: list[int], values: list[int], tx_us: int, **kw: int
) -> pa.Table:
    start, _ = day_window(day)
    return readings_table(
        np.array(meters),
        int(F),
        int(R30),
        start + np.array(slots) * US30,
        np.array(values),
        None,
        kw.get("quality", int(Quality.VALID)),
        kw.get("source", int(Source.METER_PUSH)),
        0,
        0,
        tx_us,
    )


def _push_day(store, day: dt.date, n: int, skip: tuple[int, int] | None = None) -> None:
    """Every meter's 48 values of ``day``, as delivered 10 minutes after it ends."""
    _, end = day_window(day)
    meters, slots, values = [], [], []
    for m in range(n):
        for slot in range(1, 49):
            if (m, slot) == skip:
                continue
            meters.append(m)
            slots.append(slot)
            values.append(100 + 10 * m + (slot % 7) + day.day)
    empty = REGISTER_READS_SCHEMA.empty_table()
    store.append(_rows(meters, day, slots, values, end + 600_000_000), empty)


def _sweep(store, day: dt.date, cache: HistoryCache | None, keys: np.ndarray) -> int:
    now = day_window(day)[1] + 7_200_000_000
    run_sweep(store, day, now_us=now, history_days=7, meters=keys, history=cache)
    return now


def _assert_same_stats(a, b) -> None:
    np.testing.assert_array_equal(a.recent_max, b.recent_max)
    np.testing.assert_array_equal(a.day_max, b.day_max)
    np.testing.assert_array_equal(a.like_days_used, b.like_days_used)
    np.testing.assert_allclose(a.like_day, b.like_day)


def test_a_kept_cache_equals_reading_the_store_after_late_data_and_edits(store) -> None:
    n = 3
    keys = np.arange(n, dtype=np.int64)
    days = [FIRST + dt.timedelta(days=i) for i in range(12)]
    cache = HistoryCache()
    for i, day in enumerate(days[:10]):
        _push_day(store, day, n, skip=(1, 20) if i == 3 else None)
        now = _sweep(store, day, cache, keys)
    first_reads = 7  # the first sweep read its whole look-back; later sweeps read nothing
    assert cache.planes_read == first_reads
    # the day swept last left its plane, equal to one read from the store
    fresh = HistoryCache()
    fresh._read(store, keys, F, R30, [days[9]], now)
    kept = cache._planes[(int(F), int(R30), days[9])]
    read = fresh._planes[(int(F), int(R30), days[9])]
    np.testing.assert_array_equal(kept.values, read.values)
    np.testing.assert_array_equal(kept.usable, read.usable)
    np.testing.assert_array_equal(kept.totals, read.totals)

    # a late re-read on day 5 and a manual edit on day 6 land after those days were swept
    empty = REGISTER_READS_SCHEMA.empty_table()
    store.append(_rows([2], days[5], [10], [999], now + 1, source=int(Source.REREAD)), empty)
    edit = _rows([0], days[6], [3], [1], now + 2, quality=int(Quality.EDITED))
    store.append(edit, empty)
    _push_day(store, days[10], n)
    later = day_window(days[10])[1] + 7_200_000_000
    warm = cache.stats(store, keys, days[10], F, R30, lookback_days=7, like_count=4, now_us=later)
    assert cache.planes_read == first_reads + 2  # exactly the two days written to
    cold = HistoryCache().stats(
        store, keys, days[10], F, R30, lookback_days=7, like_count=4, now_us=later
    )
    _assert_same_stats(warm, cold)
    assert warm.recent_max[2, 9] == 999  # the re-read value counts
    assert warm.day_max[1] == cold.day_max[1] >= 0
    # day 3 (meter 1 lost a value and got an estimate) is no longer in the look-back; the
    # look-back moved on by a day, so the oldest plane was dropped
    assert days[2] not in cache.days(F, R30)


def test_written_days_names_the_days_with_newer_rows(store) -> None:
    empty = REGISTER_READS_SCHEMA.empty_table()
    a, b = FIRST, FIRST + dt.timedelta(days=1)
    start, _ = day_window(a)
    _, end = day_window(b)
    store.append(_rows([0, 1], a, [1, 48], [5, 6], 1_000), empty)
    store.append(_rows([0], b, [2], [5], 1_000), empty)
    store.append(_rows([1], b, [48], [7], 2_000), empty)  # ends at b's last instant
    assert store.written_days(F, R30, start, end, 0) == {0: 1_000, 1: 2_000}
    assert store.written_days(F, R30, start, end, 1_000) == {1: 2_000}
    assert store.written_days(F, R30, start, end, 2_000) == {}
    assert store.written_days(Channel.ACTIVE_REVERSE, R30, start, end, 0) == {}
    assert store.written_days(F, R30, start + 86_400_000_000, end, 0) == {0: 2_000}
