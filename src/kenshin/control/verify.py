"""What a campaign expects and measures (issue 16 item 3): each household's forecast from the
stored values, and how the held-out households' demand came true against theirs.

All by meter key, in kW, from the current versions of the stored values (``SweepSource``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from kenshin.core.channels import Channel
from kenshin.core.timeslots import Resolution, from_epoch_us
from kenshin.mdms.daytypes import day_class
from kenshin.mdms.store import SweepSource
from kenshin.mdms.versions import current_cells

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DAY = 86_400_000_000
HOUR = 3_600_000_000
LIKE_DAYS = 5  # the forecast's like days, at most
LOOK_BACK_DAYS = 14  # how far back they are looked for
# a household's half hour against a forecast from one like day (or the hour before), log-sd:
# a day's half hour lies ~0.42 from the mean of 5 like days (the drill's households,
# benchmarks/forecast_spread.py), so one against one ~0.42 × √2
DEFAULT_UNCERTAINTY = 0.6
# a household's 5-min values around their half hour's mean, log-sd, with no 5-min value stored
# (the drill's households: a standard deviation of 0.28–0.30, heavy-tailed; the estimate from
# stored values, ``Forecaster.step_uncertainty``, a mean absolute deviation, gives 0.24–0.25)
DEFAULT_STEP_UNCERTAINTY = 0.3


def mean_kw(
    store: SweepSource,
    kwh_per_count: F64,
    n: int,
    resolution: Resolution,
    start_us: int,
    end_us: int,
) -> F64:
    """Each meter's mean demand over ``(start, end]`` from its stored forward values [kW];
    0 where nothing is stored."""
    return stored_kw(store, kwh_per_count, n, resolution, start_us, end_us)[0]


def stored_kw(
    store: SweepSource,
    kwh_per_count: F64,
    n: int,
    resolution: Resolution,
    start_us: int,
    end_us: int,
) -> tuple[F64, npt.NDArray[np.bool_]]:
    """:func:`mean_kw`, and whether each meter's every value of the window is stored (a value
    not yet arrived is not a meter that drew nothing)."""
    rows = store.read_window_versions(Channel.ACTIVE_FORWARD, resolution, start_us, end_us)
    cells = current_cells(rows, resolution.microseconds)
    keys = cells.column("meter_key").to_numpy().astype(np.int64)
    values = cells.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    stored = ~np.isnan(values)  # a NULL placeholder is no value
    total = np.bincount(keys, np.nan_to_num(values), minlength=n)[:n]
    slots = (end_us - start_us) // resolution.microseconds
    complete = np.bincount(keys[stored], minlength=n)[:n] >= slots
    hours = (end_us - start_us) / HOUR
    return np.asarray(total * kwh_per_count / hours, np.float64), complete


def _by_tenth(
    grouping: F64, numerator: F64, denominator: F64, reference: I64, groups: int = 10
) -> tuple[F64, F64]:
    """Σ numerator ÷ Σ denominator over ``reference`` by ``groups`` quantiles of ``grouping``
    (tenths by default; clipped to [0.5, 2]), and the groups' edges."""
    inner = np.linspace(0, 1, groups + 1)[1:-1]
    edges = np.quantile(grouping[reference], inner) if len(reference) else np.zeros(groups - 1)
    tenth = np.searchsorted(edges, grouping[reference])
    num = np.bincount(tenth, numerator[reference], minlength=groups)
    den = np.bincount(tenth, denominator[reference], minlength=groups)
    ratio = np.clip(np.divide(num, den, out=np.ones(groups), where=den > 0), 0.5, 2.0)
    return ratio, edges


def counterfactual_kw(
    chosen_by: F64, forecast: F64, observed: F64, reference: I64, keys: I64, groups: int = 10
) -> tuple[float, float]:
    """What ``keys`` would have drawn together [kW], and the variance of that estimate [kW²]:
    each one's forecast × how the ``reference`` households' demand came true against theirs,
    among those in the same quantile group of ``chosen_by`` (a high forecast tends back). The
    variance is the ratio estimator's (from the reference households' residuals) plus the
    households' own scatter around it, both from the residuals by group."""
    ratio, edges = _by_tenth(chosen_by, observed, forecast, reference, groups)
    ref_tenth = np.searchsorted(edges, chosen_by[reference])
    residual = observed[reference] - ratio[ref_tenth] * forecast[reference]
    sq = np.bincount(ref_tenth, residual**2, minlength=groups)
    n_ref = np.bincount(ref_tenth, minlength=groups)
    f_ref = np.bincount(ref_tenth, forecast[reference], minlength=groups)
    key_tenth = np.searchsorted(edges, chosen_by[keys])
    f_keys = np.bincount(key_tenth, forecast[keys], minlength=groups)
    n_keys = np.bincount(key_tenth, minlength=groups)
    ratio_var = np.divide(sq, f_ref**2, out=np.zeros(groups), where=f_ref > 0)
    scatter = np.divide(sq, n_ref, out=np.zeros(groups), where=n_ref > 0)
    would = float((ratio[key_tenth] * forecast[keys]).sum())
    return would, float((f_keys**2 * ratio_var + n_keys * scatter).sum())


