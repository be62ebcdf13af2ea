"""Emergency area campaigns (issue 16 items 3–4; SPEC R4, R5, X1, X2): asked for by an operator,
approved (or rejected) by an approver, run by the system's campaign desk, stoppable by either
with a rollback; each one's planned and achieved reduction per 5 minutes."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import BaseModel, Field

from kenshin.control.campaign import Campaign, CampaignSpec, CampaignState
from kenshin.control.desk import CampaignDesk
from kenshin.control.planner import Rule
from kenshin.core.ids import Area
from kenshin.core.timeslots import JST, iso_jst, to_epoch_us
from kenshin.errors import InvalidInput


class CampaignRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="Kept with the campaign.")
    target_mw: float = Field(gt=0, le=10_000, description="The reduction wanted [MW].")
    start: dt.datetime = Field(description="On a half hour; a time without zone is JST.")
    end: dt.datetime = Field(description="On a half hour, 30 min to 6 h after the start.")
    area: str | None = Field(
        None, description="Utility area: code (3) or name (tokyo); default: every meter."
    )
    feeders: list[int] = Field(default_factory=list, max_length=10_000)
    priority_supply_point_ids: list[str] = Field(
        default_factory=list,
        max_length=1_000_000,
        description="The priority register (home medical equipment, hospitals, …): never limited.",
    )
    floor_a: int = Field(10, description="No household's limit under this ampere step.")
    rule: Rule = Field(
        Rule.FEW,
        description="few: a random few households, each at its floor (the plan comes true "
        "best); all: one cap for all, a random share one step lower (each gives a little).",
    )
    rotation: bool = Field(
        True, description="Rule all: who gets the lower step changes every half hour."
    )
    emergency: bool = Field(
        True, description="The approval declares an R4 emergency for the period (lifts X1)."
    )


class Decision(BaseModel):
    why: str = Field(default="", max_length=500, description="Kept with the decision.")


def _iso(us: int | None) -> str | None:
    return None if us is None else str(iso_jst(np.array([us], np.int64))[0])


def _us(when: dt.datetime) -> int:
    return to_epoch_us(when if when.tzinfo is not None else when.replace(tzinfo=JST))


def campaign_view(
    campaign: Campaign, spid_of: Callable[[int], str], detail: bool = True
) -> dict[str, Any]:
    spec = campaign.spec
    achieved = campaign.achieved_kw
    body: dict[str, Any] = {
        "campaign_id": campaign.campaign_id,
        "state": campaign.state.value,
        "actor": campaign.actor,
        "approved_by": campaign.approved_by,
        "reason": spec.reason,
        "why": campaign.why,
        "target_mw": spec.target_kw / 1000,
        "start": _iso(spec.start_us),
        "end": _iso(spec.end_us),
        "area": None if spec.area is None else Area(spec.area).name.lower(),
        "feeders": list(spec.feeders),
        "planned_mw": round(campaign.planned_kw / 1000, 4),
        "achieved_mw": None if achieved is None else round(achieved / 1000, 4),
        "meters_touched": campaign.touched,
        "commands": campaign.commands,
        "restored_by": _iso(campaign.restored_by_us),
    }
    if not detail:
        return body
    return body | {
        "floor_a": spec.floor_a,
        "rule": spec.rule.value,
        "rotation": spec.rotation,
        "emergency": spec.emergency,
        "priority_meters": len(spec.priority_keys),
        "candidates": campaign.candidates,
        "held_out": campaign.holdout,
        "excluded": campaign.excluded,
        "cap_a": campaign.cap_a,
        "per_5min": [
            {
                "at": _iso(p.at_us),
                "planned_kw": round(p.planned_kw, 1),
                "achieved_kw": None if p.achieved_kw is None else round(p.achieved_kw, 1),
                "limited_meters": p.limited,
            }
            for p in campaign.progress
        ],
        "per_half_hour": [
            {
                "end": _iso(c.slot_end_us),
                "measured_kw": round(c.measured_kw, 1),
                "expected_kw": round(c.expected_kw, 1),
                "correction": round(c.correction, 3),
            }
            for c in campaign.checks
        ],
        "curtailment_requests": [
            {"supply_point_id": spid_of(r["meter_key"]), "requested_kw": r["requested_kw"]}
            for r in campaign.curtailment
        ],
        "fairness": campaign.fairness,
        "control_requests": campaign.request_ids,
        "timeline": [{"at": _iso(at), "what": what} for at, what in campaign.timeline],
    }


def campaign_router(
    desk: CampaignDesk,
    now_us: Callable[[], int],
    spid_of: Callable[[int], str],
    key_of: Callable[[str], int],
    lock: threading.Lock | None = None,
) -> APIRouter:
    """``key_of``: a supply point id's meter key (NotFound for an unknown one)."""
    api = APIRouter(tags=["control"])

    def guard() -> AbstractContextManager[Any]:
        return lock if lock is not None else nullcontext()

    @api.post("/campaigns", status_code=201)
    def create(caller: Request, body: CampaignRequest) -> dict[str, Any]:
        """Ask for an emergency area campaign; it waits for an approver."""
        try:
            area = None if body.area is None else int(Area.parse(body.area))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        spec = CampaignSpec(
            reason=body.reason,
            target_kw=body.target_mw * 1000,
            start_us=_us(body.start),
            end_us=_us(body.end),
            area=area,
            feeders=tuple(body.feeders),
            priority_keys=tuple(sorted({key_of(s) for s in body.priority_supply_point_ids})),
            floor_a=body.floor_a,
            rule=body.rule,
            rotation=body.rotation,
            emergency=body.emergency,
        )
        with guard():
            campaign = desk.create(spec, caller.state.principal.name, now_us())
        return campaign_view(campaign, spid_of)

    @api.get("/campaigns")
    def list_campaigns(
        state: str | None = Query(None, description="pending, approved, running, …"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Campaigns, newest first, without their per-5-min rows."""
        wanted = None
        if state is not None:
            try:
                wanted = CampaignState(state)
            except ValueError:
                names = ", ".join(s.value for s in CampaignState)
                raise InvalidInput(f"state must be one of {names}, got {state!r}") from None
        with guard():
            items = [
                c
                for c in sorted(desk.campaigns.values(), key=lambda c: -c.campaign_id)
                if wanted is None or c.state is wanted
            ]
            views = [campaign_view(c, spid_of, detail=False) for c in items[:limit]]
        return {"total": len(items), "items": views}

    @api.get("/campaigns/{campaign_id}")
    def get_campaign(campaign_id: int = Path(ge=1, le=2**62)) -> dict[str, Any]:
        """One campaign: planned vs achieved reduction per 5 minutes, the half-hourly checks,
        its commands by state, HV curtailment requests and the fairness report."""
        with guard():
            return campaign_view(desk.get(campaign_id), spid_of)

    @api.post("/campaigns/{campaign_id}/approve")
    def approve(caller: Request, campaign_id: int = Path(ge=1, le=2**62)) -> dict[str, Any]:
        """The second person: someone other than who asked. With ``emergency`` the two of them
        declare an R4 emergency for the period."""
        with guard():
            campaign = desk.approve(campaign_id, caller.state.principal.name, now_us())
            return campaign_view(campaign, spid_of)

    @api.post("/campaigns/{campaign_id}/reject")
    def reject(
        caller: Request,
        campaign_id: int = Path(ge=1, le=2**62),
        decision: Decision = Body(default_factory=Decision),
    ) -> dict[str, Any]:
        """Turn down a pending campaign; nothing is sent."""
        with guard():
            campaign = desk.reject(campaign_id, caller.state.principal.name, now_us(), decision.why)
            return campaign_view(campaign, spid_of)

    @api.post("/campaigns/{campaign_id}/abort")
    def abort(
        caller: Request,
        campaign_id: int = Path(ge=1, le=2**62),
        decision: Decision = Body(default_factory=Decision),
    ) -> dict[str, Any]:
        """Stop a campaign: every meter it limited gets its contract back at once."""
        with guard():
            campaign = desk.abort(campaign_id, caller.state.principal.name, now_us(), decision.why)
            return campaign_view(campaign, spid_of)

    return api


__all__ = ["campaign_router", "campaign_view"]
