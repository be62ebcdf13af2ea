"""The campaign desk (issue 16 items 3–4) over a small wire system: a campaign is asked,
approved by a second person, planned, sent signed through the gate, verified, and every meter
gets its contract back — at the end by itself, or at once on an abort or a halt (rollback).
Refusals are clear and change nothing; the status is kept in the store and outlives the desk."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from kenshin.app.system import WireSystem, build_system
from kenshin.control.campaign import CampaignSpec, CampaignState
from kenshin.control.desk import CampaignDesk
from kenshin.control.gate import ControlGate, ControlLimits
from kenshin.control.signing import ControlSigner
from kenshin.core.ids import Area
from kenshin.core.meterspec import MeterClass
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.errors import Forbidden, InvalidInput, NotFound, StoreError
from kenshin.fleet.simulator import FleetConfig

DAY = dt.date(2026, 1, 14)
MIN = 60_000_000


def at(hour: int, minute: int = 0) -> int:
    return to_epoch_us(dt.datetime.combine(DAY, dt.time(hour, minute), JST))


def _system(meters: int = 400, seed: int = 4, **kwargs: object) -> WireSystem:
    start = dt.datetime.combine(DAY, dt.time(15, 0), JST)
    config = FleetConfig(n_meters=meters, start=start, seed=seed, area=Area.TOKYO)
    system = build_system(config, aroute="wire", background_writer=False, **kwargs)
    assert isinstance(system, WireSystem) and system.campaigns is not None
    return system


def _run_to(system: WireSystem, hour: int, minute: int = 0) -> None:
    system.run(dt.datetime.combine(DAY, dt.time(hour, minute), JST))


def _spec(**changes: object) -> CampaignSpec:
    fields: dict[str, object] = {
        "reason": "supply shortfall",
        "target_kw": 20.0,  # the drill's 50 W a meter
        "start_us": at(17, 30),
        "end_us": at(19, 0),
        "area": int(Area.TOKYO),
        "seed": 1,
    }
    return CampaignSpec(**(fields | changes))  # type: ignore[arg-type]


def _back_to_contract(system: WireSystem, keys: np.ndarray) -> bool:
    meters = system.fleet.meters
    now = meters.limit_in_force(meters.now_us)[keys]
    return bool((now == meters.ampere_limit_a[keys]).all())


def test_a_campaign_runs_and_every_meter_reverts_by_itself() -> None:
    system = _system()
    desk = system.campaigns
    assert desk is not None
    _run_to(system, 17)
    pop = system.fleet.population
    households = np.flatnonzero(np.isin(pop.customer_type, [1, 2]))
    priority = tuple(int(k) for k in households[:20])
    campaign = desk.create(_spec(priority_keys=priority), "op", at(17))
    assert campaign.state is CampaignState.PENDING
    desk.approve(campaign.campaign_id, "boss", at(17))
    assert [e.declared_by for e in desk.gate.emergencies] == [("op", "boss")]  # R4, two people
    seen = np.zeros(len(pop), bool)
    shadowed = np.zeros(len(pop), bool)
    for minute in range(5, 125, 5):  # 17:05 … 19:00
        _run_to(system, 17 + minute // 60, minute % 60)
        limits = desk.limits(campaign.campaign_id)
        if limits is not None:
            seen |= limits > 0
            run = desk._runs[campaign.campaign_id]
            shadowed |= run.shadow > 0
            # the held-out households: the rule's limits kept for them, never sent
            assert not (shadowed & ~np.isin(np.arange(len(pop)), run.holdout)).any()
            assert not (set(run.holdout.tolist()) & run.commanded)
    assert shadowed.any() and not (shadowed & seen).any()
    assert campaign.state is CampaignState.RUNNING
    assert seen.any() and not seen[list(priority)].any()  # the priority register is never limited
    assert not seen[pop.meter_class >= int(MeterClass.HV)].any()  # R5: no switch to limit
    _run_to(system, 19, 15)
    assert campaign.state is CampaignState.COMPLETED
    assert _back_to_contract(system, np.flatnonzero(seen))
    assert campaign.restored_by_us is not None and campaign.restored_by_us <= at(19, 10)
    # per 5 minutes of the period: what the limits in force were expected to give
    assert [p.at_us for p in campaign.progress] == list(range(at(17, 35), at(19, 0) + 1, 5 * MIN))
    assert all(p.planned_kw > 0 for p in campaign.progress)
    assert len(campaign.checks) == 3 and all(c.expected_kw > 0 for c in campaign.checks)
    assert campaign.commands and set(campaign.commands) == {"acknowledged"}
    assert campaign.fairness["households"]["limited"] == int(seen.sum())
    hv = int((pop.meter_class >= int(MeterClass.HV)).sum())
    assert campaign.fairness["hv"]["customers"] == hv == len(campaign.curtailment)
    # the store holds the final state
    [(cid, document)] = system.store.read_control_records("campaign")
    assert cid == campaign.campaign_id and json.loads(document)["state"] == "completed"
    system.close()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reason": " "}, "needs a reason"),
        ({"target_kw": 0.0}, "target must be within"),
        ({"end_us": at(17, 30)}, "ends after it starts"),
        ({"end_us": at(18, 15)}, "starts and ends on a half hour"),
        ({"end_us": at(17, 30) + 390 * MIN}, "lasts 30 to 360 minutes"),
        ({"start_us": at(10), "end_us": at(11)}, "the period is over"),
        ({"floor_a": 12}, "floor must be an ampere step"),
        ({"area": int(Area.KYUSHU)}, "no meter in area"),
        ({"feeders": (10**6,)}, "no meter on those feeders"),
        ({"priority_keys": (10**6,)}, "no meter with key"),
    ],
)
def test_a_campaign_no_one_can_run_is_refused(changes, message) -> None:  # type: ignore[no-untyped-def]
    system = _system(60)
    with pytest.raises((InvalidInput, NotFound), match=message):
        system.campaigns.create(_spec(**changes), "op", at(15))  # type: ignore[union-attr]
    assert system.store.read_control_records("campaign") == []
    system.close()


def test_approval_is_a_second_person_and_pending_ones_expire() -> None:
    system = _system(60)
    desk = system.campaigns
    assert desk is not None
    first = desk.create(_spec(), "op", at(15))
    with pytest.raises(Forbidden, match="someone other than who asked"):
        desk.approve(first.campaign_id, "op", at(15))
    assert first.state is CampaignState.PENDING and not desk.gate.emergencies
    rejected = desk.reject(first.campaign_id, "boss", at(15), "not needed")
    assert rejected.state is CampaignState.REJECTED and "not needed" in rejected.timeline[-1][1]
    with pytest.raises(InvalidInput, match="is rejected, not pending"):
        desk.approve(first.campaign_id, "boss", at(15))
    with pytest.raises(NotFound, match="no campaign 99"):
        desk.abort(99, "boss", at(15), "")
    with pytest.raises(InvalidInput, match="nothing to stop"):
        desk.abort(first.campaign_id, "boss", at(15), "")
    late = desk.create(_spec(start_us=at(15, 30), end_us=at(16, 30)), "op", at(15))
    _run_to(system, 15, 30)
    assert late.state is CampaignState.EXPIRED
    assert system.hes is not None and not system.hes.commands.list(None, None, 10, None)
    system.close()


def test_an_abort_rolls_every_meter_back_at_once() -> None:
    system = _system()
    desk = system.campaigns
    assert desk is not None
    _run_to(system, 17)
    # a target a tenth of the meters meet: the head-end keeps 16 commands in flight per
    # collector, so a rollback's time grows with the meters limited (docs/control.md)
    campaign = desk.create(_spec(target_kw=8.0), "op", at(17))
    desk.approve(campaign.campaign_id, "boss", at(17))
    _run_to(system, 18, 10)  # the 18:05 re-plan queued profiles that start at 18:30
    limits = desk.limits(campaign.campaign_id)
    assert limits is not None and (limits > 0).any()
    limited = np.flatnonzero(limits > 0)
    assert not _back_to_contract(system, limited)
    desk.abort(campaign.campaign_id, "boss", at(18, 10), "supply restored")
    assert campaign.state is CampaignState.ABORTED and desk.limits(campaign.campaign_id) is None
    assert "rollback sent" in campaign.timeline[-1][1]
    _run_to(system, 18, 30)  # the radio loses a frame now and then: retries take minutes
    assert _back_to_contract(system, limited)
    _run_to(system, 18, 45)  # nothing queued before the abort comes back
    assert _back_to_contract(system, limited)
    assert campaign.fairness["households"]["limited"] > 0
    system.close()


def test_meters_that_refuse_the_signature_halt_the_campaign() -> None:
    """A business system whose key the meters do not hold (a forged or wrong key): every limit
    is refused by the meters, the campaign halts on the error spike, and no switch moved."""
    system = _system()
    assert system.hes is not None
    _run_to(system, 17)
    forged = ControlSigner.generate()
    desk = CampaignDesk(
        system.store, system.hes, ControlGate.for_roster(system.meters), forged, system.mdms.flush
    )
    system.campaigns = desk
    campaign = desk.create(_spec(emergency=False), "op", at(17))
    desk.approve(campaign.campaign_id, "boss", at(17))
    _run_to(system, 18)
    assert campaign.state is CampaignState.HALTED and "error spike" in campaign.why
    meters = system.fleet.meters
    assert (meters.limit_in_force(meters.now_us) == meters.ampere_limit_a).all()
    system.close()


def test_the_gate_refusing_a_request_halts_the_campaign() -> None:
    system = _system()
    assert system.hes is not None
    _run_to(system, 17)
    tight = ControlLimits(x1_hour_kw=5.0, x1_ten_minutes_kw=10.0)
    desk = CampaignDesk(
        system.store,
        system.hes,
        ControlGate.for_roster(system.meters, tight),
        system.control,
        system.mdms.flush,
    )
    campaign = desk.create(_spec(emergency=False), "op", at(17))
    desk.approve(campaign.campaign_id, "boss", at(17))
    desk.tick(at(17, 10))
    assert campaign.state is CampaignState.HALTED and campaign.why.startswith("the gate")
    verdicts = [desk.gate.requests[r].verdict.value for r in campaign.request_ids]
    assert "refused" in verdicts
    system.campaigns = desk
    _run_to(system, 17, 50)  # what passed before the refusal was rolled back
    meters = system.fleet.meters
    assert (meters.limit_in_force(meters.now_us) == meters.ampere_limit_a).all()
    system.close()


def test_a_restarted_desk_finds_its_campaigns_and_interrupts_the_running_one() -> None:
    system = _system()
    desk = system.campaigns
    assert desk is not None and system.hes is not None
    _run_to(system, 17)
    running = desk.create(_spec(), "op", at(17))
    desk.approve(running.campaign_id, "boss", at(17))
    waiting = desk.create(_spec(start_us=at(20), end_us=at(21)), "op", at(17))
    _run_to(system, 17, 45)
    assert running.state is CampaignState.RUNNING
    again = CampaignDesk(system.store, system.hes, desk.gate, system.control)
    assert again.get(running.campaign_id).state is CampaignState.INTERRUPTED
    assert again.get(waiting.campaign_id).state is CampaignState.PENDING
    assert again.create(_spec(), "op", at(17, 45)).campaign_id == waiting.campaign_id + 1
    system.close()


def test_a_fault_inside_a_campaign_halts_it_and_the_system_runs_on() -> None:
    system = _system()
    desk = system.campaigns
    assert desk is not None
    _run_to(system, 17)
    campaign = desk.create(_spec(), "op", at(17))
    desk.approve(campaign.campaign_id, "boss", at(17))
    _run_to(system, 17, 45)
    assert campaign.state is CampaignState.RUNNING

    def broken() -> None:
        raise StoreError("the disk is full")

    desk.flush = broken
    _run_to(system, 18, 30)  # the tick that failed did not stop the fleet
    assert campaign.state is CampaignState.HALTED and "the disk is full" in campaign.why
    meters = system.fleet.meters
    assert (meters.limit_in_force(meters.now_us) == meters.ampere_limit_a).all()
    system.close()
