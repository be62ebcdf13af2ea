"""A running campaign's state (``kenshin.control.desk``): the households it may limit, the
limits it sent half hour by half hour and what it expected of them, the held-out comparison,
and each household's expected deferred energy (``control.rebound``). In memory only: after a
restart a running campaign is interrupted and its meters revert by themselves."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from kenshin.control.planner import Eligible, expected_reduction_kw
from kenshin.control.rebound import half_hour
from kenshin.core.household_response import USUAL_HOURS
from kenshin.core.timeslots import Resolution
from kenshin.hes.command_rules import CommandState

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MATCHED_MIN = 30
# a standard normal's Gauss–Hermite points and weights (the half hour's level, above)
LEVELS = 7
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(LEVELS)
_LEVELS = (_NODES, _WEIGHTS / _WEIGHTS.sum())


class InForce(NamedTuple):
    """A plan from ``from_us`` on: the limits sent, the held-out households' shadow limits,
    the forecast it chose them by, each household's load expected back in its half hour (its
    deferred energy, ``control.rebound``) [kW], and its usual demand over its forecast
    (``CampaignRun.usual_ratio``)."""

    from_us: int
    limits: I64
    shadow: I64
    chosen_by: F64
    rebound: F64
    usual: F64


@dataclass
class CampaignRun:
    """A running campaign's arrays (by meter key)."""

    candidates: Eligible
    holdout: I64
    hv: I64  # HV and EHV customers in the area (curtailment requests)
    limit: I64  # the campaign's limit now, 0: none
    spread: I64  # each meter's extra minutes after the period
    forecast: Callable[[int, int], F64]  # each meter's forecast of (start, end] [kW]
    half_hours: npt.NDArray[np.int32]  # per meter, the half hours it was limited in
    # the limits the plans' rule would have given the held-out households (never sent): the
    # ones it would have limited are the comparison for the ones it limited
    shadow: I64
    # the demand each household's floor is sized by (its highest half hour of the period, one
    # forecast error up): the floor holds for the whole period and does not move between plans
    floor_kw: F64 = field(default_factory=lambda: np.zeros(0))
    uncertainty: float = 0.0  # what the plans expect over (rule all: 0, the forecast itself)
    # the forecast's uncertainty: of a household's half hour and of its 5-min steps around it
    # (``control.verify.PeriodForecast``)
    demand_sigma: float = 0.0
    step_sigma: float = 0.0
    # each household's expected deferred energy at the end of the last plan's half hour (the
    # start of the next one), at each of its levels (``rebound_kw``: a household's level holds
    # through the evening)
    deferred_kwh: F64 = field(default_factory=lambda: np.zeros((0, 0)))
    # how the households left alone came true against their forecast at the last check
    level: float = 1.0
    history: list[InForce] = field(default_factory=list)  # every plan sent, in order
    commanded: set[int] = field(default_factory=set)  # meters any command went to
    evidence: list[tuple[float, float]] = field(default_factory=list)  # (measured ÷ expected, var)
    came_true: float | None = None  # the limited's demand ÷ forecast, at the last check
    command_ids: list[int] = field(default_factory=list)
    next_progress_us: int = 0
    next_check_us: int = 0

    def in_force(self, at_us: int) -> InForce:
        """The plan in force over the step ending ``at_us`` (none: no limits)."""
        current = [h for h in self.history if h.from_us < at_us]
        if not current:
            n = len(self.limit)
            none = np.zeros(n, np.int64)
            return InForce(at_us, none, none, np.zeros(n), np.zeros(n), np.ones(n))
        return current[-1]

    def left_alone(self, everyone: bool, among: npt.NDArray[np.bool_] | None = None) -> I64:
        """The households no plan has limited (of ``among`` when given): with ``everyone`` the
        candidates and the held-out ones — rule few limits the first of a random order, so the
        rest are a random part of it like the limited ones — else the held-out ones only."""
        pool = np.concatenate([self.candidates.keys, self.holdout]) if everyone else self.holdout
        keep = np.ones(len(pool), bool)
        for plan in self.history:
            keep &= plan.limits[pool] == 0
        if among is not None:
            keep &= among[pool]
        return pool[keep]

    def reference(
        self, shadow: I64, among: npt.NDArray[np.bool_] | None = None, *, everyone: bool = False
    ) -> I64:
        """The households to compare the limited ones with (of ``among`` when given). With
        ``everyone`` (rule few: the limited are the first of a random order) every household
        left alone — thousands, where the held-out ones the rule would have limited are a few
        hundred, and a 1.6 % error in their level reads as 9 % of the reduction. Otherwise the
        held-out ones the rule would have limited (chosen alike, so they come true alike), all
        held-out ones when too few."""
        if everyone:
            alone = self.left_alone(True, among)
            if len(alone) >= MATCHED_MIN:
                return alone
        holdout = self.holdout if among is None else self.holdout[among[self.holdout]]
        matched = holdout[shadow[holdout] > 0]
        return matched if len(matched) >= MATCHED_MIN else holdout

    def came_level(
        self,
        observed: F64,
        stored: npt.NDArray[np.bool_],
        slot_end: int,
        *,
        everyone: bool,
    ) -> None:
        """Renew ``level`` from the half hour ending ``slot_end``: Σ observed ÷ Σ forecast
        over the candidates no plan limited and whose value is stored — before the start all of
        them; ``everyone`` False (a rule that chooses by the forecast, whose households left
        alone are the low ones) the held-out ones only. The evening's level holds from one half
        hour to the next, and a household's reduction moves 3–5× its demand: the forecast's
        day-of ratio, an hour before the start, is renewed with thousands of households."""
        alone = self.left_alone(everyone, stored)
        forecast = self.forecast(slot_end - Resolution.MIN30.microseconds, slot_end)[alone]
        if len(alone) >= MATCHED_MIN and forecast.sum() > 0:
            self.level = float(np.clip(observed[alone].sum() / forecast.sum(), 0.5, 2.0))

    def usual_ratio(self, start_us: int) -> F64:
        """Each household's usual demand over the half hour from ``start_us`` ÷ its forecast of
        it: the household model's moving average (``USUAL_HOURS``, renewed each 5-min step,
        averaged over the half hour's steps) of its forecast of the half hours before
        (``USUAL_BACK`` of them, the weight beyond on the earliest). On a winter evening's rise
        under 1: a household's essential load is a share of its usual demand, so it sheds more
        than a share of what it draws now would leave it."""
        half = Resolution.MIN30.microseconds
        usual = np.zeros(len(self.limit))
        for back, weight in enumerate(_usual_weights()):
            start = start_us - back * half
            usual += weight * self.forecast(start, start + half)
        now = self.forecast(start_us, start_us + half)
        return np.divide(usual, now, out=np.ones(len(now)), where=now > 0)

    def reduction_kw(
        self, demand_kw: F64, contract_a: I64, limits: I64, usual: F64 | float = 1.0
    ) -> F64:
        """Each household's expected reduction under ``limits`` (0: none) [kW]; ``usual``, its
        usual demand over ``demand_kw`` (``usual_ratio``)."""
        return _reduction(demand_kw, contract_a, limits, self.uncertainty, usual)

    def rebound_kw(
        self, demand_kw: F64, contract_a: I64, limits: I64, usual: F64 | float = 1.0
    ) -> tuple[F64, F64]:
        """(each household's load expected back over the half hour under ``limits`` [kW], its
        deferred energy at the half hour's end [kWh]), from ``deferred_kwh``.

        Over the half hour's level (``demand_sigma``, a few quadrature points) and, at each
        level, its 5-min steps (``step_sigma``): a household well over its cap sheds at every
        step and has no room to bring anything back, one near it sheds at some steps and brings
        back at others — taken over the level alone, the two would mix."""
        cap, contract = limits.astype(np.float64), contract_a.astype(np.float64)
        back, stock = np.zeros(len(limits)), np.zeros((LEVELS, len(limits)))
        for i, (z, weight) in enumerate(zip(*_LEVELS, strict=True)):
            level = demand_kw * np.exp(self.demand_sigma * z - self.demand_sigma**2 / 2)
            reduction = _reduction(level, contract_a, limits, self.step_sigma, usual)
            at_end, came = half_hour(
                self.deferred_kwh[i], reduction, level, cap, contract, self.step_sigma
            )
            back += weight * came
            stock[i] = at_end
        return back, stock


