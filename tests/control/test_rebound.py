"""The campaign's expected rebound (``kenshin.control.rebound``): the room a household's cap
leaves against a Monte Carlo draw of the same lognormal demand, the half hour's bookkeeping by
hand, and the level-by-level expectation against a simulation of the limiter's rule."""

from __future__ import annotations

import numpy as np
import pytest

from kenshin.control.planner import Eligible
from kenshin.control.rebound import STEPS, brought_back_kw, half_hour, rebound_room_kw
from kenshin.control.running import LEVELS, CampaignRun
from kenshin.core.household_response import DEFERRED_SHARE, REBOUND_MAX, SAFE_MARGIN, VOLTS


@pytest.mark.parametrize(
    ("mean_kw", "cap_a", "sigma"),
    [(0.5, 10, 0.4), (0.9, 15, 0.6), (0.3, 20, 0.3), (1.2, 10, 0.2), (0.6, 30, 0.5)],
)
def test_the_room_is_the_expectation_over_a_lognormal_demand(
    mean_kw: float, cap_a: int, sigma: float
) -> None:
    rng = np.random.default_rng(7)
    demand = mean_kw * np.exp(sigma * rng.standard_normal(2_000_000) - sigma**2 / 2)
    comfortable = cap_a * VOLTS / 1000 / SAFE_MARGIN
    drawn = np.minimum(REBOUND_MAX * demand, np.maximum(comfortable - demand, 0)).mean()
    room = rebound_room_kw(np.array([mean_kw]), np.array([float(cap_a)]), np.array([60.0]), sigma)
    assert room[0] == pytest.approx(drawn, rel=0.01)


def test_without_a_cap_or_uncertainty_the_room_is_plain() -> None:
    demand = np.array([0.6, 0.6, 0.6, 0.9])
    cap = np.array([0.0, 40.0, 10.0, 10.0])  # none, at the contract, 10 A, 10 A
    room = rebound_room_kw(demand, cap, np.full(4, 40.0), 0.0)
    comfortable = 1.0 / SAFE_MARGIN  # 10 A: 1 kW, kept 1.3 under it
    assert room.tolist() == pytest.approx(
        [REBOUND_MAX * 0.6, REBOUND_MAX * 0.6, min(REBOUND_MAX * 0.6, comfortable - 0.6), 0.0]
    )
    free = rebound_room_kw(demand, cap, np.full(4, 40.0), 0.4)
    assert free[:2].tolist() == pytest.approx([REBOUND_MAX * 0.6] * 2)


def test_the_half_hour_by_hand() -> None:
    """Demand known exactly: (a) 1 kWh deferred, let go at 0.6 kW: 0.18 kW back every step;
    (b) 10 Wh deferred, let go: all of it back in the first step; (c) shedding 0.3 kW at
    1.0 kW under a 10 A cap (comfortable 0.77 kW): no room, half of it deferred."""
    stock, back = half_hour(
        np.array([1.0, 0.01, 0.0]),
        np.array([0.0, 0.0, 0.3]),
        np.array([0.6, 0.6, 1.0]),
        np.array([0.0, 0.0, 10.0]),
        np.full(3, 40.0),
        0.0,
    )
    step_h = 5 / 60
    assert back.tolist() == pytest.approx([REBOUND_MAX * 0.6, 0.01 / 0.5, 0.0])
    assert stock.tolist() == pytest.approx(
        [1.0 - STEPS * REBOUND_MAX * 0.6 * step_h, 0.0, STEPS * DEFERRED_SHARE * 0.3 * step_h]
    )


