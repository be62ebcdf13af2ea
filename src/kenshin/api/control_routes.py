"""Switching requests (issue 16 item 2; SPEC X1, X2): what the gate held for a second person,
released or rejected by an approver; released requests are signed and queued here, one command
per meter."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import BaseModel, Field

from kenshin.control.dispatch import issue
from kenshin.control.gate import ControlGate, ControlRequest, Verdict
from kenshin.control.signing import ControlSigner
from kenshin.core.timeslots import iso_jst, to_epoch_us
from kenshin.errors import InvalidInput, NotFound
from kenshin.hes.service import HeadEnd


class Decision(BaseModel):
    why: str = Field(default="", max_length=500, description="Kept with the decision.")


def _iso(us: int | None) -> str | None:
    return None if us is None else str(iso_jst(np.array([us], np.int64))[0])


def request_view(
    request: ControlRequest, spid_of: Callable[[int], str], commands: list[int] | None = None
) -> dict[str, Any]:
    return {
        "request_id": request.request_id,
        "verdict": request.verdict.value,
        "why": request.why,
        "actor": request.actor,
        "reason": request.reason,
        "kind": request.kind.name.lower(),
        "args": list(request.args),
        "meters": len(request.meter_keys),
        "supply_point_ids": [spid_of(int(k)) for k in request.meter_keys[:1000]],
        "at_risk_kw": round(request.at_risk_kw, 3),
        "requested_at": _iso(request.requested_us),
        "decided_by": request.decided_by,
        "decided_at": _iso(request.decided_us),
        "timeline": [{"at": _iso(at), "what": what} for at, what in request.timeline],
        **({"command_ids": commands} if commands is not None else {}),
    }


def control_router(
    hes: HeadEnd,
    gate: ControlGate,
    signer: ControlSigner,
    spid_of: Callable[[int], str],
    lock: threading.Lock | None = None,
) -> APIRouter:
    api = APIRouter(tags=["control"])

    def guard() -> AbstractContextManager[Any]:
        return lock if lock is not None else nullcontext()

    @api.get("/control/requests")
    def list_requests(
        verdict: str | None = Query(
            None, description="accepted, quarantined, released, rejected or refused."
        ),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Switching requests, newest first, with what the gate decided and why."""
        wanted = None
        if verdict is not None:
            try:
                wanted = Verdict(verdict)
            except ValueError:
                names = ", ".join(v.value for v in Verdict)
                raise InvalidInput(f"verdict must be one of {names}, got {verdict!r}") from None
        items = [
            r
            for r in sorted(gate.requests.values(), key=lambda r: -r.request_id)
            if wanted is None or r.verdict is wanted
        ]
        return {"total": len(items), "items": [request_view(r, spid_of) for r in items[:limit]]}

    @api.get("/control/requests/{request_id}")
    def get_request(request_id: int = Path(ge=1, le=2**62)) -> dict[str, Any]:
        """One switching request and its timeline."""
        request = gate.requests.get(request_id)
        if request is None:
            raise NotFound(f"no control request {request_id}")
        return request_view(request, spid_of)

    @api.post("/control/requests/{request_id}/release")
    def release(caller: Request, request_id: int = Path(ge=1, le=2**62)) -> dict[str, Any]:
        """Let a quarantined request go: an approver other than its requester. Its commands are
        signed and queued at once; X1's ten-minute ceiling still holds without a declared
        emergency (then the request is refused)."""
        with guard():
            now_us = to_epoch_us(hes.clock.now())
            request = gate.release(request_id, caller.state.principal.name, now_us)
            records = issue(hes, signer, request, now_us) if request.passes else []
        return request_view(request, spid_of, [r.command_id for r in records])

    @api.post("/control/requests/{request_id}/reject")
    def reject(
        caller: Request,
        request_id: int = Path(ge=1, le=2**62),
        decision: Decision = Body(default_factory=Decision),
    ) -> dict[str, Any]:
        """Stop a quarantined request; nothing is sent."""
        with guard():
            now_us = to_epoch_us(hes.clock.now())
            request = gate.reject(request_id, caller.state.principal.name, now_us, decision.why)
        return request_view(request, spid_of)

    return api
