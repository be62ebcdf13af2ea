"""What a campaign measures (issue 16 item 3): the counterfactual of the limited households
from held-out ones, with a variance that matches the estimator's real scatter, and the
precision-weighted correction (hand-computed)."""

from __future__ import annotations

import numpy as np
import pytest

from kenshin.control.verify import combined_correction, counterfactual_kw, mean_kw, stored_kw
from kenshin.core.batches import readings_table
from kenshin.core.channels import Channel
from kenshin.core.quality import Source
from kenshin.core.schema import REGISTER_READS_SCHEMA
from kenshin.core.timeslots import Resolution
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
