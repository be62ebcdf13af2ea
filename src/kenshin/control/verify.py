"""What a campaign expects and measures (issue 16 item 3): each household's forecast from the
stored values, and how the held-out households' demand came true against theirs.

All by meter key, in kW, from the current versions of the stored values (``SweepSource``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from kenshin.core.channels import Channel
from kenshin.core.timeslots import Resolution
from kenshin.mdms.store import SweepSource
from kenshin.mdms.versions import current_cells

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DAY = 86_400_000_000
HOUR = 3_600_000_000


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


class Forecaster:
    """Each meter's forecast of a period's half hours: the like day (the same half hours the
    day before) × a day-of adjustment (the half hour an hour before the period against the same
    the day before, by tenth of the households); with no like day, the hour before."""

    def __init__(self, store: SweepSource, kwh_per_count: F64, n: int) -> None:
        self.store, self.kwh_per_count, self.n = store, kwh_per_count, n

    def mean_kw(self, start_us: int, end_us: int) -> F64:
        return mean_kw(self.store, self.kwh_per_count, self.n, Resolution.MIN30, start_us, end_us)

    def for_period(self, keys: I64, start_us: int) -> Callable[[int, int], F64]:
        today = self.mean_kw(start_us - HOUR, start_us - HOUR // 2)
        before = self.mean_kw(start_us - HOUR - DAY, start_us - HOUR // 2 - DAY)
        if len(keys) == 0 or before[keys].sum() <= 0:  # no like day: the hour before it
            recent = self.mean_kw(start_us - 3 * HOUR // 2, start_us - HOUR // 2)
            return lambda start, end: recent
        ratio, edges = _by_tenth(before, today, before, keys)
        scale = np.ones(self.n)
        scale[keys] = ratio[np.searchsorted(edges, before[keys])]
        cache: dict[tuple[int, int], F64] = {}

        def forecast(start: int, end: int) -> F64:
            if (start, end) not in cache:
                cache[(start, end)] = self.mean_kw(start - DAY, end - DAY) * scale
            return cache[(start, end)]

        return forecast


__all__ = ["Forecaster", "combined_correction", "counterfactual_kw", "mean_kw"]
