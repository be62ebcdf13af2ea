"""What a campaign measures (issue 16 item 3): the counterfactual of the limited households
from held-out ones, with a variance that matches the estimator's real scatter, and the
precision-weighted correction (hand-computed)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from kenshin.control.verify import (
    DEFAULT_STEP_UNCERTAINTY,
    DEFAULT_UNCERTAINTY,
    Forecaster,
    combined_correction,
    counterfactual_kw,
    mean_kw,
    stored_kw,
)
from kenshin.core.batches import readings_table
from kenshin.core.channels import Channel
from kenshin.core.quality import Source
from kenshin.core.schema import REGISTER_READS_SCHEMA
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.mdms.duckdb_store import DuckDBStore


def test_the_counterfactual_is_unbiased_and_its_variance_is_honest() -> None:
    rng = np.random.default_rng(7)
    n = 3_000
    forecast = rng.gamma(2.0, 0.5, n)  # kW
    reference = np.arange(300)
    keys = np.arange(300, n)
    errors, variances = [], []
    for _ in range(400):
        # the day came true 8 % above the forecast, each household with its own scatter
        observed = forecast * 1.08 * rng.lognormal(-0.08, 0.4, n)
        truth = float(observed[keys].sum())
        would, variance = counterfactual_kw(forecast, forecast, observed, reference, keys)
        errors.append(would - truth)
        variances.append(variance)
    errors_a = np.asarray(errors)
    assert abs(errors_a.mean()) < 3 * errors_a.std() / np.sqrt(len(errors_a))  # unbiased
    # the stated variance is the scatter the estimate really has (within 25 %)
    assert np.mean(variances) == pytest.approx(errors_a.var(), rel=0.25)


def test_the_correction_weighs_each_check_by_its_precision() -> None:
    assert combined_correction([], 0.1) == 1.0  # nothing measured: the household model
    # one check as precise as the prior: halfway (1 + 1.2) / 2
    assert combined_correction([(1.2, 0.01)], 0.1) == pytest.approx(1.1)
    # a check four times as precise: (1 × 100 + 1.2 × 400) / 500
    assert combined_correction([(1.2, 0.0025)], 0.1) == pytest.approx(1.16)
    # a very noisy one barely moves it
    assert combined_correction([(2.0, 1.0)], 0.1) == pytest.approx(1 + 1 / 101)
    # two checks: (100 + 0.8 × 100 + 1.1 × 100) / 300
    assert combined_correction([(0.8, 0.01), (1.1, 0.01)], 0.1) == pytest.approx(2.9 / 3)


def test_a_value_not_yet_arrived_is_not_a_meter_that_drew_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The half-hourly check leaves out households whose value has not arrived (``stored_kw``):
    a missing value counted as 0 kW would read as a household that gave everything."""
    store = DuckDBStore(tmp_path / "v.duckdb")
    half_hour = 1_800_000_000
    start = 1_768_374_000_000_000  # a half hour's start
    # meter 0: 500 Wh in the half hour (1 kW); meter 1: a NULL placeholder; meter 2: nothing
    rows = readings_table(
        [0, 1],
        int(Channel.ACTIVE_FORWARD),
        int(Resolution.MIN30),
        start + half_hour,
        [50, 0],
        [True, False],
        0,
        int(Source.METER_PUSH),
        0,
        0,
        start + half_hour + 60_000_000,
    )
    store.append(rows, REGISTER_READS_SCHEMA.empty_table())
    kw, stored = stored_kw(store, np.full(3, 0.01), 3, Resolution.MIN30, start, start + half_hour)
    assert kw.tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert stored.tolist() == [True, False, False]
    assert mean_kw(
        store, np.full(3, 0.01), 3, Resolution.MIN30, start, start + half_hour
    ).tolist() == pytest.approx([1.0, 0.0, 0.0])
    store.close()