@pytest.mark.parametrize(
    ("mean_kw", "cap_a", "sigma", "deferred_kw"),
    [(0.5, 10, 0.4, 0.05), (0.9, 15, 0.6, 0.02), (0.3, 20, 0.3, 0.5), (0.7, 10, 0.3, 0.3)],
)
def test_what_comes_back_is_the_expected_lesser_of_room_and_deferred(
    mean_kw: float, cap_a: int, sigma: float, deferred_kw: float
) -> None:
    """E[min(R, s)] against a Monte Carlo draw (it is less than min(E[R], s))."""
    rng = np.random.default_rng(11)
    demand = mean_kw * np.exp(sigma * rng.standard_normal(2_000_000) - sigma**2 / 2)
    comfortable = cap_a * VOLTS / 1000 / SAFE_MARGIN
    room = np.minimum(REBOUND_MAX * demand, np.maximum(comfortable - demand, 0))
    args = (np.array([mean_kw]), np.array([float(cap_a)]), np.array([60.0]), sigma)
    assert brought_back_kw(*args, deferred_kw)[0] == pytest.approx(
        np.minimum(room, deferred_kw).mean(), rel=0.01
    )
    free = brought_back_kw(args[0], np.zeros(1), args[2], sigma, deferred_kw)
    assert free[0] == pytest.approx(np.minimum(REBOUND_MAX * demand, deferred_kw).mean(), rel=0.01)


def _run(sigma: float, step_sigma: float, n: int) -> CampaignRun:
    run = CampaignRun(
        Eligible(np.arange(n)),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        lambda start, end: np.zeros(n),
        np.zeros(n, np.int32),
        np.zeros(n, np.int64),
        uncertainty=sigma,
        demand_sigma=sigma,
        step_sigma=step_sigma,
        deferred_kwh=np.zeros((LEVELS, n)),
    )
    return run


def test_the_rebound_follows_the_limiters_rule_in_expectation() -> None:
    """Households each at a level drawn once for the evening (log-sd σ around their forecast)
    and 5-min steps around it (σ_s), under the limiter's rule — shed to the comfortable level,
    defer half, bring back up to the room when not shedding — against the run's expectation,
    two half hours under a cap and one let go."""
    rng = np.random.default_rng(3)
    n, sigma, step_sigma = 20_000, 0.4, 0.25
    forecast = rng.uniform(0.5, 1.2, n)
    contract = np.full(n, 40, np.int64)
    cap = np.full(n, 10, np.int64)
    level = forecast * np.exp(sigma * rng.standard_normal(n) - sigma**2 / 2)
    comfortable = 10 * VOLTS / 1000 / SAFE_MARGIN
    stock = np.zeros(n)
    simulated, gross = [], []
    for limited in (True, True, False):
        came, gave = np.zeros(n), 0.0
        for _ in range(STEPS):
            d = level * np.exp(step_sigma * rng.standard_normal(n) - step_sigma**2 / 2)
            shedding = limited & (d > comfortable)
            kept = np.maximum(np.minimum(d, comfortable), np.maximum(0.35 * d, 0.15))
            shed = np.where(shedding, d - kept, 0.0)
            stock += DEFERRED_SHARE * shed * 5 / 60
            gave += shed.sum() / STEPS
            room = np.where(
                shedding,
                0.0,
                np.minimum(REBOUND_MAX * d, comfortable - d if limited else np.inf).clip(0),
            )
            now = np.minimum(room, stock * 12)
            stock -= now / 12
            came += now / STEPS
        simulated.append(came.sum())
        gross.append(gave)
    run = _run(sigma, step_sigma, n)
    expected = []
    for limited in (True, True, False):
        limits = cap if limited else np.zeros(n, np.int64)
        back, run.deferred_kwh = run.rebound_kw(forecast, contract, limits)
        expected.append(back.sum())
    # against the reduction it eats into: within 2 % of it under the cap (the first half hour
    # counts a fifth too much of a small rebound: a household's own deferred energy scatters,
    # and the lesser of room and deferred is taken over the room alone), and within 2 % of
    # what comes back once let go
    assert abs(expected[0] - simulated[0]) < 0.02 * gross[0]
    assert abs(expected[1] - simulated[1]) < 0.02 * gross[1]
    assert expected[2] == pytest.approx(simulated[2], rel=0.02)
    assert simulated[0] < simulated[1] < simulated[2]  # it grows as the deferred energy does
