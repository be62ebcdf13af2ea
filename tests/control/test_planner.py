"""Planning an emergency campaign (issue 16 item 3; SPEC R4, R5): who may be limited and why not,
what a household gives under a cap (worked by hand from the household model), the floor that
keeps essential loads on, and a plan whose expected reduction meets the target with one rule
for all."""

from __future__ import annotations

import numpy as np
import pytest

from kenshin.control.planner import (
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


def _area(n: int = 20_000, seed: int = 4):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    contract = rng.choice([30, 40, 50, 60], n, p=[0.3, 0.4, 0.2, 0.1])
    demand = rng.lognormal(np.log(0.6), 0.6, n)
    candidates = eligible(
        np.ones(n, bool), contract, np.ones(n, bool), np.zeros(n, bool), floor_a=10
    )
    return candidates, demand, contract


def test_a_plan_meets_its_target_with_the_least_intrusive_rule() -> None:
    candidates, demand, contract = _area()
    plan = plan_campaign(candidates, demand, contract, 1_500.0, seed=1)
    assert plan.planned_kw == pytest.approx(1_500.0, rel=0.02)
    assert plan.shortfall_kw < 0.02 * 1_500.0
    # one rule: the cap and one step above it, never under a household's own floor
    floors = household_floor_a(demand[plan.meter_keys])
    assert (plan.limit_a >= floors).all() and (plan.limit_a < contract[plan.meter_keys]).all()
    steps = {plan.cap_a, *plan.limit_a.tolist()}
    assert all(s in (10, 15, 20, 30, 40, 50) for s in steps)
    # least intrusive: the next step up for everyone would not reach the target
    higher = plan_campaign(candidates, demand, contract, 100.0, seed=1)
    assert higher.cap_a > plan.cap_a and higher.planned_kw == pytest.approx(100.0, rel=0.05)
    # the same seed, the same plan; another seed rotates who gets the lower step
    again = plan_campaign(candidates, demand, contract, 1_500.0, seed=1)
    assert np.array_equal(again.limit_a, plan.limit_a)
    rotated = plan_campaign(candidates, demand, contract, 1_500.0, seed=2)
    assert not np.array_equal(rotated.limit_a, plan.limit_a)


def test_the_rule_given_to_held_out_households_is_the_plans_own() -> None:
    """The held-out households get the limits the plan's rule would have given them (never
    sent): the ones it would have limited are the campaign's comparison group. Applied to the
    candidates themselves with the plan's seed, the rule is the plan."""
    candidates, demand, contract = _area()
    plan = plan_campaign(candidates, demand, contract, 1_500.0, seed=3)
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


def test_an_impossible_target_says_the_shortfall() -> None:
    candidates, demand, contract = _area(2_000)
    plan = plan_campaign(candidates, demand, contract, 1e6)
    assert plan.shortfall_kw > 0 and plan.lower_share == 1.0 and plan.cap_a == 10
    with pytest.raises(InvalidInput, match="target must be positive"):
        plan_campaign(candidates, demand, contract, 0.0)
    with pytest.raises(InvalidInput, match="floor must be an ampere step"):
        plan_campaign(candidates, demand, contract, 10.0, floor_a=12)
