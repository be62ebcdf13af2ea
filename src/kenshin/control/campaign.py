"""An emergency area campaign as a record (issue 16 items 3–4; SPEC R4, R5, X1, X2): what was
asked, by whom, who approved it, where it stands, what it planned and achieved per 5 minutes,
and the curtailment requests its HV customers got. :mod:`kenshin.control.desk` runs it; the store
keeps each campaign as one JSON document (``ControlBook``), so its status outlives the process.

Lifecycle::

    pending ─approve─▶ approved ─(lead before start)─▶ running ─(end)─▶ restoring ─▶ completed
       │ reject / start passes      │ abort                 │ abort / error spike
       ▼                            ▼                       ▼
    rejected / expired           aborted                 aborted / halted (rollback)

A campaign running when the system stops is ``interrupted`` when it starts again: its limits are
emergency profiles that end by themselves at the period's end, so no meter stays limited.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from kenshin.control.planner import Rule
from kenshin.core.customers import AMPERE_STEPS_A
from kenshin.errors import InvalidInput

US_PER_MIN = 60_000_000
MAX_PERIOD_MIN = 6 * 60  # an emergency evening, not a season: longer needs a new campaign
LEAD_MIN = 20  # planned and sent this long before the start (profiles start on time)
RESTORE_SPREAD_MIN = 5  # each meter reverts within this many minutes after the period
KIND = "campaign"  # its kind in the store's control records


class CampaignState(StrEnum):
    PENDING = "pending"  # waits for a second person
    APPROVED = "approved"  # planned and sent LEAD_MIN before its start
    RUNNING = "running"
    RESTORING = "restoring"  # the period ended: every meter reverts by itself
    COMPLETED = "completed"
    ABORTED = "aborted"  # stopped by a person: every meter sent back at once
    HALTED = "halted"  # stopped by itself (error spike, refusal): every meter sent back
    REJECTED = "rejected"  # not approved
    EXPIRED = "expired"  # not approved before its start
    INTERRUPTED = "interrupted"  # the system stopped while it ran (the profiles still end)

    @property
    def is_final(self) -> bool:
        return self not in (
            CampaignState.PENDING,
            CampaignState.APPROVED,
            CampaignState.RUNNING,
            CampaignState.RESTORING,
        )

    @property
    def is_active(self) -> bool:
        """Meters may be limited on its behalf (or about to be)."""
        return self in (CampaignState.APPROVED, CampaignState.RUNNING)


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """What is asked: an area (or feeders of it), a reduction, a period, exclusions and the
    fairness rules."""

    reason: str
    target_kw: float
    start_us: int
    end_us: int
    area: int | None = None  # the utility area code; None: the whole roster
    feeders: tuple[int, ...] = ()  # only these feeders (of the area)
    priority_keys: tuple[int, ...] = ()  # the priority register: never limited
    floor_a: int = 10  # no household's limit under this (nor under its essential load)
    rule: Rule = Rule.FEW  # how the reduction is shared out (control.planner)
    rotation: bool = True  # rule ``all``: who gets the lower step changes every half hour
    emergency: bool = True  # the approval declares an R4 emergency for the period (X1)
    seed: int = 0

    def check(self, now_us: int) -> None:
        """Refuse a spec no campaign can run, with the reason."""
        if not self.reason.strip():
            raise InvalidInput("a campaign needs a reason")
        if not 0 < self.target_kw <= 10_000_000:
            raise InvalidInput(f"the target must be within 0 and 10 GW, got {self.target_kw} kW")
        if self.end_us <= self.start_us:
            raise InvalidInput("a campaign ends after it starts")
        minutes = (self.end_us - self.start_us) / US_PER_MIN
        if minutes > MAX_PERIOD_MIN or minutes < 30:
            raise InvalidInput(f"a campaign lasts 30 to {MAX_PERIOD_MIN} minutes, not {minutes:g}")
        if self.start_us % (30 * US_PER_MIN) or self.end_us % (30 * US_PER_MIN):
            raise InvalidInput("a campaign starts and ends on a half hour (:00 or :30)")
        if self.end_us <= now_us:
            raise InvalidInput("the period is over")
        if self.floor_a not in AMPERE_STEPS_A:
            raise InvalidInput(f"the floor must be an ampere step {AMPERE_STEPS_A}")


@dataclass(slots=True)
class Progress:
    """One 5-minute step of the period: what the limits in force were expected to take off
    [kW], and what the A3 real-time sample says they took (None until its values are in, or
    without limited A3 meters)."""

    at_us: int  # the step's end
    planned_kw: float
    achieved_kw: float | None
    limited: int  # meters under a campaign limit


@dataclass(slots=True)
class Check:
    """A half hour verified from the 30-min values: the limited households against the
    held-out ones, each against its forecast."""

    slot_end_us: int
    measured_kw: float
    expected_kw: float
    correction: float  # what the next plan is scaled by


@dataclass(slots=True)
class Campaign:
    campaign_id: int
    actor: str
    spec: CampaignSpec
    state: CampaignState
    created_us: int
    approved_by: str | None = None
    why: str = ""  # of the last decision (refusal, halt, abort)
    timeline: list[tuple[int, str]] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    holdout: int = 0
    planned_kw: float = 0.0  # of the latest plan
    cap_a: int | None = None  # the latest plan's rule
    progress: list[Progress] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    request_ids: list[int] = field(default_factory=list)
    commands: dict[str, int] = field(default_factory=dict)  # by state
    touched: int = 0  # households limited at some time
    restored_by_us: int | None = None  # when the last meter's limit ended
    curtailment: list[dict[str, Any]] = field(default_factory=list)  # HV requests (R5)
    fairness: dict[str, Any] = field(default_factory=dict)

    def move(self, state: CampaignState, now_us: int, what: str) -> None:
        self.state = state
        self.timeline.append((now_us, what))

    @property
    def achieved_kw(self) -> float | None:
        """The mean of the 5-minute achieved reductions so far."""
        values = [p.achieved_kw for p in self.progress if p.achieved_kw is not None]
        return sum(values) / len(values) if values else None

    def document(self) -> str:
        body = asdict(self)
        body["spec"]["feeders"] = list(self.spec.feeders)
        body["spec"]["priority_keys"] = list(self.spec.priority_keys)
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_document(cls, document: str) -> Campaign:
        body = json.loads(document)
        spec = body.pop("spec")
        spec["feeders"] = tuple(spec["feeders"])
        spec["priority_keys"] = tuple(spec["priority_keys"])
        spec["rule"] = Rule(spec.get("rule", Rule.ALL))  # before the rule was asked: all
        body["state"] = CampaignState(body["state"])
        body["timeline"] = [tuple(t) for t in body["timeline"]]
        body["progress"] = [Progress(**p) for p in body["progress"]]
        body["checks"] = [Check(**c) for c in body["checks"]]
        return cls(spec=CampaignSpec(**spec), **body)


Figure = tuple[str, str, str, tuple[str, ...], dict[tuple[str, ...], float]]


def campaign_figures(campaigns: Iterable[Campaign]) -> list[Figure]:
    """What ``/metrics`` shows of the campaigns, as (name, kind, help, label names, values):
    campaigns by state, and the target, planned and latest achieved reduction of those running
    (summed: a label per campaign would grow without bound)."""
    by: dict[tuple[str, ...], float] = {(s.value,): 0.0 for s in CampaignState}
    target = planned = achieved = 0.0
    for campaign in campaigns:
        by[(campaign.state.value,)] += 1
        if campaign.state is CampaignState.RUNNING:
            target += campaign.spec.target_kw
            planned += campaign.planned_kw
            latest = [p.achieved_kw for p in campaign.progress if p.achieved_kw is not None]
            achieved += latest[-1] if latest else 0.0
    return [
        ("kenshin_campaigns", "gauge", "Emergency area campaigns, by state", ("state",), by),
        (
            "kenshin_campaign_reduction_kw",
            "gauge",
            "Running campaigns' target, planned and latest achieved (A3) reduction",
            ("kind",),
            {("target",): target, ("planned",): planned, ("achieved",): achieved},
        ),
    ]


__all__ = [
    "KIND",
    "LEAD_MIN",
    "RESTORE_SPREAD_MIN",
    "Campaign",
    "CampaignSpec",
    "CampaignState",
    "Check",
    "Figure",
    "Progress",
    "campaign_figures",
]
