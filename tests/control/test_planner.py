"""Planning an emergency campaign (issue 16 item 3; SPEC R4, R5): who may be limited and why not,
what a household gives under a cap (worked by hand from the household model), the floor that
keeps essential loads on, and plans whose expected reduction meets the target by either rule:
a random few at their floor, or one cap for all."""

from __future__ import annotations

import numpy as np
import pytest

from kenshin.control.planner import (
    Rule,
    eligible,
    expected_reduction_kw,
    household_floor_a,
    plan_campaign,
)
from kenshin.errors import InvalidInput


def test_who_may_be_limited() -> None:
    has_switch = np.array([True, True, True, False, True, True])
    contract = np.array([30, 40, 10, 0, 60, 50])
    in_area = np.array([True, True, True, True, True, False])
    priority = np.array([False, True, False, False, False, False])
    chosen = eligible(has_switch, contract, in_area, priority, floor_a=10)
    assert chosen.keys.tolist() == [0, 4]  # 5 is outside the area
    assert chosen.excluded == {
        "no switch (HV, three-phase: R5)": 1,
        "priority register": 1,
        "contract at or under the 10 A floor": 1,
    }


def test_what_a_household_gives_by_hand() -> None:
    demand = np.array([1.0, 1.0, 0.3, 2.0])
    contract = np.array([40.0, 40.0, 40.0, 60.0])
    cap = np.array([10.0, 50.0, 10.0, 15.0])
    given = expected_reduction_kw(demand, contract, cap)
    # 1 kW under 10 A: keeps 1.0 / 1.3 = 0.769 kW; its essential 0.35 kW is under that
    assert given[0] == pytest.approx(1.0 - 1.0 / 1.3)
    assert given[1] == 0.0  # a cap above the contract changes nothing
    assert given[2] == 0.0  # 0.3 kW is under 0.769 kW: nothing to shed
    assert given[3] == pytest.approx(2.0 - 1.5 / 1.3)
    # the floor: 3 kW of demand has 1.05 kW essential, 1.26 kW at its peak: 15 A (1.5 kW)
    assert household_floor_a(np.array([0.2, 3.0, 10.0])).tolist() == [10, 15, 50]


def test_a_household_below_its_usual_demand_keeps_less_by_hand() -> None:
    """The essential load is a share of the usual demand (a moving average), not of what the
    household draws now: on a rising evening (usual 2 kW, drawing 4 kW) it keeps 0.35 × 2 =
    0.7 kW or its comfortable level, where 0.35 × 4 = 1.4 kW would have been kept."""
    demand, contract, cap = np.array([4.0, 4.0]), np.array([60.0, 60.0]), np.array([15.0, 10.0])
    assert expected_reduction_kw(demand, contract, cap).tolist() == pytest.approx([2.6, 2.6])
    given = expected_reduction_kw(demand, contract, cap, usual_ratio=np.array([0.5, 0.5]))
    assert given.tolist() == pytest.approx([4.0 - 1.5 / 1.3, 4.0 - 1.0 / 1.3])


@pytest.mark.parametrize("sigma", [0.1, 0.4, 0.8])
def test_the_expectation_under_an_uncertain_forecast_is_the_mean_over_its_outcomes(
    sigma: float,
) -> None:
    """Oracle: the household model at each outcome of the demand (lognormal, of the
    forecast's mean), integrated numerically over a fine grid of the normal, for forecasts
    around each ampere step's comfortable level."""
    forecast = np.array([0.3, 0.7, 0.77, 0.9, 1.5, 2.5, 4.0])
    contract = np.full(len(forecast), 60.0)
    z = np.linspace(-9, 9, 36_001)[:, None]
    weight = np.exp(-(z**2) / 2) * (z[1, 0] - z[0, 0]) / np.sqrt(2 * np.pi)
    outcomes = forecast * np.exp(sigma * z - sigma**2 / 2)
    for cap in (10.0, 15.0, 30.0):
        caps = np.full(len(forecast), cap)
        closed = expected_reduction_kw(forecast, contract, caps, sigma)
        each = expected_reduction_kw(
            outcomes,
            np.broadcast_to(contract, outcomes.shape),
            np.broadcast_to(caps, outcomes.shape),
        )
        assert closed == pytest.approx((each * weight).sum(axis=0), rel=1e-4, abs=1e-7)
        # a usual demand 0.6 or 1.2 × the forecast, scaling with each outcome
        for ratio in (0.6, 1.2):
            closed = expected_reduction_kw(forecast, contract, caps, sigma, ratio)
            each = expected_reduction_kw(
                outcomes,
                np.broadcast_to(contract, outcomes.shape),
                np.broadcast_to(caps, outcomes.shape),
                usual_ratio=ratio,
            )
            assert closed == pytest.approx((each * weight).sum(axis=0), rel=1e-4, abs=1e-7)
    # more uncertain, more given by the households forecast under the level (convexity)
    low = expected_reduction_kw(np.array([0.6]), np.array([40.0]), np.array([10.0]), sigma)
    assert low[0] > 0
    assert expected_reduction_kw(np.array([1.0]), np.array([10.0]), np.array([10.0]), sigma)[0] == 0


