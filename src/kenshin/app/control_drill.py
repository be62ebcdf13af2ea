"""The control drill (issue 16 item 4; SPEC R4, X1): an emergency campaign over a simulated
winter evening peak, run by the same campaign desk as ``POST /api/v1/campaigns`` — through the
switching gate, signed commands, the wire A-route and the meters' limiters — and scored against
the truth.

The fleet runs from 16:30 on Monday 2026-01-05 to 20:30 on Wednesday 2026-01-14: on the direct
path (every value on time, fast) until 16:30 the day before, then on the wire A-route. At 17:30
an operator asks for a campaign of 18:00–20:00 and a director approves it (an R4 emergency, two
people); the desk plans it at 17:40 from each household's forecast (the mean of its 5 like
days — Monday the 12th is a holiday — scaled on the day), sends signed emergency profiles,
checks each half hour and re-plans, and every limited meter reverts by itself after 20:00.
Scored from the truth the simulator knows: per 5 minutes of 18:00–20:00 the
demand the limited households would have drawn minus what they drew (the load model's demand
does not depend on the limits), its mean against the target; trips and lockouts; when the last
meter's limit ended.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from kenshin.app.system import WireSystem, build_system
from kenshin.aroute.authorization import PROTECTED_KINDS
from kenshin.control.campaign import Campaign, CampaignSpec
from kenshin.control.planner import Rule
from kenshin.control.signing import ControlSigner
from kenshin.core.ids import Area
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.errors import InvalidInput
from kenshin.fleet.simulator import FleetConfig

DAY = dt.date(2026, 1, 14)  # a Wednesday; its like days are the 13th and the 6th–9th
START = dt.datetime.combine(dt.date(2026, 1, 5), dt.time(16, 30), JST)
WIRE_FROM = dt.datetime.combine(DAY - dt.timedelta(days=1), dt.time(16, 30), JST)
ASK_AT = dt.datetime.combine(DAY, dt.time(17, 30), JST)
PERIOD = (
    dt.datetime.combine(DAY, dt.time(18, 0), JST),
    dt.datetime.combine(DAY, dt.time(20, 0), JST),
)
END = dt.datetime.combine(DAY, dt.time(20, 30), JST)
PRIORITY_SHARE = 0.01  # households on the priority register (home medical equipment, …)
OPERATOR, DIRECTOR = "duty-operator", "director"


@dataclass
class ControlDrillResult:
    meters: int
    target_kw: float
    campaign: Campaign
    achieved_kw: list[float] = field(default_factory=list)  # per 5-min step of the period
    trips: int = 0
    lockouts: int = 0
    restored_after_s: float | None = None  # last meter's limit ended − period end
    touched: int = 0  # meters limited at some time
    # per checked half hour: the reduction as the campaign measured it and as it was [kW]
    verified: list[tuple[float, float]] = field(default_factory=list)
    priority_touched: int = 0  # households on the priority register that were limited
    # the campaign's requests at the gate by verdict, and the switching commands the head-end
    # holds that no request passing the gate made (X2: must be 0)
    verdicts: dict[str, int] = field(default_factory=dict)
    sent_without_passing: int = 0

    @property
    def mean_kw(self) -> float:
        return float(np.mean(self.achieved_kw)) if self.achieved_kw else 0.0

    @property
    def error(self) -> float:
        return self.mean_kw / self.target_kw - 1.0

    @property
    def commands(self) -> int:
        return sum(self.campaign.commands.values())

    @property
    def failed(self) -> int:
        return self.commands - self.campaign.commands.get("acknowledged", 0)


def run_control_drill(
    target_mw: float, meters: int, seed: int, area: Area = Area.TOKYO, rule: Rule = Rule.FEW
) -> ControlDrillResult:
    if target_mw <= 0:
        raise InvalidInput(f"the target must be positive, got {target_mw} MW")
    config = FleetConfig(n_meters=meters, start=START, seed=seed, area=area)
    system = build_system(
        config,
        aroute="wire",
        background_writer=False,
        control=ControlSigner.generate(),
        direct_until=WIRE_FROM,
    )
    assert isinstance(system, WireSystem) and system.campaigns is not None
    desk, fleet = system.campaigns, system.fleet
    treated = np.zeros(meters, dtype=bool)
    period_us = tuple(to_epoch_us(t) for t in PERIOD)
    achieved: list[float] = []
    original = fleet.limiter.step
    campaign_id = 0

    def watch(start_us, demand_w, pv_w, limit, powered):  # type: ignore[no-untyped-def]
        limits = desk.limits(campaign_id)
        if limits is not None:
            treated[:] |= limits > 0
        served, share, events = original(start_us, demand_w, pv_w, limit, powered)
        if period_us[0] <= start_us < period_us[1]:
            achieved.append(float((demand_w[treated] - served[treated]).sum()) / 1000)
        return served, share, events

    fleet.limiter.step = watch  # type: ignore[method-assign]
    system.run(ASK_AT)
    pop = fleet.population
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x505249]))  # "PRI"
    households = np.isin(pop.customer_type, [1, 2])
    priority = households & (rng.random(meters) < PRIORITY_SHARE)
    now = to_epoch_us(ASK_AT)
    spec = CampaignSpec(
        reason="supply shortfall: avoid rotating outages",
        target_kw=target_mw * 1000,
        start_us=period_us[0],
        end_us=period_us[1],
        area=int(area),
        priority_keys=tuple(np.flatnonzero(priority).tolist()),
        seed=seed,
        rule=rule,
    )
    campaign = desk.create(spec, OPERATOR, now)
    campaign_id = campaign.campaign_id
    desk.approve(campaign_id, DIRECTOR, now)
    system.run(END)
    limited = np.flatnonzero(treated)
    applied = np.maximum(fleet.meters.profile_end_us, fleet.meters.next_end_us)[limited]
    limits_now = fleet.meters.limit_in_force(fleet.meters.now_us)[limited]
    back = bool((limits_now == fleet.meters.ampere_limit_a[limited]).all())
    half_hours = [float(np.mean(achieved[6 * i : 6 * i + 6])) for i in range(len(achieved) // 6)]
    requests = [desk.gate.requests[r] for r in desk.get(campaign_id).request_ids]
    verdicts: dict[str, int] = {}
    for request in requests:
        verdicts[request.verdict.value] = verdicts.get(request.verdict.value, 0) + 1
    assert system.hes is not None
    through_gate = {OPERATOR, f"{OPERATOR}+{DIRECTOR}"}  # what dispatch.issue writes
    switching = [
        r for r in system.hes.commands.list(None, None, 10**7, None) if r.kind in PROTECTED_KINDS
    ]
    result = ControlDrillResult(
        meters,
        target_mw * 1000,
        desk.get(campaign_id),
        achieved,
        fleet.limiter.trips,
        fleet.limiter.lockouts,
        (int(applied.max(initial=period_us[1])) - period_us[1]) / 1e6 if back else None,
        int(treated.sum()),
        [(c.measured_kw, half_hours[i]) for i, c in enumerate(campaign.checks)],
        int((treated & priority).sum()),
        verdicts,
        sum(r.requested_by not in through_gate for r in switching),
    )
    system.close()
    return result
