"""The control drill (issue 16 item 4; SPEC R4, X1): an emergency campaign over a simulated
winter evening peak, through the switching gate, signed commands, the wire A-route and the
meters' limiters, scored against the truth.

The fleet runs from 16:30 the day before (a Tuesday) to 20:30 on Wednesday 2026-01-14. At 17:40
the planner takes each household's like-day forecast — its 30-minute values of 18:00–20:00 the
day before, as the store holds them — and plans the target; an emergency is declared by two
approvers (R4: it lifts X1's ceilings for the period), the campaign's requests pass the gate
(released by the second person) and go out signed. At 20:00 every limited meter gets its
contract back. Scored from the truth the simulator knows: per 5 minutes of 18:00–20:00 the
demand the limited households would have drawn minus what they drew (the load model's demand
does not depend on the limits), its mean against the target; trips and lockouts; when the last
restoring command was acknowledged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kenshin.api.control_routes import issue
from kenshin.app.system import WireSystem, build_system
from kenshin.aroute.frames import CommandKind
from kenshin.control.gate import ControlGate, Verdict
from kenshin.control.planner import (
    CampaignPlan,
    Eligible,
    eligible,
    expected_reduction_kw,
    plan_campaign,
)
from kenshin.control.signing import ControlSigner
from kenshin.core.channels import Channel
from kenshin.core.customers import AMPERE_STEPS_A
from kenshin.core.ids import Area
from kenshin.core.meterspec import MeterClass
from kenshin.core.timeslots import JST, Resolution, from_epoch_us, to_epoch_us
from kenshin.errors import InvalidInput
from kenshin.fleet.simulator import FleetConfig
from kenshin.hes.command_rules import CommandState
from kenshin.hes.commands import CommandRecord
from kenshin.mdms.versions import current_cells

DAY = dt.date(2026, 1, 14)  # a Wednesday; the forecast is the Tuesday before
START = dt.datetime.combine(DAY - dt.timedelta(days=1), dt.time(16, 30), JST)
PLAN_AT = dt.datetime.combine(DAY, dt.time(17, 40), JST)
PERIOD = (
    dt.datetime.combine(DAY, dt.time(18, 0), JST),
    dt.datetime.combine(DAY, dt.time(20, 0), JST),
)
END = dt.datetime.combine(DAY, dt.time(20, 30), JST)
PRIORITY_SHARE = 0.01  # households on the priority register (home medical equipment, …)
ACTOR, APPROVERS = "campaign-1", ("director", "duty-manager")
RESTORE_SPREAD_MIN = 5  # the meters go back within this many minutes after the period
HOLDOUT_SHARE = 0.1  # of the candidates, never limited: what the others would have drawn
CHECK_AFTER_MIN = 5  # a half hour's values are checked this long after it ends


@dataclass
class ControlDrillResult:
    meters: int
    target_kw: float
    plan: CampaignPlan
    achieved_kw: list[float] = field(default_factory=list)  # per 5-min step of the period
    trips: int = 0
    lockouts: int = 0
    restored_after_s: float | None = None  # last restoring ack − period end
    commands: int = 0
    failed: int = 0
    touched: int = 0  # meters limited at some time
    corrections: list[float] = field(default_factory=list)  # measured ÷ expected, per check
    # per check: the half hour's reduction as the campaign measured it (from the 30-min
    # values, against the held-out households) and as it was [kW]
    verified: list[tuple[float, float]] = field(default_factory=list)
    priority_touched: int = 0  # households on the priority register that were limited

    @property
    def mean_kw(self) -> float:
        return float(np.mean(self.achieved_kw)) if self.achieved_kw else 0.0

    @property
    def error(self) -> float:
        return self.mean_kw / self.target_kw - 1.0


def _slot_kw(
    system: WireSystem, n: int, kwh_per_count: npt.NDArray[np.float64], start: int, end: int
) -> npt.NDArray[np.float64]:
    """Each meter's mean demand over ``(start, end]`` from its stored 30-min values [kW]."""
    rows = system.store.read_window_versions(Channel.ACTIVE_FORWARD, Resolution.MIN30, start, end)
    cells = current_cells(rows, Resolution.MIN30.microseconds)
    keys = cells.column("meter_key").to_numpy().astype(np.int64)
    values = cells.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    total = np.bincount(keys, np.nan_to_num(values), minlength=n)
    hours = (end - start) / 3_600_000_000
    return np.asarray(total * kwh_per_count / hours, np.float64)