def _area(n: int = 20_000, seed: int = 4):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    contract = rng.choice([30, 40, 50, 60], n, p=[0.3, 0.4, 0.2, 0.1])
    demand = rng.lognormal(np.log(0.6), 0.6, n)
    candidates = eligible(
        np.ones(n, bool), contract, np.ones(n, bool), np.zeros(n, bool), floor_a=10
    )
    return candidates, demand, contract


def test_one_cap_for_all_meets_its_target_with_the_least_intrusive_step() -> None:
    candidates, demand, contract = _area()
    plan = plan_campaign(candidates, demand, contract, 1_500.0, seed=1, rule=Rule.ALL)
    assert plan.planned_kw == pytest.approx(1_500.0, rel=0.02)
    assert plan.shortfall_kw < 0.02 * 1_500.0
    # one rule: the cap and one step above it, never under a household's own floor
    floors = household_floor_a(demand[plan.meter_keys])
    assert (plan.limit_a >= floors).all() and (plan.limit_a < contract[plan.meter_keys]).all()
    steps = {plan.cap_a, *plan.limit_a.tolist()}
    assert all(s in (10, 15, 20, 30, 40, 50) for s in steps)
    # least intrusive: the next step up for everyone would not reach the target
    higher = plan_campaign(candidates, demand, contract, 100.0, seed=1, rule=Rule.ALL)
    assert higher.cap_a > plan.cap_a and higher.planned_kw == pytest.approx(100.0, rel=0.05)
    # the same seed, the same plan; another seed rotates who gets the lower step
    again = plan_campaign(candidates, demand, contract, 1_500.0, seed=1, rule=Rule.ALL)
    assert np.array_equal(again.limit_a, plan.limit_a)
    rotated = plan_campaign(candidates, demand, contract, 1_500.0, seed=2, rule=Rule.ALL)
    assert not np.array_equal(rotated.limit_a, plan.limit_a)


@pytest.mark.parametrize("rule", list(Rule))
def test_the_rule_given_to_held_out_households_is_the_plans_own(rule: Rule) -> None:
    """The held-out households get the limits the plan's rule would have given them (never
    sent): the ones it would have limited are the campaign's comparison group. Applied to the
    candidates themselves with the plan's seed, the rule is the plan."""
    candidates, demand, contract = _area()
    plan = plan_campaign(candidates, demand, contract, 1_500.0, seed=3, rule=rule)
    again = plan.limits_for(candidates.keys, demand, contract, seed=3)
    assert np.array_equal(np.flatnonzero(again), np.searchsorted(candidates.keys, plan.meter_keys))
    assert np.array_equal(again[again > 0], plan.limit_a)
    # households alike, chosen alike: about the plan's share of another group is limited
    others = np.arange(len(demand), len(demand) + 5_000)
    rng = np.random.default_rng(9)
    demand2 = np.concatenate([demand, rng.lognormal(np.log(0.6), 0.6, 5_000)])
    more = rng.choice([30, 40, 50, 60], 5_000, p=[0.3, 0.4, 0.2, 0.1])
    contract2 = np.concatenate([contract, more])
    shadow = plan.limits_for(others, demand2, contract2, seed=11)
    share = len(plan.meter_keys) / len(candidates.keys)
    assert (shadow > 0).mean() == pytest.approx(share, abs=0.02)
    given = shadow[shadow > 0]
    floor = household_floor_a(demand2[others][shadow > 0])
    assert (given >= floor).all()
    assert ((given == plan.cap_a) | (given == plan.higher_a) | (given == floor)).all()


