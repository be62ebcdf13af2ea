"""Planning an emergency area campaign (issue 16 item 3; SPEC R4, R5): which households get
which ampere limit so that the area's demand falls by a target.

- **Who**: households and shops with a switch whose contract is above the floor; never HV or EHV
  customers (no switch: R5, they get curtailment requests instead), meters without a switch, and
  the priority register (home medical equipment, hospitals, welfare, water, railways, shelters),
  given by the caller.
- **How much each gives**: the household model of ``kenshin.fleet.limiter``, in expectation:
  under a cap a household keeps its mean under cap / 1.3 but never under its essential load (35 %
  of its recent demand, at least 150 W). A household's cap is never below what its essential
  load needs (the floor per household), so the plan locks nobody out.
- **One rule for all** (fairness): every household gets the same cap L, the least intrusive
  step that reaches the target; between two steps a random share of the households (seeded, so a
  rotation is a new seed) gets the lower one, so the expected reduction meets the target exactly.
  When even the floor cannot, the plan says by how much it falls short.

One vectorized pass per ampere step: ``benchmarks/campaign_plan.py`` plans 1,000,000 meters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kenshin.core.customers import AMPERE_STEPS_A
from kenshin.core.household_response import (
    ESSENTIAL_MIN_W,
    ESSENTIAL_PEAK,
    ESSENTIAL_SHARE,
    VOLTS,
    kept_load,
)
from kenshin.errors import InvalidInput

F64 = npt.NDArray[np.float64]

KW_PER_A = VOLTS / 1000
ESSENTIAL_MIN_KW = ESSENTIAL_MIN_W / 1000


@dataclass(frozen=True, slots=True)
class Eligible:
    """The meters a campaign may limit and why the others are left out."""

    keys: npt.NDArray[np.int64]
    excluded: dict[str, int] = field(default_factory=dict)


def eligible(
    has_switch: npt.NDArray[np.bool_],
    contract_a: npt.NDArray[np.int64],
    in_area: npt.NDArray[np.bool_],
    priority: npt.NDArray[np.bool_],
    floor_a: int,
) -> Eligible:
    """Meters in the area a campaign may limit (by meter key), with the count of those left
    out by reason."""
    area = in_area
    no_switch = area & ~has_switch
    protected = area & has_switch & priority
    small = area & has_switch & ~priority & (contract_a <= floor_a)
    ok = area & has_switch & ~priority & (contract_a > floor_a)
    return Eligible(
        np.flatnonzero(ok).astype(np.int64),
        {
            "no switch (HV, three-phase: R5)": int(no_switch.sum()),
            "priority register": int(protected.sum()),
            f"contract at or under the {floor_a} A floor": int(small.sum()),
        },
    )


def expected_reduction_kw(demand_kw: F64, contract_a: F64, cap_a: F64) -> F64:
    """What each household gives under ``cap_a`` in expectation [kW] (the limiter's household
    model): nothing at or above its contract."""
    kept = kept_load(demand_kw, demand_kw, cap_a * KW_PER_A, ESSENTIAL_MIN_KW)
    return np.where(cap_a < contract_a, demand_kw - kept, 0.0)


def household_floor_a(demand_kw: F64) -> npt.NDArray[np.int64]:
    """The lowest ampere step each household's essential load fits under (with its compressors'
    peak): no plan goes below it, so no household is locked out."""
    essential = np.maximum(ESSENTIAL_SHARE * demand_kw, ESSENTIAL_MIN_KW) * ESSENTIAL_PEAK
    steps = np.asarray(AMPERE_STEPS_A)
    index = np.searchsorted(steps * KW_PER_A, essential, side="left")
    return steps[np.minimum(index, len(steps) - 1)].astype(np.int64)


@dataclass(frozen=True, slots=True)
class CampaignPlan:
    target_kw: float
    meter_keys: npt.NDArray[np.int64]  # the households limited
    limit_a: npt.NDArray[np.int64]  # each one's cap
    expected_kw: F64  # each one's expected reduction
    cap_a: int  # the rule's cap (the lower of the two steps)
    lower_share: float  # the share of households on ``cap_a`` (the rest one step above)
    excluded: dict[str, int]
    higher_a: int  # the step above ``cap_a`` (the same when all are on ``cap_a``)
    floor_a: int

    @property
    def planned_kw(self) -> float:
        return float(self.expected_kw.sum())

    @property
    def shortfall_kw(self) -> float:
        return max(0.0, self.target_kw - self.planned_kw)

    def limits_for(
        self,
        keys: npt.NDArray[np.int64],
        demand_kw: F64,
        contract_a: npt.NDArray[np.int64],
        seed: int,
    ) -> npt.NDArray[np.int64]:
        """The limit this plan's rule gives each of ``keys`` (0: none), as it would have had
        they been candidates: the campaign's held-out households, so that the ones the rule
        would have limited are compared with the ones it limited (the same selection)."""
        demand = np.maximum(demand_kw[keys].astype(np.float64), 0.0)
        contract = contract_a[keys].astype(np.float64)
        own_floor = np.maximum(household_floor_a(demand), self.floor_a)
        limit, _, limited = _rule(
            demand, contract, own_floor, (self.cap_a, self.higher_a), self.lower_share, seed
        )
        return np.where(limited, limit, 0)


def _rule(
    demand: F64,
    contract: F64,
    own_floor: npt.NDArray[np.int64],
    caps_a: tuple[int, int],
    lower_share: float,
    seed: int,
) -> tuple[npt.NDArray[np.int64], F64, npt.NDArray[np.bool_]]:
    """One rule for all: a random ``lower_share`` (drawn from ``seed``) on the lower of
    ``caps_a``, the rest on the higher, none under its own floor. Each household's limit, what
    it is expected to give under it, and whether it is limited at all (it gives something and
    the limit is under its contract)."""
    lower = np.random.default_rng(seed).random(len(demand)) < lower_share
    limit = np.maximum(np.where(lower, caps_a[0], caps_a[1]), own_floor).astype(np.int64)
    expected = expected_reduction_kw(demand, contract, limit.astype(np.float64))
    return limit, expected, (expected > 0) & (limit < contract)


def plan_campaign(
    candidates: Eligible,
    demand_kw: F64,
    contract_a: npt.NDArray[np.int64],
    target_kw: float,
    *,
    floor_a: int = 10,
    seed: int = 0,
) -> CampaignPlan:
    """The least intrusive single cap (with a random share one step lower) whose expected
    reduction over ``candidates`` meets ``target_kw``. ``demand_kw`` and ``contract_a`` are by
    meter key (recent mean demand, e.g. the last 30-min values)."""
    if target_kw <= 0:
        raise InvalidInput(f"a campaign's target must be positive, got {target_kw} kW")
    if floor_a not in AMPERE_STEPS_A:
        raise InvalidInput(f"the floor must be an ampere step {AMPERE_STEPS_A}, got {floor_a}")
    keys = candidates.keys
    demand = np.maximum(demand_kw[keys].astype(np.float64), 0.0)
    contract = contract_a[keys].astype(np.float64)
    own_floor = np.maximum(household_floor_a(demand), floor_a)
    steps = [s for s in AMPERE_STEPS_A if s >= floor_a]
    # expected reduction of the whole area at each uniform cap (never under a household's floor)
    per_step = [
        expected_reduction_kw(demand, contract, np.maximum(s, own_floor).astype(np.float64))
        for s in steps
    ]
    totals = np.array([float(r.sum()) for r in per_step])
    # the least intrusive step reaching the target: totals fall as the cap rises
    reaching = np.flatnonzero(totals >= target_kw)
    if not len(reaching):  # even the floor falls short: everyone at the floor
        low = high = 0
        share = 1.0
    else:
        low = int(reaching.max())
        high = min(low + 1, len(steps) - 1)
        gap = totals[low] - totals[high]
        share = 1.0 if high == low or gap <= 0 else (target_kw - totals[high]) / gap
    limit, expected, limited = _rule(
        demand, contract, own_floor, (steps[low], steps[high]), share, seed
    )
    return CampaignPlan(
        float(target_kw),
        keys[limited],
        limit[limited],
        expected[limited],
        int(steps[low]),
        float(share),
        dict(candidates.excluded),
        int(steps[high]),
        floor_a,
    )