def combined_correction(checks: list[tuple[float, float]], prior_sd: float) -> float:
    """The correction to plan with: the measured ÷ expected ratios of the checks so far,
    ``(ratio, variance)``, weighted by their precision against a prior of 1 (the household
    model) with ``prior_sd`` — a noisy measurement moves the plan a little, many good ones a
    lot."""
    weight = 1.0 / prior_sd**2
    total = weight
    for ratio, variance in checks:
        w = 1.0 / max(variance, 1e-9)
        weight += w
        total += w * ratio
    return total / weight


class PeriodForecast(NamedTuple):
    kw: Callable[[int, int], F64]  # each meter's forecast of (start, end] [kW]
    uncertainty: float  # how far a household's half hour comes true from it (log-sd)
    like_days: int  # how many it was made from (0: the hour before)
    # how far a household's 5-min values stray from their half hour's mean (log-sd)
    step_uncertainty: float = DEFAULT_STEP_UNCERTAINTY


class Forecaster:
    """Each meter's forecast of a period's half hours: the mean of its values at the same times
    on the last ``LIKE_DAYS`` like days (the period's day class — weekday, Saturday, Sunday or
    holiday — within ``LOOK_BACK_DAYS``; each meter over the days it has all values of) × one
    area-wide day-of ratio: the candidates' half hour an hour before the period against the same
    half hour on those days. The kind of baseline demand response is settled on in Japan
    (several like days, adjusted on the day); ``benchmarks/forecast_spread.py`` measured it
    against the like day alone (R² 0.81 against 0.56 over the drill's households). With no like
    day stored, each meter's hour before the period."""

    def __init__(self, store: SweepSource, kwh_per_count: F64, n: int) -> None:
        self.store, self.kwh_per_count, self.n = store, kwh_per_count, n
        # past windows read once: the like days' half hours serve the day-of check, the
        # uncertainty and every half hour's forecast
        self._read: dict[tuple[int, int], tuple[F64, npt.NDArray[np.bool_]]] = {}

    def mean_kw(self, start_us: int, end_us: int) -> F64:
        return mean_kw(self.store, self.kwh_per_count, self.n, Resolution.MIN30, start_us, end_us)

    def _stored(self, start_us: int, end_us: int) -> tuple[F64, npt.NDArray[np.bool_]]:
        if (start_us, end_us) not in self._read:
            self._read[(start_us, end_us)] = stored_kw(
                self.store, self.kwh_per_count, self.n, Resolution.MIN30, start_us, end_us
            )
        return self._read[(start_us, end_us)]

    def like_days(self, keys: I64, start_us: int) -> list[int]:
        """How many days back each like day of ``start_us``'s day is (nearest first, at most
        ``LIKE_DAYS``): same day class, and most of ``keys`` have the day-of window's values."""
        today = from_epoch_us(start_us).date()
        back = np.arange(1, LOOK_BACK_DAYS + 1)
        dates = [today - dt.timedelta(days=int(b)) for b in back]
        alike = back[day_class(dates) == day_class([today])[0]]
        found: list[int] = []
        for days_back in alike.tolist():
            _, complete = self._stored(*self._day_of(start_us - days_back * DAY))
            if len(keys) and complete[keys].mean() >= 0.5:
                found.append(days_back)
                if len(found) == LIKE_DAYS:
                    break
        return found

    @staticmethod
    def _day_of(start_us: int) -> tuple[int, int]:
        """The day-of window: the half hour an hour before ``start_us`` (stored by the lead)."""
        return start_us - HOUR, start_us - HOUR // 2

    def _mean_of(self, days_back: list[int], start_us: int, end_us: int) -> F64:
        """Each meter's mean demand over ``(start, end]`` on the days ``days_back``, over the
        days it has all values of (0 with none)."""
        total, count = np.zeros(self.n), np.zeros(self.n)
        for back in days_back:
            values, complete = self._stored(start_us - back * DAY, end_us - back * DAY)
            total += np.where(complete, values, 0.0)
            count += complete
        return np.divide(total, count, out=np.zeros(self.n), where=count > 0)

    def uncertainty(self, keys: I64, days_back: list[int], start_us: int, end_us: int) -> float:
        """How far a household's half hour comes true from its forecast (log-sd), from the like
        days themselves: each day's half hours of the period against their mean over the days
        (× √(k/(k−1)), the mean holding that day), then × √(1 + 1/k) for a new day against a
        mean of k. ``DEFAULT_UNCERTAINTY`` with fewer than two like days."""
        k = len(days_back)
        if k < 2 or not len(keys):
            return DEFAULT_UNCERTAINTY
        stored = [
            [
                self._stored(t - back * DAY, t - back * DAY + HOUR // 2)
                for t in range(start_us, end_us, HOUR // 2)
            ]
            for back in days_back
        ]
        values = np.array([[kw[keys] for kw, _ in day] for day in stored])
        complete = np.array([[ok[keys] for _, ok in day] for day in stored])
        count = complete.sum(axis=0)
        mean = np.divide(
            (values * complete).sum(axis=0), count, out=np.zeros(count.shape), where=count > 0
        )
        # a household at home (not a PV export), on a day it has the value of, with another
        usable = complete & (count >= 2) & (mean > 0.05) & (values > 0.005)
        if not usable.any():
            return DEFAULT_UNCERTAINTY
        ratio = values / np.where(mean > 0, mean, 1.0)
        spread = float(np.log(ratio, out=np.zeros(ratio.shape), where=usable)[usable].std())
        return spread * math.sqrt(k / (k - 1)) * math.sqrt(1 + 1 / k)

    def step_uncertainty(
        self, keys: I64, days_back: list[int], start_us: int, end_us: int
    ) -> float:
        """How far a household's 5-min values stray from their half hour's mean (log-sd),
        pooled over the A3 sample's stored 5-min values (SPEC A3) of ``keys`` in the period's
        window on the like days; ``DEFAULT_STEP_UNCERTAINTY`` with none. From the mean absolute
        deviation (× √(π/2), a normal's σ): the steps are peaky with long tails (a kettle), and
        their standard deviation (0.28 in the drill's fleet) would be the tails' while half of
        them lie within ±0.1; the mean absolute deviation (0.20) matches their 5–95 % range."""
        logs = []
        steps = Resolution.MIN30.microseconds // Resolution.MIN5.microseconds
        for back in days_back:
            start, end = start_us - back * DAY, end_us - back * DAY
            rows = self.store.read_window_versions(
                Channel.ACTIVE_FORWARD, Resolution.MIN5, start, end
            )
            cells = current_cells(rows, Resolution.MIN5.microseconds)
            key = cells.column("meter_key").to_numpy().astype(np.int64)
            value = cells.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
            ends = cells.column("interval_end").cast("int64").to_numpy()
            ok = np.isin(key, keys) & (value > 0)
            slot = (ends[ok] - start - 1) // Resolution.MIN5.microseconds
            half_hours = (end - start) // Resolution.MIN30.microseconds
            cell = key[ok] * half_hours + slot // steps  # a meter's half hour
            _, index, count = np.unique(cell, return_inverse=True, return_counts=True)
            log = np.log(value[ok])
            mean = np.bincount(index, log) / count
            full = (count == steps)[index]  # a half hour with all its steps
            logs.append((log - mean[index])[full])
        pooled = np.concatenate(logs) if logs else np.zeros(0)
        if pooled.size < 100:
            return DEFAULT_STEP_UNCERTAINTY
        return float(np.abs(pooled).mean() * math.sqrt(math.pi / 2 * steps / (steps - 1)))

    def for_period(self, keys: I64, start_us: int, end_us: int) -> PeriodForecast:
        days_back = self.like_days(keys, start_us)
        if not days_back:  # no like day: the hour before it
            recent = self.mean_kw(start_us - 3 * HOUR // 2, start_us - HOUR // 2)
            return PeriodForecast(lambda start, end: recent, DEFAULT_UNCERTAINTY, 0)
        window = self._day_of(start_us)
        base = float(self._mean_of(days_back, *window)[keys].sum())
        today = float(self.mean_kw(*window)[keys].sum())
        scale = float(np.clip(today / base, 0.5, 2.0)) if base > 0 else 1.0
        cache: dict[tuple[int, int], F64] = {}

        def forecast(start: int, end: int) -> F64:
            if (start, end) not in cache:
                cache[(start, end)] = self._mean_of(days_back, start, end) * scale
            return cache[(start, end)]

        sigma = self.uncertainty(keys, days_back, start_us, end_us)
        step = self.step_uncertainty(keys, days_back, start_us, end_us)
        return PeriodForecast(forecast, sigma, len(days_back), step)


__all__ = ["Forecaster", "PeriodForecast", "combined_correction", "counterfactual_kw", "mean_kw"]
