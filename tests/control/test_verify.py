"""What a campaign measures (issue 16 item 3): the counterfactual of the limited households
from held-out ones, with a variance that matches the estimator's real scatter, and the
precision-weighted correction (hand-computed)."""

from __future__ import annotations

import numpy as np
import pytest

from kenshin.control.verify import combined_correction, counterfactual_kw


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
    # two checks: their mean 0.95 with variance 0.005: (100 + 0.95 × 200) / 300
    assert combined_correction([(0.8, 0.01), (1.1, 0.01)], 0.1) == pytest.approx(2.9 / 3)
    # an error both share (sd 0.1) is not averaged away: variance 0.005 + 0.01 →
    # (100 + 0.95 × 66.67) / 166.67
    shared = combined_correction([(0.8, 0.01), (1.1, 0.01)], 0.1, 0.1)
    assert shared == pytest.approx((100 + 0.95 * 200 / 3) / (100 + 200 / 3))
    # however precise, a measurement with a shared sd 0.15 against a model of 0.05 moves the
    # plan a tenth of the way: (400 + 1.5 × 44.4) / 444.4
    assert combined_correction([(1.5, 1e-12)], 0.05, 0.15) == pytest.approx(1.05, abs=1e-3)


def test_strata_keep_a_mix_of_customers_from_biasing_the_counterfactual() -> None:
    """Shops' evenings came true 20 % over their forecast, households' 10 % under; the limited
    are a third shops, the reference a tenth: pooled, the reference's ratio is the wrong mix;
    by customer type, each is right."""
    forecast = np.full(4_000, 1.0)
    shop = np.zeros(4_000, np.int64)
    keys, reference = np.arange(3_000), np.arange(3_000, 4_000)
    shop[:1_000] = 1  # a third of the limited
    shop[3_000:3_100] = 1  # a tenth of the reference
    observed = np.where(shop == 1, 1.2, 0.9)
    truth = float(observed[keys].sum())
    pooled, _ = counterfactual_kw(forecast, forecast, observed, reference, keys)
    by_type, variance = counterfactual_kw(forecast, forecast, observed, reference, keys, shop)
    assert by_type == pytest.approx(truth) and variance == pytest.approx(0.0, abs=1e-9)
    assert pooled == pytest.approx(3_000 * 0.93)  # the reference's mix: 0.1 × 1.2 + 0.9 × 0.9