def _reduction(
    demand_kw: F64, contract_a: I64, limits: I64, uncertainty: float, usual: F64 | float = 1.0
) -> F64:
    out = np.zeros(len(limits))
    on = np.flatnonzero(limits > 0)
    out[on] = expected_reduction_kw(
        demand_kw[on],
        contract_a[on].astype(np.float64),
        limits[on].astype(np.float64),
        uncertainty,
        usual[on] if isinstance(usual, np.ndarray) else usual,
    )
    return out


USUAL_BACK = 8  # half hours of forecast the usual demand is averaged over (4 h)


@functools.cache
def _usual_weights() -> F64:
    """The weight of the half hour ``back`` half hours before (0: the one planned) in the
    household model's usual demand, averaged over the planned half hour's 5-min steps: at each
    step the moving average takes a share w = 5 min / ``USUAL_HOURS`` of the step's demand."""
    steps = Resolution.MIN30.microseconds // Resolution.MIN5.microseconds
    w = Resolution.MIN5.microseconds / 3_600_000_000 / USUAL_HOURS
    weights = np.zeros(USUAL_BACK)
    for step in range(steps):  # the planned half hour's steps
        for ago in range(steps * USUAL_BACK):  # the steps the average holds, newest first
            back = (ago - step + steps - 1) // steps
            if back < USUAL_BACK:
                weights[back] += w * (1 - w) ** ago / steps
    weights[-1] += 1.0 - weights.sum()  # what lies further back: as the earliest half hour
    return weights


GAVE_UP = frozenset({CommandState.FAILED, CommandState.REJECTED, CommandState.EXPIRED})


def unreachable(sent: Iterable[tuple[int, CommandState]]) -> I64:
    """Meter keys whose last command (``sent``: meter key and state, in the order sent) failed,
    was refused or expired: a limit that never arrived gives nothing."""
    last: dict[int, CommandState] = {}
    for key, state in sent:
        last[key] = state
    return np.fromiter(sorted(key for key, state in last.items() if state in GAVE_UP), np.int64)
