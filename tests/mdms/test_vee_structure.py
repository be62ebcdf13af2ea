"""VEE structure step (densify), day classes, settings and history statistics."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from kenshin.core.quality import Rule
from kenshin.core.timeslots import Resolution, jst_midnight, to_epoch_us
from kenshin.errors import InvalidSetting
from kenshin.mdms.daytypes import DayClass
from kenshin.mdms.vee import (
    VeeConfig,
    day_class,
    densify,
    densify_registers,
    history_stats,
)

DAY = dt.date(2026, 11, 4)
START = to_epoch_us(jst_midnight(DAY))
STEP = Resolution.MIN30.microseconds


def rows(*items: tuple[int, int, int, int]) -> tuple[np.ndarray, ...]:
    """(meter, slot end offset [µs], value, tx) rows → column arrays."""
    meter, end, value, tx = (np.array(col, dtype=np.int64) for col in zip(*items, strict=True))
    return meter, START + end, value, tx


def test_densify_places_rows_in_the_slot_ending_at_their_interval_end() -> None:
    d = densify(
        *rows((0, STEP, 7, 1), (1, 48 * STEP, 9, 1), (1, 2 * STEP, 3, 1)),
        window_start_us=START,
        resolution=Resolution.MIN30,
        n_meters=2,
    )
    assert d.values.shape == (2, 48)
    assert (d.values[0, 0], d.values[1, 47], d.values[1, 1]) == (7, 9, 3)
    assert d.present.sum() == 3
    assert (d.expected, d.received, d.rows) == (96, 3, 3)
    assert not d.flags.any()


def test_misaligned_and_out_of_window_rows_are_dropped_and_counted() -> None:
    d = densify(
        *rows(
            (0, STEP + 60_000_000, 7, 1),  # 00:31: off the grid, falls in slot 1
            (0, 0, 5, 1),  # 00:00 is yesterday's last slot
            (0, 49 * STEP, 5, 1),  # tomorrow
            (5, STEP, 5, 1),  # no such meter
        ),
        window_start_us=START,
        resolution=Resolution.MIN30,
        n_meters=1,
    )
    assert (d.misaligned, d.out_of_window, d.received) == (1, 3, 0)
    assert d.flags[0, 1] == Rule.STRUCTURE_ALIGNMENT


def test_duplicates_equal_are_kept_once_conflicts_take_the_latest() -> None:
    d = densify(
        *rows(
            (0, STEP, 7, 5),
            (0, STEP, 7, 9),  # equal duplicate
            (0, 2 * STEP, 8, 9),  # latest tx: wins though it came first
            (0, 2 * STEP, 6, 2),
            (0, 3 * STEP, 1, 4),  # same tx: the later row wins
            (0, 3 * STEP, 2, 4),
        ),
        window_start_us=START,
        resolution=Resolution.MIN30,
        n_meters=1,
    )
    assert d.values[0, :3].tolist() == [7, 8, 2]
    assert d.flags[0, :3].tolist() == [
        Rule.DUPLICATE_EQUAL,
        Rule.DUPLICATE_CONFLICT,
        Rule.DUPLICATE_CONFLICT,
    ]
    assert (d.duplicate_equal, d.duplicate_conflict, d.received) == (1, 2, 3)


def test_register_reads_sit_on_boundaries_including_the_window_start() -> None:
    d = densify_registers(
        *rows((0, 0, 100, 1), (0, 48 * STEP, 900, 1), (0, STEP, 110, 1)),
        window_start_us=START,
        resolution=Resolution.MIN30,
        n_meters=1,
    )
    assert d.values.shape == (1, 49)
    assert (d.values[0, 0], d.values[0, 1], d.values[0, 48]) == (100, 110, 900)


def test_five_minute_window() -> None:
    step = Resolution.MIN5.microseconds
    d = densify(
        np.array([0]),
        np.array([START + 288 * step]),
        np.array([4]),
        np.array([0]),
        window_start_us=START,
        resolution=Resolution.MIN5,
        n_meters=1,
    )
    assert d.values.shape == (1, 288)
    assert d.values[0, 287] == 4


def test_day_classes_count_japanese_holidays_as_sundays() -> None:
    dates = [
        dt.date(2026, 11, 3),  # Tuesday, 文化の日 (Culture Day)
        dt.date(2026, 11, 4),  # Wednesday
        dt.date(2026, 11, 7),  # Saturday
        dt.date(2026, 11, 8),  # Sunday
        dt.date(2026, 11, 23),  # Monday, 勤労感謝の日
        dt.date(2027, 1, 1),  # Friday, 元日
    ]
    assert day_class(dates).tolist() == [
        DayClass.SUNDAY_HOLIDAY,
        DayClass.WEEKDAY,
        DayClass.SATURDAY,
        DayClass.SUNDAY_HOLIDAY,
        DayClass.SUNDAY_HOLIDAY,
        DayClass.SUNDAY_HOLIDAY,
    ]
    as_numpy = np.array(["2026-11-03", "2026-11-05"], dtype="datetime64[D]")
    assert day_class(as_numpy).tolist() == [DayClass.SUNDAY_HOLIDAY, DayClass.WEEKDAY]
    assert day_class([]).shape == (0,)


def test_config_from_mapping() -> None:
    cfg = VeeConfig.from_mapping({"like-days": 3, "spike_factor": 4, "forward_only": False})
    assert (cfg.like_days, cfg.spike_factor, cfg.forward_only) == (3, 4.0, False)
    assert VeeConfig.from_mapping({}) == VeeConfig()
    assert cfg.slots(120, Resolution.MIN15) == 8


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"spike_facter": 4}, "unknown setting 'spike_facter'; known: "),
        ({"like_days": "4"}, "must be int"),
        ({"forward_only": 1}, "must be bool"),
        ({"spike_factor": True}, "must be float"),
        ({"like_days": 0}, "like_days must be"),
        ({"register_digits": 12}, "register_digits must be"),
    ],
)
def test_config_rejects_bad_settings(settings: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSetting, match=message):
        VeeConfig.from_mapping(settings)


def test_like_days_are_the_most_recent_usable_days_of_the_same_class() -> None:
    # 6 days oldest first; target class weekday (0)
    classes = np.array([0, 0, 2, 0, 0, 0], dtype=np.int8)
    history = np.array([[[1, 1], [2, 2], [50, 50], [4, 4], [8, 8], [16, 16]]])
    usable = np.array([[True, True, True, True, False, True]])  # day 4 was estimated
    s = history_stats(history, usable, classes, 0, like_days=3, lookback_days=28)
    # weekdays usable, newest first: 16, 4, 2 (8 unusable, 50 a holiday)
    assert s.like_day.tolist() == [[22 / 3, 22 / 3]]
    assert s.like_days_used.tolist() == [3]
    assert s.recent_max.tolist() == [[50, 50]]  # maxima use every usable day
    assert s.day_max.tolist() == [100]


def test_lookback_limits_history_and_no_usable_day_means_no_stats() -> None:
    history = np.array([[[90], [1]], [[5], [6]]])
    usable = np.array([[True, True], [False, False]])
    s = history_stats(history, usable, np.zeros(2, dtype=np.int8), 0, lookback_days=1)
    assert s.recent_max.tolist() == [[1], [-1]]
    assert s.like_day.tolist() == [[1.0], [0.0]]
    assert s.like_days_used.tolist() == [1, 0]
    assert s.day_max.tolist() == [1, -1]


def test_config_stats_uses_its_like_days() -> None:
    history = np.arange(1, 6).reshape(1, 5, 1)
    s = VeeConfig(like_days=2, like_days_min=1).stats(
        history, np.ones((1, 5), dtype=bool), np.zeros(5, dtype=np.int8), 0
    )
    assert s.like_day.tolist() == [[4.5]]