class _Campaign:
    """The campaign's side: plan, send limits as emergency profiles through the gate, and after
    each half hour compare the limited households with a held-out tenth of them (their own
    like-day forecast taken off both: a difference in differences) to correct the plan."""

    def __init__(self, system: WireSystem, control: ControlSigner, seed: int) -> None:
        self.system = system
        self.control = control
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0x43544C]))  # "CTL"
        self.seed = seed
        pop = system.fleet.population
        self.n = n = len(pop)
        roster = system.store.read_meters()
        exponent = roster.column("unit_exponent").to_numpy().astype(np.float64)
        coefficient = roster.column("coefficient").to_numpy().astype(np.float64)
        self.kwh_per_count = np.zeros(n)  # by meter key, as the values are summed
        self.kwh_per_count[roster.column("meter_key").to_numpy()] = coefficient * 10.0**exponent
        self.contract = pop.contract_a.astype(np.int64)
        households = np.isin(pop.customer_type, [1, 2])
        priority = households & (self.rng.random(n) < PRIORITY_SHARE)
        self.priority = priority
        switch = np.isin(pop.meter_class, [int(MeterClass.LV_1P2W), int(MeterClass.LV_1P3W)])
        self.candidates = eligible(switch, self.contract, np.ones(n, bool), priority, floor_a=10)
        self.holdout = np.empty(0, np.int64)
        self.gate = ControlGate.for_roster(roster)
        self.limit = np.zeros(n, np.int64)  # the campaign's limit on each meter, 0: none
        self.spread = self.rng.integers(0, RESTORE_SPREAD_MIN + 1, n)
        self.records: list[CommandRecord] = []
        self.corrections: list[float] = []
        # (from, the limits, the forecast they were chosen by)
        self.history: list[tuple[int, npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
        self.measured: list[tuple[float, float]] = []

    def plan(self, forecast: npt.NDArray[np.float64], target_kw: float) -> CampaignPlan:
        return plan_campaign(self.candidates, forecast, self.contract, target_kw, seed=self.seed)

    def hold_out(self) -> None:
        """A tenth of the candidates, never limited: what the others would have drawn."""
        held = self.rng.random(len(self.candidates.keys)) < HOLDOUT_SHARE
        self.holdout = self.candidates.keys[held]
        self.candidates = Eligible(self.candidates.keys[~held], self.candidates.excluded)

    def send(
        self,
        plan: CampaignPlan,
        chosen_by: npt.NDArray[np.float64],
        now_us: int,
        start_us: int,
        end_us: int,
    ) -> None:
        """Profiles for every meter whose campaign limit changes, in force from ``start_us``
        to ``end_us`` and its few random minutes. A household the new plan no longer limits is
        eased one ampere step a half hour rather than let go at once (its deferred load would
        come back all together)."""
        wanted = np.zeros(self.n, np.int64)
        wanted[plan.meter_keys] = plan.limit_a
        leaving = np.flatnonzero((self.limit > 0) & (wanted == 0))
        steps = np.asarray(AMPERE_STEPS_A)
        eased = steps[
            np.minimum(np.searchsorted(steps, self.limit[leaving], "right"), len(steps) - 1)
        ]
        wanted[leaving] = np.where(eased < self.contract[leaving], eased, 0)
        changed = np.flatnonzero(wanted != self.limit)
        target = np.where(wanted[changed] > 0, wanted[changed], self.contract[changed])
        start_min = start_us // 60_000_000  # a start in the past: at once, same end
        minutes = (end_us - start_us) // 60_000_000
        for limit in np.unique(target):
            for extra in np.unique(self.spread[changed]):
                keys = changed[(target == limit) & (self.spread[changed] == extra)]
                if not len(keys):
                    continue
                args = (int(limit), int(minutes + extra), int(start_min))
                request = self.gate.submit(
                    ACTOR, "emergency campaign", CommandKind.SET_AMPERE_LIMIT, keys, args, now_us
                )
                if request.verdict is Verdict.QUARANTINED:
                    request = self.gate.release(request.request_id, APPROVERS[1], now_us)
                if request.passes:
                    assert self.system.hes is not None
                    self.records += issue(self.system.hes, self.control, request, now_us)
        self.limit = wanted
        self.history.append((start_us, wanted, chosen_by))

    def expected(self, forecast: npt.NDArray[np.float64]) -> float:
        """The reduction the limits now planned would give at ``forecast`` [kW]."""
        limited = np.flatnonzero(self.limit > 0)
        return float(
            expected_reduction_kw(
                forecast[limited],
                self.contract[limited].astype(np.float64),
                self.limit[limited].astype(np.float64),
            ).sum()
        )

    def correction(
        self, slot_start: int, slot_end: int, forecast: npt.NDArray[np.float64]
    ) -> float:
        """Measured ÷ expected reduction of the half hour just ended: the limited households
        against the held-out ones, each against its forecast of that half hour."""
        observed = _slot_kw(self.system, self.n, self.kwh_per_count, slot_start, slot_end)
        _, in_force, chosen_by = [h for h in self.history if h[0] <= slot_start][-1]
        limited = np.flatnonzero(in_force > 0)
        if not len(limited) or not len(self.holdout):
            return 1.0
        # what the limited would have drawn: their forecast, scaled as the held-out's came true
        # among households of the same forecast (by tenth: a high forecast tends back more)
        # (the tenths of the forecast the households were chosen by)
        edges = np.quantile(chosen_by[self.holdout], np.linspace(0, 1, 11)[1:-1])
        held_tenth = np.searchsorted(edges, chosen_by[self.holdout])
        num = np.bincount(held_tenth, observed[self.holdout], minlength=10)
        den = np.bincount(held_tenth, forecast[self.holdout], minlength=10)
        came_true = np.divide(num, den, out=np.ones(10), where=den > 0)
        would = forecast[limited] * came_true[np.searchsorted(edges, chosen_by[limited])]
        measured = float((would - observed[limited]).sum())
        expected = float(
            expected_reduction_kw(
                forecast[limited],
                self.contract[limited].astype(np.float64),
                in_force[limited].astype(np.float64),
            ).sum()
        )
        ratio = float(np.clip(measured / expected, 0.5, 2.0)) if expected > 0 else 1.0
        self.corrections.append(ratio)
        self.measured.append((measured, expected))
        return ratio


def _day_of_ratio(
    system: WireSystem, campaign: _Campaign, start_us: int
) -> npt.NDArray[np.float64]:
    """Per meter, how the half hour an hour before the period compares with the same half hour
    the day before, by tenth of the candidates (a day-of adjustment of the like-day forecast:
    households with a high forecast tend back toward the mean, and today is not yesterday)."""
    day, hour = 86_400_000_000, 3_600_000_000
    n, per_kw = campaign.n, campaign.kwh_per_count
    today = _slot_kw(system, n, per_kw, start_us - hour, start_us - hour // 2)
    before = _slot_kw(system, n, per_kw, start_us - hour - day, start_us - hour // 2 - day)
    keys = campaign.candidates.keys
    edges = np.quantile(before[keys], np.linspace(0, 1, 11)[1:-1])
    tenth = np.searchsorted(edges, before[keys])
    num = np.bincount(tenth, today[keys], minlength=10)
    den = np.bincount(tenth, before[keys], minlength=10)
    ratio = np.clip(np.divide(num, den, out=np.ones(10), where=den > 0), 0.5, 2.0)
    scale = np.ones(n)
    scale[keys] = ratio[tenth]
    return scale


def run_control_drill(
    target_mw: float, meters: int, seed: int, area: Area = Area.TOKYO
) -> ControlDrillResult:
    if target_mw <= 0:
        raise InvalidInput(f"the target must be positive, got {target_mw} MW")
    control = ControlSigner.generate()
    config = FleetConfig(n_meters=meters, start=START, seed=seed, area=area)
    system = build_system(config, aroute="wire", background_writer=False, control=control)
    assert isinstance(system, WireSystem) and system.hes is not None
    hes = system.hes
    fleet = system.fleet
    treated = np.zeros(meters, dtype=bool)
    period_us = tuple(to_epoch_us(t) for t in PERIOD)
    achieved: list[float] = []
    original = fleet.limiter.step

    def watch(start_us, demand_w, pv_w, limit, powered):  # type: ignore[no-untyped-def]
        served, share, events = original(start_us, demand_w, pv_w, limit, powered)
        if period_us[0] <= start_us < period_us[1]:
            achieved.append(float((demand_w[treated] - served[treated]).sum()) / 1000)
        return served, share, events

    fleet.limiter.step = watch  # type: ignore[method-assign]
    system.run(PLAN_AT)
    system.mdms.flush()

    campaign = _Campaign(system, control, seed)
    day = 86_400_000_000
    half_hour = 30 * 60_000_000
    # the like-day forecast of each half hour, with the day-of adjustment
    scale = _day_of_ratio(system, campaign, period_us[0])

    def forecast_of(start: int, end: int) -> npt.NDArray[np.float64]:
        like_day = _slot_kw(system, meters, campaign.kwh_per_count, start - day, end - day)
        return like_day * scale

    target_kw = target_mw * 1000
    now = to_epoch_us(PLAN_AT)
    emergency_end = period_us[1] + RESTORE_SPREAD_MIN * 60_000_000
    campaign.gate.declare_emergency(
        APPROVERS, "supply shortfall: avoid rotating outages", now, emergency_end
    )
    # … and, signed, to the head-end, which otherwise holds its own X1 ceiling
    assert hes.commands.x1 is not None
    hes.commands.x1.declare(control.declare_emergency(APPROVERS, now, emergency_end))
    campaign.hold_out()
    # the first limits hold for the first hour (a change takes half an hour to be checked
    # and sent): planned on that hour's forecast; then each half hour, once its values are in,
    # measured against what was expected of it (the limited households against the held-out
    # ones), and the half hour after next planned on its own forecast, corrected by that ratio
    # (every change starts on a half-hour boundary, so each half hour has one set of limits)
    basis = forecast_of(period_us[0], period_us[0] + 2 * half_hour)
    plan = campaign.plan(basis, target_kw)
    campaign.send(plan, basis, now, period_us[0], period_us[1])
    treated[:] = campaign.limit > 0
    for slot_end in range(period_us[0] + half_hour, period_us[1] - half_hour, half_hour):
        check = slot_end + CHECK_AFTER_MIN * 60_000_000
        system.run(from_epoch_us(check))
        system.mdms.flush()
        measured_slot = (slot_end - half_hour, slot_end)
        ratio = campaign.correction(*measured_slot, forecast_of(*measured_slot))
        following = slot_end + half_hour
        # chosen by an hour's forecast (one half hour's is too noisy a household at a time):
        # the rest of the period's, at least its last hour
        basis = forecast_of(min(following, period_us[1] - 2 * half_hour), period_us[1])
        plan = campaign.plan(basis, target_kw / ratio)
        campaign.send(plan, basis, check, following, period_us[1])
        treated[:] = treated | (campaign.limit > 0)
    system.run(END)
    done = [hes.commands.get(r.command_id) for r in campaign.records]
    limited = np.flatnonzero(treated)
    applied = np.maximum(fleet.meters.profile_end_us, fleet.meters.next_end_us)[limited]
    limits_now = fleet.meters.limit_in_force(fleet.meters.now_us)[limited]
    back = bool((limits_now == fleet.meters.ampere_limit_a[limited]).all())
    result = ControlDrillResult(
        meters,
        target_kw,
        plan,
        achieved,
        fleet.limiter.trips,
        fleet.limiter.lockouts,
        (int(applied.max(initial=period_us[1])) - period_us[1]) / 1e6 if back else None,
        len(done),
        sum(r.state is not CommandState.ACKNOWLEDGED for r in done),
        int(treated.sum()),
        campaign.corrections,
        [
            (measured, float(np.mean(achieved[6 * i : 6 * i + 6])))
            for i, (measured, _) in enumerate(campaign.measured)
        ],
        int((treated & campaign.priority).sum()),
    )
    system.close()
    return result
