"""Planning an emergency area campaign (issue 16 item 3; SPEC R4, R5): which households get
which ampere limit so that the area's demand falls by a target.

- **Who**: households and shops with a switch whose contract is above the floor; never HV or EHV
  customers (no switch: R5, they get curtailment requests instead), meters without a switch, and
  the priority register (home medical equipment, hospitals, welfare, water, railways, shelters),
  given by the caller.
- **How much each gives**: the household model of ``kenshin.fleet.limiter``, in expectation:
  under a cap a household keeps its mean under cap / 1.3 but never under its essential load (35 %
  of its recent demand, at least 150 W); with an uncertain forecast, the expectation over it
  (``expected_reduction_kw``). A household's cap is never below what its essential load needs
  at the demand the caller sizes floors by (the floor per household), so the plan locks nobody
  out.
- **Two rules** (``Rule``):
  - ``few`` (the default): households in a seeded random order, each at its floor, until the
    expected reduction meets the target — few households, each giving much, an error in a
    household's level moving its reduction less than under a cap near its demand. Its forecast
    sizes its floor, never whether it is taken (chosen by it, they would be those whose
    forecast ran high). Fair between campaigns: each campaign draws its own order.
  - ``all``: every household gets the same cap L, the least intrusive step that reaches the
    target; between two steps a random share (seeded, so a rotation is a new seed) gets the
    lower one; those expected to give nothing are left alone. Many households, each giving a
    little.
  Either way the expected reduction meets the target exactly, or the plan says by how much even
  everyone at the floor falls short. How each comes true in the drill: docs/control.md.

One vectorized pass per ampere step: ``benchmarks/campaign_plan.py`` plans 1,000,000 meters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from kenshin.core.customers import AMPERE_STEPS_A
from kenshin.core.household_response import (
    ESSENTIAL_MIN_W,
    ESSENTIAL_PEAK,
    ESSENTIAL_SHARE,
    SAFE_MARGIN,
    VOLTS,
    kept_load,
)
from kenshin.errors import InvalidInput

F64 = npt.NDArray[np.float64]

KW_PER_A = VOLTS / 1000
ESSENTIAL_MIN_KW = ESSENTIAL_MIN_W / 1000


class Rule(StrEnum):
    """How a plan shares the reduction out (see the module doc)."""

    FEW = "few"  # a random few households, each at its floor
    ALL = "all"  # one cap for all, a random share one step lower


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


def expected_reduction_kw(
    demand_kw: F64,
    contract_a: F64,
    cap_a: F64,
    uncertainty: float = 0.0,
    usual_ratio: F64 | float = 1.0,
) -> F64:
    """What each household gives under ``cap_a`` in expectation [kW] (the limiter's household
    model): nothing at or above its contract. ``uncertainty``: how far a household's demand
    may come true from ``demand_kw`` (the forecast), as the standard deviation of its logarithm;
    the expectation is then over a lognormal demand of mean ``demand_kw``.

    Why it matters: a household gives nothing under the cap's comfortable level c and all
    above it, so its reduction is convex in its demand — with a noisy forecast, the households
    forecast just under c give something after all (Jensen). With usual = demand the household
    model's reduction is (d − c)⁺ − 0.35 (d − c / 0.35)⁺ (the essential 35 % above c / 0.35),
    and the expectation of each term over a lognormal d is a Black-Scholes call.

    ``usual_ratio``: each household's usual demand (what its essential load is a share of, a
    moving average over ``USUAL_HOURS``) over ``demand_kw``, which scales with it — under 1 on
    a rising evening, when the essential load is a smaller share of what it draws and more is
    shed: with share s = 0.35 × the ratio, (d − c)⁺ − s (d − c / s)⁺ (``CampaignRun.usual_ratio``;
    the 5-min spikes above a smooth usual demand are not in it)."""
    contract_a = np.asarray(contract_a, np.float64)
    cap_a = np.asarray(cap_a, np.float64)
    usual = np.asarray(usual_ratio, np.float64)
    if uncertainty <= 0:
        kept = kept_load(demand_kw, demand_kw * usual, cap_a * KW_PER_A, ESSENTIAL_MIN_KW)
        return np.where(cap_a < contract_a, demand_kw - kept, 0.0)
    comfortable = cap_a * KW_PER_A / SAFE_MARGIN  # over the essential minimum at every step
    share = np.maximum(ESSENTIAL_SHARE * usual, 1e-6)
    gives = _call(demand_kw, comfortable, uncertainty) - share * _call(
        demand_kw, comfortable / share, uncertainty
    )
    return np.where(cap_a < contract_a, np.maximum(gives, 0.0), 0.0)


def _call(mean: F64, strike: F64, sigma: float) -> F64:
    """E[(D − strike)⁺] for a lognormal D of mean ``mean`` and log-sd ``sigma``."""
    mean = np.maximum(np.asarray(mean, np.float64), 1e-12)
    d1 = (np.log(mean / strike) + sigma * sigma / 2) / sigma
    return np.asarray(mean * ndtr(d1) - strike * ndtr(d1 - sigma), np.float64)


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
    cap_a: int  # the rule's cap (``all``: the lower of the two steps; ``few``: the floor)
    # ``all``: the share of households on ``cap_a`` (the rest one step above); ``few``: the
    # share of the candidates (in the seeded order) at their floor, the rest not limited
    lower_share: float
    excluded: dict[str, int]
    higher_a: int  # the step above ``cap_a`` (the same when all are on ``cap_a``)
    floor_a: int
    rule: Rule = Rule.ALL
    uncertainty: float = 0.0  # the forecast's, as planned with (``expected_reduction_kw``)

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
        floor_kw: F64 | None = None,
        usual_ratio: F64 | None = None,
    ) -> npt.NDArray[np.int64]:
        """The limit this plan's rule gives each of ``keys`` (0: none), as it would have had
        they been candidates: the campaign's held-out households, so that the ones the rule
        would have limited are compared with the ones it limited (the same selection)."""
        demand = np.maximum(demand_kw[keys].astype(np.float64), 0.0)
        contract = contract_a[keys].astype(np.float64)
        own_floor = _own_floor(demand, floor_kw, keys, self.floor_a)
        sigma = self.uncertainty
        usual = 1.0 if usual_ratio is None else usual_ratio[keys]
        if self.rule is Rule.FEW:
            taken = round(self.lower_share * len(keys))
            limit, _, limited = _few(demand, contract, own_floor, seed, taken, sigma, usual)
        else:
            caps = (self.cap_a, self.higher_a)
            limit, _, limited = _rule(
                demand, contract, own_floor, caps, self.lower_share, seed, sigma, usual
            )
        return np.where(limited, limit, 0)


def _rule(
    demand: F64,
    contract: F64,
    own_floor: npt.NDArray[np.int64],
    caps_a: tuple[int, int],
    lower_share: float,
    seed: int,
    sigma: float = 0.0,
    usual: F64 | float = 1.0,
) -> tuple[npt.NDArray[np.int64], F64, npt.NDArray[np.bool_]]:
    """One rule for all: a random ``lower_share`` (drawn from ``seed``) on the lower of
    ``caps_a``, the rest on the higher, none under its own floor. Each household's limit, what
    it is expected to give under it, and whether it is limited at all (it gives something and
    the limit is under its contract)."""
    lower = np.random.default_rng(seed).random(len(demand)) < lower_share
    limit = np.maximum(np.where(lower, caps_a[0], caps_a[1]), own_floor).astype(np.int64)
    expected = expected_reduction_kw(demand, contract, limit.astype(np.float64), sigma, usual)
    return limit, expected, (expected > 0) & (limit < contract)


def _own_floor(
    demand: F64, floor_kw: F64 | None, keys: npt.NDArray[np.int64], floor_a: int
) -> npt.NDArray[np.int64]:
    """Each household's floor: the campaign's, or the step its essential load needs at the
    higher of its demand and ``floor_kw`` (by meter key)."""
    sizing = demand if floor_kw is None else np.maximum(demand, floor_kw[keys])
    return np.maximum(household_floor_a(sizing), floor_a)


def _few_count(
    demand: F64,
    contract: F64,
    own_floor: npt.NDArray[np.int64],
    seed: int,
    target_kw: float,
    sigma: float,
    usual: F64 | float = 1.0,
) -> int:
    """How many of the households, in the order drawn from ``seed``, each at its own floor, the
    expected reduction needs to meet ``target_kw`` (all of them when it never does)."""
    order = np.random.default_rng(seed).permutation(len(demand))
    usual_ordered = usual[order] if isinstance(usual, np.ndarray) else usual
    gives = expected_reduction_kw(
        demand[order], contract[order], own_floor[order].astype(float), sigma, usual_ordered
    )
    return min(len(demand), int(np.searchsorted(np.cumsum(gives), target_kw)) + 1)


def _few(
    demand: F64,
    contract: F64,
    own_floor: npt.NDArray[np.int64],
    seed: int,
    count: int,
    sigma: float = 0.0,
    usual: F64 | float = 1.0,
) -> tuple[npt.NDArray[np.int64], F64, npt.NDArray[np.bool_]]:
    """A random few: the first ``count`` households in an order drawn from ``seed``, each at
    its own floor. The same as :func:`_rule` returns. A household's forecast sizes its floor
    but never decides whether it is taken (one forecast to give nothing is limited all the
    same): households chosen by their forecast are those whose forecast ran high, which come
    true lower, and a re-plan on the next half hour's forecast would swap them."""
    taken = np.zeros(len(demand), bool)
    taken[np.random.default_rng(seed).permutation(len(demand))[:count]] = True
    limit = own_floor.astype(np.int64)
    gives = expected_reduction_kw(demand, contract, limit.astype(float), sigma, usual)
    expected = np.where(taken, gives, 0.0)
    return limit, expected, taken & (limit < contract)


