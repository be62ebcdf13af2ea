"""The campaign desk (issue 16 item 3; SPEC R4, R5, X1, X2): takes emergency area campaigns,
has a second person approve them, and runs them at every 5-minute tick of the system.

How a campaign runs (the plan's rule, ``few`` or ``all``: ``kenshin.control.planner``):

- **Plan**, ``LEAD_MIN`` before the start: each candidate's forecast of the period is the mean of
  its 30-min values of the same half hours on its last 5 like days, scaled by one area-wide
  ratio: how the half hour an hour before the start compares with the same half hour on those
  days (``control.verify.Forecaster``); with no like day, its last hour. A tenth of the
  candidates is held out, never limited: what the others would have drawn. Each plan's rule
  is applied to them as well and kept, never sent: the ones it would have limited were chosen
  like the limited ones, so they come true alike (the matched comparison). Rule ``few`` keeps
  one random order for the whole campaign (a re-plan limits more or fewer of it).
- **Send**: limits go out as emergency profiles (limit, minutes, start) through the switching
  gate as the campaign's actor, released by its approver, signed for each meter; each meter
  reverts by itself a few random minutes after the period (no restore command to lose).
- **Verify**: per 5 minutes from the A3 real-time sample (limited meters against the
  held-out and unlimited ones, scaled to all the limited); per half hour from the 30-min values
  (limited against those left alone — rule few — or matched held out — rule all — each against
  its forecast: a difference in differences),
  whose ratios to what the plan expected, weighted by their precision against the household
  model's (``MODEL_SD``), correct the next plan; each half hour from the second on is
  re-planned on its own forecast × the **level** the households left alone came true at in
  the half hour just checked (``CampaignRun.came_level``), a household the new plan lets go
  eased one ampere step at a time.
- **Rebound**: each household's expected deferred energy is carried from half hour to half
  hour (``control.rebound``); a plan gives the target net of what is expected to come back.
- **Brake**: more than ``HALT_FAILED`` of the campaign's finished commands failed, or the
  gate refused a request (X1), halts it with a rollback: every meter it limited gets its
  contract back at once (a profile starting now replaces the ones queued). An abort does the same.
- **HV and EHV customers** (no switch, R5) get curtailment requests for the same share of their
  demand the households give, and a fairness report compares what each group gave.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import numpy.typing as npt

from kenshin.aroute.frames import CommandKind
from kenshin.control.campaign import (
    KIND,
    LEAD_MIN,
    RESTORE_SPREAD_MIN,
    US_PER_MIN,
    Campaign,
    CampaignSpec,
    CampaignState,
    Check,
    Figure,
    Progress,
    campaign_figures,
)
from kenshin.control.dispatch import issue
from kenshin.control.fairness import curtailment_requests, fairness_report
from kenshin.control.gate import ControlGate, Verdict
from kenshin.control.planner import Eligible, Rule, eligible, plan_campaign
from kenshin.control.running import LEVELS, CampaignRun, InForce, unreachable
from kenshin.control.signing import ControlSigner
from kenshin.control.verify import (
    Forecaster,
    combined_correction,
    counterfactual_kw,
    mean_kw,
    stored_kw,
)
from kenshin.core.customers import AMPERE_STEPS_A
from kenshin.core.meterspec import MeterClass
from kenshin.core.timeslots import Resolution, from_epoch_us
from kenshin.errors import Forbidden, InvalidInput, NotFound, UnknownCommand
from kenshin.hes.command_rules import CommandState
from kenshin.hes.commands import CommandRecord
from kenshin.hes.service import HeadEnd
from kenshin.mdms.store import ControlBook, Roster, SweepSource

log = logging.getLogger("kenshin.control")
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
HALF_HOUR = 30 * US_PER_MIN
STEP = 5 * US_PER_MIN
HOLDOUT_SHARE = 0.1
CHECK_AFTER_MIN = 5  # a half hour's values are checked this long after it ends
# how far the household model may be off, a priori: a half hour's measurement moves the plan by
# its precision against this (control.verify.combined_correction)
MODEL_SD = 0.1
# the half-hourly check compares households by the forecast the plan chose them by, in groups of
# at least this many reference households (at most ten groups)
GROUP_SIZE = 50
HALT_FAILED = 0.1  # of the finished commands, with at least HALT_MIN_FAILED of them
HALT_MIN_FAILED = 20
CURTAILMENT_LISTED = 1000  # HV requests listed in the document (all are counted)


class CampaignStore(Roster, SweepSource, ControlBook, Protocol):
    """What the desk reads (the roster, values) and keeps (its campaigns)."""


class CampaignDesk:
    def __init__(
        self,
        store: CampaignStore,
        hes: HeadEnd,
        gate: ControlGate,
        signer: ControlSigner,
        flush: Callable[[], None] = lambda: None,
    ) -> None:
        """``flush``: stores what was delivered, before the desk reads values."""
        self.store, self.hes, self.gate, self.signer, self.flush = store, hes, gate, signer, flush
        roster = store.read_meters()
        keys = roster.column("meter_key").to_numpy()
        n = len(keys)

        def by_key(name: str) -> npt.NDArray[np.int64]:
            out = np.zeros(n, np.int64)
            out[keys] = roster.column(name).to_numpy(zero_copy_only=False).astype(np.int64)
            return out

        self.n = n
        self.area, self.feeder = by_key("area"), by_key("feeder")
        self.contract = by_key("contract_a")
        self.meter_class = by_key("meter_class")
        self.realtime = by_key("realtime_5min").astype(bool)
        exponent = by_key("unit_exponent").astype(np.float64)
        self.kwh_per_count = by_key("coefficient").astype(np.float64) * 10.0**exponent
        self.has_switch = np.isin(
            self.meter_class, [int(MeterClass.LV_1P2W), int(MeterClass.LV_1P3W)]
        )
        self.lock = threading.RLock()
        self.campaigns: dict[int, Campaign] = {}
        self._runs: dict[int, CampaignRun] = {}
        for _, document in store.read_control_records(KIND):
            campaign = Campaign.from_document(document)
            if campaign.state in (CampaignState.RUNNING, CampaignState.RESTORING):
                # its profiles end by themselves at the period's end: nothing stays limited
                campaign.move(CampaignState.INTERRUPTED, campaign.timeline[-1][0], "restarted")
                self._save(campaign)
            self.campaigns[campaign.campaign_id] = campaign
        self._ids = itertools.count(max(self.campaigns, default=0) + 1)
        self.figures = {"halted": 0, "aborted": 0, "completed": 0}

    # ---- what people do ------------------------------------------------------------------

    def create(self, spec: CampaignSpec, actor: str, now_us: int) -> Campaign:
        spec.check(now_us)
        if spec.area is not None and not (self.area == spec.area).any():
            raise InvalidInput(f"no meter in area {spec.area}")
        in_area = self._in_area(spec)
        if not in_area.any():
            raise InvalidInput("no meter on those feeders in that area")
        bad = [k for k in spec.priority_keys if not 0 <= k < self.n]
        if bad:
            raise NotFound(f"no meter with key {bad[0]}")
        with self.lock:
            campaign = Campaign(next(self._ids), actor, spec, CampaignState.PENDING, now_us)
            campaign.timeline.append((now_us, f"asked by {actor}: {spec.reason}"))
            self.campaigns[campaign.campaign_id] = campaign
            self._save(campaign)
        return campaign

    def approve(self, campaign_id: int, approver: str, now_us: int) -> Campaign:
        """A second person lets the campaign run; with ``emergency``, the two of them declare
        an R4 emergency for its period (it lifts X1's ceilings, at the gate and the head-end)."""
        with self.lock:
            campaign = self._pending(campaign_id)
            if approver == campaign.actor:
                raise Forbidden("a campaign is approved by someone other than who asked for it")
            spec = campaign.spec
            if spec.emergency:
                begin = spec.start_us - LEAD_MIN * US_PER_MIN
                until = spec.end_us + RESTORE_SPREAD_MIN * US_PER_MIN
                people = (campaign.actor, approver)
                self.gate.declare_emergency(people, spec.reason, min(begin, now_us), until)
                if self.hes.commands.x1 is not None:
                    self.hes.commands.x1.declare(
                        self.signer.declare_emergency(people, min(begin, now_us), until)
                    )
            campaign.approved_by = approver
            campaign.move(CampaignState.APPROVED, now_us, f"approved by {approver}")
            self._save(campaign)
            return campaign

    def reject(self, campaign_id: int, by: str, now_us: int, why: str) -> Campaign:
        with self.lock:
            campaign = self._pending(campaign_id)
            campaign.why = why
            campaign.move(CampaignState.REJECTED, now_us, f"rejected by {by}: {why}".rstrip(": "))
            self._save(campaign)
            return campaign

    def abort(self, campaign_id: int, by: str, now_us: int, why: str) -> Campaign:
        """Stop a campaign before or while it runs: every meter it limited gets its contract
        back at once (rollback)."""
        with self.lock:
            campaign = self.get(campaign_id)
            if campaign.state is CampaignState.PENDING:
                return self.reject(campaign_id, by, now_us, why or "withdrawn")
            if not campaign.state.is_active:
                raise InvalidInput(f"campaign {campaign_id} is {campaign.state}: nothing to stop")
            self._stop(campaign, CampaignState.ABORTED, now_us, f"aborted by {by}: {why}")
            return campaign

    def limits(self, campaign_id: int) -> I64 | None:
        """The campaign's limit on each meter now (0: none), while it runs."""
        run = self._runs.get(campaign_id)
        return None if run is None else run.limit

    def get(self, campaign_id: int) -> Campaign:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}")
        return campaign

    # ---- the clock -----------------------------------------------------------------------

    def tick(self, now_us: int) -> None:
        """Move every campaign that is not final on to ``now_us`` (every 5 minutes)."""
        with self.lock:
            for campaign in list(self.campaigns.values()):
                if not campaign.state.is_final:
                    before = (campaign.state, len(campaign.progress), len(campaign.checks))
                    try:
                        self._advance(campaign, now_us)
                    except Exception as exc:  # one campaign's fault stops it, not the system
                        log.exception("campaign %d failed", campaign.campaign_id)
                        if campaign.state.is_active:
                            self._stop(campaign, CampaignState.HALTED, now_us, f"error: {exc}")
                    after = (campaign.state, len(campaign.progress), len(campaign.checks))
                    if after != before:
                        self._save(campaign)

    def _advance(self, campaign: Campaign, now_us: int) -> None:
        spec = campaign.spec
        if campaign.state is CampaignState.PENDING and now_us >= spec.start_us:
            campaign.move(CampaignState.EXPIRED, now_us, "not approved before its start")
        elif campaign.state is CampaignState.APPROVED:
            if now_us >= spec.end_us:
                campaign.move(CampaignState.EXPIRED, now_us, "the period passed")
            elif now_us >= spec.start_us - LEAD_MIN * US_PER_MIN:
                self._begin(campaign, now_us)
        elif campaign.state is CampaignState.RUNNING:
            self._run(campaign, now_us)
        elif campaign.state is CampaignState.RESTORING:
            self._count_commands(campaign)
            if now_us >= spec.end_us + (RESTORE_SPREAD_MIN + 5) * US_PER_MIN:
                self._report(campaign, self._runs.pop(campaign.campaign_id, None), now_us)
                campaign.move(CampaignState.COMPLETED, now_us, "every meter back on its contract")
                self.figures["completed"] += 1

    def _begin(self, campaign: Campaign, now_us: int) -> None:
        spec = campaign.spec
        self.flush()
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, campaign.campaign_id]))
        in_area = self._in_area(spec)
        priority = np.zeros(self.n, bool)
        priority[list(spec.priority_keys)] = True
        candidates = eligible(self.has_switch, self.contract, in_area, priority, spec.floor_a)
        held = rng.random(len(candidates.keys)) < HOLDOUT_SHARE
        forecaster = Forecaster(self.store, self.kwh_per_count, self.n)
        forecast = forecaster.for_period(candidates.keys, spec.start_us, spec.end_us)
        run = CampaignRun(
            Eligible(candidates.keys[~held], candidates.excluded),
            candidates.keys[held],
            np.flatnonzero(in_area & (self.meter_class >= int(MeterClass.HV))).astype(np.int64),
            np.zeros(self.n, np.int64),
            rng.integers(0, RESTORE_SPREAD_MIN + 1, self.n).astype(np.int64),
            forecast.kw,
            np.zeros(self.n, np.int32),
            np.zeros(self.n, np.int64),
            next_progress_us=spec.start_us + STEP,
            next_check_us=spec.start_us + CHECK_AFTER_MIN * US_PER_MIN,
        )
        # rule all chooses households by their forecast: planned over its uncertainty nearly
        # every candidate gives something, and would be limited (docs/control.md)
        run.uncertainty = forecast.uncertainty if spec.rule is Rule.FEW else 0.0
        run.demand_sigma, run.step_sigma = forecast.uncertainty, forecast.step_uncertainty
        run.deferred_kwh = np.zeros((LEVELS, self.n))
        # the floor: the household's highest half hour one forecast error up (its 84th
        # percentile): a household whose essential load is over its cap trips until it locks out
        highest = np.max(
            [run.forecast(t, t + HALF_HOUR) for t in range(spec.start_us, spec.end_us, HALF_HOUR)],
            axis=0,
        )
        run.floor_kw = highest * np.exp(forecast.uncertainty)
        self._runs[campaign.campaign_id] = run
        campaign.excluded = dict(candidates.excluded)
        campaign.candidates, campaign.holdout = len(candidates.keys), int(held.sum())
        basis = self._basis(run, spec.start_us)
        campaign.move(CampaignState.RUNNING, now_us, "planned and sent")
        self._plan_and_send(campaign, run, basis, spec.target_kw, now_us, spec.start_us, 0)
        self._curtail(campaign, run, basis)

    def _run(self, campaign: Campaign, now_us: int) -> None:
        run = self._runs.get(campaign.campaign_id)
        spec = campaign.spec
        if run is None:  # cannot happen after a restart (interrupted), kept for safety
            campaign.move(CampaignState.INTERRUPTED, now_us, "lost its state")
            return
        self._count_commands(campaign)
        halt = self._halt_reason(campaign)
        if halt is not None:
            self._stop(campaign, CampaignState.HALTED, now_us, halt)
            return
        # a step's A3 values arrive within the next step
        while run.next_progress_us <= min(now_us - STEP, spec.end_us):
            self.flush()
            self._progress(campaign, run, run.next_progress_us)
            run.next_progress_us += STEP
        # five minutes after each half hour: the one that ended is checked (once limits ran in
        # it), and the one after next planned with what all the checks say
        check_after = CHECK_AFTER_MIN * US_PER_MIN
        while run.next_check_us <= now_us and run.next_check_us - check_after <= spec.end_us:
            slot_end = run.next_check_us - check_after
            run.next_check_us += HALF_HOUR
            self.flush()
            values = stored_kw(
                self.store,
                self.kwh_per_count,
                self.n,
                Resolution.MIN30,
                slot_end - HALF_HOUR,
                slot_end,
            )
            run.came_level(*values, slot_end, everyone=spec.rule is Rule.FEW)
            if slot_end > spec.start_us:
                correction = self._check(campaign, run, slot_end, *values)
            else:
                correction = combined_correction(run.evidence, MODEL_SD)
            following = slot_end + HALF_HOUR
            if following < spec.end_us and campaign.state is CampaignState.RUNNING:
                index = (following - spec.start_us) // HALF_HOUR
                self._plan_and_send(
                    campaign,
                    run,
                    self._basis(run, following),
                    spec.target_kw / correction,
                    now_us,
                    following,
                    index,
                )
        last_check = spec.end_us + CHECK_AFTER_MIN * US_PER_MIN
        if now_us >= last_check and campaign.state is CampaignState.RUNNING:
            limited = np.flatnonzero(run.half_hours > 0)
            extra = int(run.spread[limited].max(initial=0))
            campaign.restored_by_us = spec.end_us + extra * US_PER_MIN
            campaign.move(CampaignState.RESTORING, now_us, "period over: meters revert")

    # ---- planning and sending ------------------------------------------------------------

    def _basis(self, run: CampaignRun, start_us: int) -> F64:
        """Each household's demand to plan the half hour from ``start_us`` by: its forecast of
        that half hour × how the households left alone came true at the last check
        (``CampaignRun.came_level``); nothing of a household whose last command of the campaign
        failed, was refused or expired (a few in a thousand at 10,000 meters: 2–4 % of the
        target the plans counted on and never got). Evening demand rises through a period, so
        a plan on the period's mean would take too little in its first half hours and too much
        in its last (+15 % by the fourth of a 2 h campaign,
        ``benchmarks/forecast_spread.py``'s households)."""
        basis = run.forecast(start_us, start_us + HALF_HOUR) * run.level
        basis[unreachable((r.meter_key, r.state) for r in self._records(run))] = 0.0
        return basis

    def _plan_and_send(
        self,
        campaign: Campaign,
        run: CampaignRun,
        basis: F64,
        target_kw: float,
        now_us: int,
        start_us: int,
        half_hour: int,
    ) -> None:
        spec = campaign.spec
        # rule few: one order for the whole campaign (a re-plan takes more or fewer of it);
        # rule all with rotation: who gets the lower step is drawn again each half hour
        rotate = spec.rotation and spec.rule is Rule.ALL
        seed = spec.seed * 1_000 + (half_hour if rotate else 0) + campaign.campaign_id
        # a household the plan lets go is eased one step a half hour (its deferred load would
        # come back all at once), and the deferred load of every household limited so far
        # comes back where its cap leaves room (``control.rebound``): the plan's households
        # give the target with what the eased ones still give, less what comes back
        others_kw = 0.0
        usual = run.usual_ratio(start_us)
        for _ in range(3):
            plan = plan_campaign(
                run.candidates,
                basis,
                self.contract,
                max(target_kw - others_kw, 1e-3),
                floor_a=spec.floor_a,
                seed=seed,
                rule=spec.rule,
                floor_kw=run.floor_kw,
                uncertainty=run.uncertainty,
                usual_ratio=usual,
            )
            planned = np.zeros(self.n, np.int64)
            planned[plan.meter_keys] = plan.limit_a
            wanted = self._eased(run.limit, planned)
            rebound, deferred_after = run.rebound_kw(basis, self.contract, wanted, usual)
            gross = run.reduction_kw(basis, self.contract, wanted, usual)
            net_kw = float(gross.sum() - rebound.sum())
            moved = abs(net_kw - plan.planned_kw - others_kw)
            others_kw = net_kw - plan.planned_kw
            if moved < 1e-3 * max(target_kw, 1.0):
                break
        shadow = np.zeros(self.n, np.int64)
        shadow[run.holdout] = plan.limits_for(
            run.holdout, basis, self.contract, seed + 1, run.floor_kw, usual
        )
        shadow = self._eased(run.shadow, shadow)
        changed = np.flatnonzero(wanted != run.limit)
        target = np.where(wanted[changed] > 0, wanted[changed], self.contract[changed])
        minutes = (spec.end_us - start_us) // US_PER_MIN
        for limit in np.unique(target):
            for extra in np.unique(run.spread[changed]):
                keys = changed[(target == limit) & (run.spread[changed] == extra)]
                if len(keys):
                    args = (int(limit), int(minutes + extra), int(start_us // US_PER_MIN))
                    if not self._send(campaign, run, keys, args, now_us):
                        return
        run.limit, run.shadow = wanted, shadow
        run.history.append(InForce(start_us, wanted, shadow, basis, rebound, usual))
        run.deferred_kwh = deferred_after  # the next plan's half hour starts with it
        campaign.planned_kw = net_kw
        campaign.cap_a = plan.cap_a
        short = f", {plan.shortfall_kw:,.0f} kW short" if plan.shortfall_kw > 0 else ""
        campaign.timeline.append(
            (
                now_us,
                f"plan from {_hhmm(start_us)}: {len(plan.meter_keys):,} meters, cap "
                f"{plan.cap_a} A, {plan.planned_kw:,.0f} kW expected{short}",
            )
        )

    def _eased(self, before: I64, wanted: I64) -> I64:
        """``wanted``, with each household it lets go eased one ampere step above its limit
        ``before`` instead (let go only when that step reaches its contract)."""
        leaving = np.flatnonzero((before > 0) & (wanted == 0))
        steps = np.asarray(AMPERE_STEPS_A)
        eased = steps[np.minimum(np.searchsorted(steps, before[leaving], "right"), len(steps) - 1)]
        out = wanted.copy()
        out[leaving] = np.where(eased < self.contract[leaving], eased, 0)
        return out

    def _send(
        self, campaign: Campaign, run: CampaignRun, keys: I64, args: tuple[int, ...], now_us: int
    ) -> bool:
        request = self.gate.submit(
            campaign.actor,
            f"campaign {campaign.campaign_id}: {campaign.spec.reason}",
            CommandKind.SET_AMPERE_LIMIT,
            keys,
            args,
            now_us,
        )
        if request.verdict is Verdict.QUARANTINED and campaign.approved_by is not None:
            request = self.gate.release(request.request_id, campaign.approved_by, now_us)
        campaign.request_ids.append(request.request_id)
        if not request.passes:
            self._stop(campaign, CampaignState.HALTED, now_us, f"the gate: {request.why}")
            return False
        records = issue(self.hes, self.signer, request, now_us)
        run.command_ids += [r.command_id for r in records]
        run.commanded.update(keys.tolist())
        return True

    def _stop(self, campaign: Campaign, state: CampaignState, now_us: int, why: str) -> None:
        """Halt or abort: every meter a command went to gets its contract back now."""
        run = self._runs.pop(campaign.campaign_id, None)
        campaign.why = why
        campaign.move(state, now_us, why)
        self.figures["halted" if state is CampaignState.HALTED else "aborted"] += 1
        if run is None or not run.commanded:
            return
        keys = np.fromiter(sorted(run.commanded), np.int64)
        start = now_us // US_PER_MIN
        for contract in np.unique(self.contract[keys]):
            chosen = keys[self.contract[keys] == contract]
            request = self.gate.submit(
                campaign.actor,
                f"campaign {campaign.campaign_id} rollback: {why}",
                CommandKind.SET_AMPERE_LIMIT,
                chosen,
                (int(contract), 1, int(start)),
                now_us,
            )
            if request.verdict is Verdict.QUARANTINED and campaign.approved_by is not None:
                request = self.gate.release(request.request_id, campaign.approved_by, now_us)
            campaign.request_ids.append(request.request_id)
            if request.passes:  # nothing at risk: never over X1
                run.command_ids += [
                    r.command_id for r in issue(self.hes, self.signer, request, now_us)
                ]
        run.limit[:] = 0
        campaign.restored_by_us = now_us
        campaign.timeline.append((now_us, f"rollback sent to {len(keys):,} meters"))
        self._count_commands(campaign, run)
        self._report(campaign, run, now_us)

    # ---- measuring -----------------------------------------------------------------------

    def _progress(self, campaign: Campaign, run: CampaignRun, at_us: int) -> None:
        _, limits, shadow, _, rebound, usual = run.in_force(at_us)
        slot_start = (at_us - 1) // HALF_HOUR * HALF_HOUR
        forecast = run.forecast(slot_start, slot_start + HALF_HOUR)
        limited = np.flatnonzero(limits > 0)
        # what each limited household is expected to give, net of its deferred load coming back
        gross = run.reduction_kw(forecast, self.contract, limits, usual)
        expected = (gross - rebound)[limited]
        planned = float(expected.sum())
        achieved = None
        sampled = self.realtime[limited]
        reference = run.reference(shadow, self.realtime, everyone=campaign.spec.rule is Rule.FEW)
        if sampled.any() and (run.came_true is not None or len(reference)):
            observed = mean_kw(
                self.store, self.kwh_per_count, self.n, Resolution.MIN5, at_us - STEP, at_us
            )
            # how the limited households' demand is coming true against their forecast: as
            # the last half-hourly check found it (all the held-out ones), before the first
            # the A3 held-out ones (a few dozen in a small fleet)
            came_true = run.came_true
            if came_true is None:
                base = forecast[reference].sum()
                came_true = observed[reference].sum() / base if base > 0 else 1.0
            keys = limited[sampled]
            measured = float((forecast[keys] * came_true - observed[keys]).sum())
            expected_sampled = float(expected[sampled].sum())
            if expected_sampled > 0:
                achieved = measured * planned / expected_sampled
        campaign.progress.append(Progress(at_us, planned, achieved, len(limited)))

    def _check(
        self,
        campaign: Campaign,
        run: CampaignRun,
        slot_end: int,
        observed: F64,
        stored: npt.NDArray[np.bool_],
    ) -> float:
        """Measured ÷ expected reduction of the half hour just ended (see the module doc), from
        its stored 30-min values (``verify.stored_kw``)."""
        slot_start = slot_end - HALF_HOUR
        _, limits, shadow, chosen_by, rebound, usual = run.in_force(slot_end)
        run.half_hours[limits > 0] += 1
        forecast = run.forecast(slot_start, slot_end)
        limited = np.flatnonzero(limits > 0)
        # households whose value has not arrived yet are left out of both sides
        seen = limited[stored[limited]]
        reference = run.reference(shadow, everyone=campaign.spec.rule is Rule.FEW)
        reference = reference[stored[reference]]
        if not len(seen) or not len(reference):
            return combined_correction(run.evidence, MODEL_SD)
        groups = int(np.clip(len(reference) // GROUP_SIZE, 1, 10))
        would, variance = counterfactual_kw(chosen_by, forecast, observed, reference, seen, groups)
        base = float(forecast[seen].sum())
        scale = float(forecast[limited].sum()) / base if base > 0 else 1.0  # to all the limited
        measured = (would - float(observed[seen].sum())) * scale
        variance *= scale**2
        run.came_true = would / base if base > 0 else None
        # against what the plan expected of them (from the forecast it chose them by): the
        # correction rescales that expectation, and one half hour's forecast of a household is
        # too noisy a level to expect from (the reduction is not linear in it)
        expected = float(
            (run.reduction_kw(chosen_by, self.contract, limits, usual) - rebound)[limited].sum()
        )
        if expected > 0:
            run.evidence.append((measured / expected, variance / expected**2))
        correction = float(np.clip(combined_correction(run.evidence, MODEL_SD), 0.5, 2.0))
        campaign.checks.append(Check(slot_end, measured, expected, correction))
        return correction

    def _count_commands(self, campaign: Campaign, run: CampaignRun | None = None) -> None:
        run = run or self._runs.get(campaign.campaign_id)
        if run is None:
            return
        counts: dict[str, int] = {}
        for record in self._records(run):
            counts[record.state.label] = counts.get(record.state.label, 0) + 1
        campaign.commands = counts

    def _records(self, run: CampaignRun) -> Iterator[CommandRecord]:
        """The head-end's records of the campaign's commands, in the order sent."""
        for command_id in run.command_ids:
            try:
                yield self.hes.commands.get(command_id)
            except UnknownCommand:
                continue  # forgotten long after it finished (the book's retention)

    def _halt_reason(self, campaign: Campaign) -> str | None:
        counts = campaign.commands
        failed = sum(
            counts.get(s.label, 0)
            for s in (CommandState.FAILED, CommandState.REJECTED, CommandState.EXPIRED)
        )
        finished = failed + counts.get(CommandState.ACKNOWLEDGED.label, 0)
        if failed >= HALT_MIN_FAILED and failed > HALT_FAILED * finished:
            return f"error spike: {failed:,} of {finished:,} finished commands failed"
        return None

    def _curtail(self, campaign: Campaign, run: CampaignRun, basis: F64) -> None:
        curtailment_requests(campaign, run.hv, run.candidates.keys, basis, CURTAILMENT_LISTED)
        campaign.touched = int((run.limit > 0).sum())

    def _report(self, campaign: Campaign, run: CampaignRun | None, now_us: int) -> None:
        """The fairness report (``control.fairness``), with the HV customers' values."""
        if run is None:
            return
        spec = campaign.spec
        end = min(now_us // HALF_HOUR * HALF_HOUR, spec.end_us)
        basis = run.forecast(spec.start_us, max(end, spec.start_us + HALF_HOUR))
        observed = None
        if len(run.hv) and end > spec.start_us and campaign.checks:
            self.flush()
            observed = mean_kw(
                self.store, self.kwh_per_count, self.n, Resolution.MIN30, spec.start_us, end
            )
        fairness_report(campaign, run.candidates.keys, run.half_hours, run.hv, basis, observed)

    # ---- inside --------------------------------------------------------------------------

    def _in_area(self, spec: CampaignSpec) -> npt.NDArray[np.bool_]:
        in_area = np.ones(self.n, bool) if spec.area is None else self.area == spec.area
        if spec.feeders:
            in_area &= np.isin(self.feeder, list(spec.feeders))
        return in_area

    def _pending(self, campaign_id: int) -> Campaign:
        campaign = self.get(campaign_id)
        if campaign.state is not CampaignState.PENDING:
            raise InvalidInput(f"campaign {campaign_id} is {campaign.state}, not pending")
        return campaign

    def _save(self, campaign: Campaign) -> None:
        self.store.save_control_record(KIND, campaign.campaign_id, campaign.document())


def desk_figures(desk: CampaignDesk) -> list[Figure]:
    """What ``/metrics`` shows of the desk's campaigns (``control.campaign.campaign_figures``)."""
    with desk.lock:
        return campaign_figures(desk.campaigns.values())


def _hhmm(us: int) -> str:
    return from_epoch_us(us).strftime("%H:%M")


__all__ = ["CampaignDesk", "CampaignStore", "desk_figures"]