def test_a_random_few_each_at_its_floor_and_no_more_than_the_target_needs() -> None:
    candidates, demand, contract = _area()
    plan = plan_campaign(candidates, demand, contract, 1_500.0, seed=5)
    assert plan.rule is Rule.FEW and plan.cap_a == plan.higher_a == 10
    keys = plan.meter_keys
    assert (plan.limit_a == np.maximum(household_floor_a(demand[keys]), 10)).all()
    assert (plan.limit_a < contract[keys]).all()
    by_hand = expected_reduction_kw(demand[keys], contract[keys].astype(float), plan.limit_a * 1.0)
    assert plan.expected_kw == pytest.approx(by_hand)
    # the target met by the last household of the seeded order, not before it
    order = np.random.default_rng(5).permutation(len(candidates.keys))
    taken = candidates.keys[order[: round(plan.lower_share * len(candidates.keys))]]
    assert set(keys.tolist()) <= set(taken.tolist())
    last = taken[-1]
    assert plan.planned_kw >= 1_500.0
    assert plan.planned_kw - float(plan.expected_kw[keys == last].sum()) < 1_500.0
    # a larger target takes more of the same order; another seed, other households
    more = plan_campaign(candidates, demand, contract, 2_000.0, seed=5)
    assert set(keys.tolist()) < set(more.meter_keys.tolist())
    other = plan_campaign(candidates, demand, contract, 1_500.0, seed=6)
    # a household's forecast sizes its floor, never whether it is taken
    low = demand[keys] < 0.5
    assert low.any() and (plan.expected_kw[low] == 0).all()
    overlap = len(set(other.meter_keys.tolist()) & set(keys.tolist()))
    assert overlap == pytest.approx(other.lower_share * len(keys), rel=0.1)  # independent draws


def test_an_impossible_target_says_the_shortfall() -> None:
    candidates, demand, contract = _area(2_000)
    for rule in Rule:
        plan = plan_campaign(candidates, demand, contract, 1e6, rule=rule)
        assert plan.shortfall_kw > 0 and plan.lower_share == 1.0 and plan.cap_a == 10
        # everyone at the floor: rule all, those who give something there; rule few, all of
        # them (a household is taken by the draw, not by its forecast)
        floor = np.maximum(household_floor_a(demand[candidates.keys]), 10)
        contracts = contract[candidates.keys]
        given = expected_reduction_kw(demand[candidates.keys], contracts * 1.0, floor * 1.0)
        can = (given > 0) if rule is Rule.ALL else (floor < contracts)
        assert len(plan.meter_keys) == int(can.sum())
    with pytest.raises(InvalidInput, match="target must be positive"):
        plan_campaign(candidates, demand, contract, 0.0)
    with pytest.raises(InvalidInput, match="floor must be an ampere step"):
        plan_campaign(candidates, demand, contract, 10.0, floor_a=12)


def test_the_floor_is_sized_by_the_highest_forecast_given() -> None:
    """``floor_kw`` (the desk: each household's highest half hour of the period) raises a
    household's floor where its essential load there needs more than at the demand planned."""
    candidates, demand, contract = _area(4_000)
    high = demand * 3.0
    for rule in Rule:
        plain = plan_campaign(candidates, demand, contract, 200.0, seed=2, rule=rule)
        sized = plan_campaign(candidates, demand, contract, 200.0, seed=2, rule=rule, floor_kw=high)
        keys = sized.meter_keys
        assert (sized.limit_a >= np.maximum(household_floor_a(high[keys]), 10)).all()
        assert not (
            plain.limit_a >= np.maximum(household_floor_a(high[plain.meter_keys]), 10)
        ).all()
        shadow = sized.limits_for(candidates.keys, demand, contract, seed=2, floor_kw=high)
        assert (shadow[shadow > 0] >= household_floor_a(high[candidates.keys][shadow > 0])).all()