def plan_campaign(
    candidates: Eligible,
    demand_kw: F64,
    contract_a: npt.NDArray[np.int64],
    target_kw: float,
    *,
    floor_a: int = 10,
    seed: int = 0,
    rule: Rule = Rule.FEW,
    floor_kw: F64 | None = None,
    uncertainty: float = 0.0,
    usual_ratio: F64 | None = None,
) -> CampaignPlan:
    """A plan by ``rule`` whose expected reduction over ``candidates`` meets ``target_kw``:
    ``all``, the least intrusive single cap (with a random share one step lower); ``few``, the
    fewest households of a random order, each at its floor. ``demand_kw`` and ``contract_a``
    are by meter key (each household's forecast demand of the time planned); ``floor_kw``, by
    meter key, the demand to size each household's floor by when higher (its highest
    forecast of the period: the floor does not move with each half hour's plan);
    ``uncertainty``, the forecast's, and ``usual_ratio``, by meter key, each household's usual
    demand over its forecast (``expected_reduction_kw``)."""
    if target_kw <= 0:
        raise InvalidInput(f"a campaign's target must be positive, got {target_kw} kW")
    if floor_a not in AMPERE_STEPS_A:
        raise InvalidInput(f"the floor must be an ampere step {AMPERE_STEPS_A}, got {floor_a}")
    keys = candidates.keys
    demand = np.maximum(demand_kw[keys].astype(np.float64), 0.0)
    contract = contract_a[keys].astype(np.float64)
    own_floor = _own_floor(demand, floor_kw, keys, floor_a)
    usual: F64 | float = 1.0 if usual_ratio is None else usual_ratio[keys]
    if rule is Rule.FEW:
        count = _few_count(demand, contract, own_floor, seed, target_kw, uncertainty, usual)
        limit, expected, limited = _few(
            demand, contract, own_floor, seed, count, uncertainty, usual
        )
        return CampaignPlan(
            float(target_kw),
            keys[limited],
            limit[limited],
            expected[limited],
            floor_a,
            count / max(len(keys), 1),
            dict(candidates.excluded),
            floor_a,
            floor_a,
            Rule.FEW,
            uncertainty,
        )
    steps = [s for s in AMPERE_STEPS_A if s >= floor_a]
    # expected reduction of the whole area at each uniform cap (never under a household's floor)
    per_step = [
        expected_reduction_kw(
            demand, contract, np.maximum(s, own_floor).astype(np.float64), uncertainty, usual
        )
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
        demand, contract, own_floor, (steps[low], steps[high]), share, seed, uncertainty, usual
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
        Rule.ALL,
        uncertainty,
    )
