"""A running campaign's state (``kenshin.control.running``): the level the plans scale their
forecast by, renewed from the households the campaign left alone, and each household's usual
demand, worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kenshin.control.planner import Eligible
from kenshin.control.running import LEVELS, MATCHED_MIN, CampaignRun, InForce, unreachable
from kenshin.hes.command_rules import CommandState

HALF_HOUR = 1_800_000_000


def _run(n: int, candidates: np.ndarray, holdout: np.ndarray, forecast: np.ndarray) -> CampaignRun:
    return CampaignRun(
        Eligible(candidates),
        holdout,
        np.zeros(0, np.int64),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        lambda start, end: forecast,
        np.zeros(n, np.int32),
        np.zeros(n, np.int64),
        deferred_kwh=np.zeros((LEVELS, n)),
    )


def test_the_level_is_how_the_households_left_alone_came_true() -> None:
    n = 200
    forecast = np.linspace(0.5, 1.5, n)
    observed = forecast * 1.1
    candidates, holdout = np.arange(0, 160), np.arange(160, 200)
    run = _run(n, candidates, holdout, forecast)
    limits = np.zeros(n, np.int64)
    limits[:60] = 10  # limited: they drew less, and are left out
    observed[:60] = 0.3
    run.history.append(InForce(0, limits, np.zeros(n, np.int64), forecast, np.zeros(n), np.ones(n)))
    stored = np.ones(n, bool)
    stored[100] = False  # not arrived: left out too
    observed[100] = 0.0
    observed[150] = forecast[150] * 2.0  # one household ran high: its weight is its forecast
    run.came_level(observed, stored, HALF_HOUR, everyone=True)
    alone = np.setdiff1d(np.arange(60, 200), [100])
    assert run.level == pytest.approx(observed[alone].sum() / forecast[alone].sum())
    assert run.level > 1.1
    # a rule that chooses by the forecast: the held-out ones only
    run.came_level(observed, stored, HALF_HOUR, everyone=False)
    assert run.level == pytest.approx(1.1)
    # too few to tell: the level stays
    few = _run(n, candidates, np.arange(160, 160 + MATCHED_MIN - 1), forecast)
    few.came_level(observed * 3, stored, HALF_HOUR, everyone=False)
    assert few.level == 1.0


def test_a_meter_whose_last_command_gave_up_is_unreachable() -> None:
    """Only a meter's last command counts: a failure the next command got through is past."""
    sent = [
        (3, CommandState.FAILED),
        (5, CommandState.ACKNOWLEDGED),
        (3, CommandState.ACKNOWLEDGED),  # sent again and through
        (7, CommandState.EXPIRED),
        (9, CommandState.REJECTED),
        (11, CommandState.SENT),  # still on its way: not given up
        (5, CommandState.FAILED),  # its last gave up: counted on for nothing, whatever came before
    ]
    assert unreachable(sent).tolist() == [5, 7, 9]
    assert unreachable([]).tolist() == []


def test_the_usual_demand_is_the_limiters_moving_average_of_the_forecast() -> None:
    """Oracle: the limiter's own rule (``fleet.limiter``: at each 5-min step the usual demand
    moves 5 min / 2 h of the way to the step's demand) run over a forecast that steps from
    1 kW to 2 kW an hour before the half hour planned, long settled before, and averaged over
    the half hour's steps — against ``usual_ratio``'s weights. A flat forecast: 1."""
    n, start = 3, 100 * HALF_HOUR

    def forecast(begin: int, end: int) -> np.ndarray:
        kw = 2.0 if begin >= start - 2 * HALF_HOUR else 1.0
        return np.array([kw, kw, 0.0])

    run = _run(n, np.arange(n), np.zeros(0, np.int64), np.zeros(n))
    run.forecast = forecast
    w = 5 / 60 / 2.0
    usual, seen = 1.0, []
    for step in range(-12, 6):  # from an hour before the half hour to its end
        usual += w * (2.0 - usual)
        if step >= 0:
            seen.append(usual)
    ratio = run.usual_ratio(start)
    assert ratio[:2] == pytest.approx([np.mean(seen) / 2.0] * 2, rel=1e-9)
    assert 0.6 < ratio[0] < 0.8  # two hours' average lags an evening's rise
    assert ratio[2] == 1.0  # no forecast: nothing to scale
    flat = _run(n, np.arange(n), np.zeros(0, np.int64), np.full(n, 1.3))
    assert flat.usual_ratio(start) == pytest.approx(np.ones(n))