def test_the_forecast_is_the_mean_of_five_like_days_scaled_by_one_ratio(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Worked by hand: the period is Wednesday 2026-01-14 18:00–19:00; its like days are the
    weekdays before, skipping the weekend and Monday the 12th (成人の日, a holiday) and stopping
    at five; a meter missing a like day is averaged over the others; one ratio for all from the
    half hour 17:00–17:30 today against the same on the like days."""
    store = DuckDBStore(tmp_path / "f.duckdb")
    start = to_epoch_us(dt.datetime(2026, 1, 14, 18, 0, tzinfo=JST))
    half_hour, day = 1_800_000_000, 86_400_000_000
    kwh_per_count = np.full(3, 0.01)  # 1 kW for a half hour = 50 counts

    def store_kw(days_back: int, keys: list[int], kw: list[float], ends: list[int]) -> None:
        for end in ends:
            slot_end = start + end - days_back * day
            rows = readings_table(
                keys,
                int(Channel.ACTIVE_FORWARD),
                int(Resolution.MIN30),
                slot_end,
                [round(k * 50) for k in kw],
                [True] * len(keys),
                0,
                int(Source.METER_PUSH),
                0,
                0,
                slot_end + 60_000_000,
            )
            store.append(rows, REGISTER_READS_SCHEMA.empty_table())

    evening = [-half_hour, 0, half_hour, 2 * half_hour]  # slots ending 17:30 … 19:00
    like = {1: [1.0, 2.0, 0.4], 5: [1.2, 1.6, 0.6], 6: [0.8, 2.4, 9.0], 7: [1.0, 2.0, 0.6]}
    like[8] = [1.0, 2.0, 0.4]
    for back, kw in like.items():
        keys = [0, 1] if back == 6 else [0, 1, 2]  # meter 2 has nothing on the 8th
        store_kw(back, keys, kw[: len(keys)], evening)
    store_kw(2, [0, 1, 2], [50.0, 50.0, 50.0], evening)  # the holiday: not a like day
    store_kw(9, [0, 1, 2], [50.0, 50.0, 50.0], evening)  # Monday the 5th: a sixth like day
    store_kw(0, [0, 1, 2], [1.5, 2.5, 0.5], [-half_hour])  # today, up to 17:30
    forecaster = Forecaster(store, kwh_per_count, 3)
    keys = np.array([0, 1, 2])
    assert forecaster.like_days(keys, start) == [1, 5, 6, 7, 8]
    base = np.array([5.0 / 5, 10.0 / 5, 2.0 / 4])  # meter 2 over the 4 days it has
    scale = (1.5 + 2.5 + 0.5) / base.sum()
    forecast = forecaster.for_period(keys, start, start + 2 * half_hour)
    assert forecast.like_days == 5
    assert forecast.kw(start, start + half_hour) == pytest.approx(base * scale)
    assert forecast.kw(start, start + 2 * half_hour) == pytest.approx(base * scale)
    # the uncertainty: each like day's value against the mean of the days the meter has, the
    # log-sd over every (day, half hour, meter), × √(5/4) × √(1 + 1/5) (meter 2: four days)
    logs = [np.log(kw[m] / base[m]) for b, kw in like.items() for m in range(3) if b != 6 or m < 2]
    by_hand = np.std(logs * 2) * np.sqrt(5 / 4) * np.sqrt(1 + 1 / 5)
    assert forecast.uncertainty == pytest.approx(by_hand)
    # with no like day stored: each meter's hour before the period
    lone = DuckDBStore(tmp_path / "g.duckdb")
    store.close()
    store = lone
    store_kw(0, [0, 1, 2], [1.5, 2.5, 0.5], [-half_hour, -2 * half_hour])
    alone = Forecaster(lone, kwh_per_count, 3)
    assert alone.like_days(keys, start) == []
    recent = alone.for_period(keys, start, start + half_hour)
    assert recent.kw(start, start + half_hour) == pytest.approx([1.5, 2.5, 0.5])
    assert recent.like_days == 0 and recent.uncertainty == DEFAULT_UNCERTAINTY
    lone.close()


def test_the_step_uncertainty_is_the_5_min_values_spread_around_their_half_hour(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Worked by hand: meters 0–4 alternate 1× and 2× their level each 5 minutes, so each
    step's log lies ln 2 / 2 from its half hour's mean log; the spread is that × √(π/2) (from
    a mean absolute deviation) × √(6/5) (a mean of six). Left out: meter 5 (not asked for; it
    is flat), meter 4's second half hour on the first day (a step missing) and meter 3's on
    the second day (a step of 0)."""
    store = DuckDBStore(tmp_path / "s.duckdb")
    start = to_epoch_us(dt.datetime(2026, 1, 14, 18, 0, tzinfo=JST))
    step, day = 300_000_000, 86_400_000_000
    for back in (1, 2):
        for j in range(12):  # two half hours of 5-min steps
            end = start - back * day + (j + 1) * step
            keys = [m for m in range(6) if not (back == 1 and m == 4 and j == 9)]
            counts = [
                0
                if (back == 2 and m == 3 and j == 8)
                else (10 if m == 5 else (10 + m) * (1 + j % 2))
                for m in keys
            ]
            rows = readings_table(
                keys,
                int(Channel.ACTIVE_FORWARD),
                int(Resolution.MIN5),
                end,
                counts,
                [True] * len(keys),
                0,
                int(Source.METER_PUSH),
                0,
                0,
                end + 60_000_000,
            )
            store.append(rows, REGISTER_READS_SCHEMA.empty_table())
    forecaster = Forecaster(store, np.full(6, 0.01), 6)
    spread = forecaster.step_uncertainty(np.arange(5), [1, 2], start, start + 2 * step * 6)
    assert spread == pytest.approx(np.log(2) / 2 * np.sqrt(np.pi / 2 * 6 / 5))
    # too few values to tell: the default
    assert forecaster.step_uncertainty(np.arange(1), [1], start, start + step * 6) == (
        DEFAULT_STEP_UNCERTAINTY
    )
    store.close()
