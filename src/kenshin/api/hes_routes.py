"""HTTP routes of the head-end: delivery SLOs (A1–A3), commands (R3, M6, A5) and polls (A4).

Present when the API runs in the same process as a head-end (``kenshin up``). Every call takes the
head-end's lock, because the simulation thread drives the same head-end.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from kenshin.api.campaign_routes import campaign_router
from kenshin.api.control_routes import control_router, request_view
from kenshin.api.report_routes import csv_bytes
from kenshin.aroute.authorization import PROTECTED_KINDS
from kenshin.aroute.frames import CommandKind
from kenshin.control.desk import CampaignDesk
from kenshin.control.dispatch import issue
from kenshin.control.gate import ControlGate, Verdict
from kenshin.control.signing import ControlSigner
from kenshin.core.ids import validate_supply_point_id
from kenshin.core.meterspec import MeterClass
from kenshin.core.timeslots import from_epoch_us, to_epoch_us
from kenshin.errors import InvalidInput, UnknownCommand, UnknownMeter
from kenshin.hes.command_rules import U32_MAX, CommandState
from kenshin.hes.command_rules import refusal as command_refusal
from kenshin.hes.commands import CommandRecord
from kenshin.hes.duties import DELAY_EDGES_S
from kenshin.hes.service import HeadEnd
from kenshin.mdms.store import ReadingStore

_KINDS = {kind.name.lower(): kind for kind in CommandKind if kind is not CommandKind.RESEND}
_STATES = {state.label: state for state in CommandState}
MAX_COMMANDS_PAGE = 10_000


class CommandRequest(BaseModel):
    kind: str = Field(
        description="set_ampere_limit, switch_open, switch_close, set_soft_switch or "
        "set_realtime_5min.",
        examples=["set_ampere_limit"],
    )
    value: int | None = Field(
        default=None,
        ge=0,
        le=U32_MAX,  # command arguments are u32 on the wire (kenshin.hes.command_rules)
        description="Ampere limit [A], soft switch minutes (15 or 30), or 1/0 (real-time on/off).",
    )
    idempotency_key: str | None = Field(
        default=None, max_length=200, description="The same key twice gives the same command."
    )
    reason: str | None = Field(
        default=None,
        max_length=500,
        description="Why: required for set_ampere_limit, switch_open and switch_close (kept "
        "with the request the switching gate judges).",
    )


class PollRequestBody(BaseModel):
    supply_point_ids: list[str] = Field(min_length=1, max_length=10_000)


def _iso(us: int | None) -> str | None:
    return None if us is None else from_epoch_us(us).isoformat()


def command_view(record: CommandRecord, spid: str) -> dict[str, Any]:
    return {
        "command_id": record.command_id,
        "supply_point_id": spid,
        "kind": record.kind.name.lower(),
        "args": list(record.args),
        "state": record.state.label,
        "attempts": record.attempts,
        "requested_at": _iso(record.requested_at_us),
        "requested_by": record.requested_by,
        "expires_at": _iso(record.expires_at_us),
        "sent_at": _iso(record.sent_at_us),
        "completed_at": _iso(record.completed_at_us),
        "ack_status": None if record.ack_status is None else record.ack_status.name.lower(),
        "reason": record.reason or None,
    }


def logged_command_view(rows: pa.Table, spid_of: Callable[[int], str]) -> dict[str, Any]:
    """A command the book has forgotten, from the store's command log (``COMMAND_LOG_SCHEMA``,
    oldest first): its last state and every transition."""
    log = rows.to_pylist()
    at = [_iso(v) for v in rows.column("changed_at").cast(pa.int64()).to_pylist()]
    last = log[-1]
    return {
        "command_id": last["command_id"],
        "supply_point_id": spid_of(last["meter_key"]),
        "kind": last["kind"],
        "state": last["to_state"],
        "requested_at": at[0],
        "requested_by": last["requested_by"],
        "completed_at": at[-1],
        "kept_in": "store",
        "log": [
            {"at": when, "from": row["from_state"], "to": row["to_state"], "detail": row["detail"]}
            for when, row in zip(at, log, strict=True)
        ],
    }


def hes_router(
    hes: HeadEnd,
    store: ReadingStore,
    lock: threading.Lock | None = None,
    control: ControlSigner | None = None,
    gate: ControlGate | None = None,
    campaigns: CampaignDesk | None = None,
) -> APIRouter:
    """The head-end's ``/api/v1`` routes (its metrics are served by the app's ``/metrics``);
    with the business system's ``control`` key also the switching gate and its requests, and
    with a campaign desk the emergency area campaigns."""
    api = APIRouter(tags=["head-end"])

    def guard() -> AbstractContextManager[Any]:
        return lock if lock is not None else nullcontext()

    def meter_key(supply_point_id: str) -> int:
        spid = validate_supply_point_id(supply_point_id)
        row = store.find_meter(spid)
        if row is None:
            raise UnknownMeter(f"no meter with supply point id {spid}")
        return int(row["meter_key"])

    @functools.cache
    def roster() -> dict[int, str]:
        """Meter key → supply point id, read once (a poll answers for thousands of meters)."""
        meters = store.read_meters()
        keys = meters.column("meter_key").to_pylist()
        return dict(zip(keys, meters.column("supply_point_id").to_pylist(), strict=True))

    def spid_of(key: int) -> str:
        return roster()[key]

    @api.get("/hes/slo")
    def slo() -> dict[str, Any]:
        """Delivery per duty and JST day: on-time share, delay percentiles, delay histogram."""
        with guard():
            days = hes.slo()
            stats = hes.stats
            body = {
                "delay_bucket_upper_edges_s": [int(e) for e in DELAY_EDGES_S] + [None],
                "days": [
                    {
                        "duty": s.duty.label,
                        "day": s.day.isoformat(),
                        "expected": s.expected,
                        "on_time": s.on_time,
                        "on_time_share": s.on_time_share,
                        "received_late": s.received_late,
                        "never_received": s.never_received,
                        "p50_delay_s": s.p50_delay_s,
                        "p99_delay_s": s.p99_delay_s,
                        "delay_counts": list(s.delay_counts),
                    }
                    for s in days
                ],
                "deadlines_s": {
                    "A1_lv": hes.policy.a1_deadline_lv.total_seconds(),
                    "A1_hv": hes.policy.a1_deadline_hv.total_seconds(),
                    "A2": hes.policy.a2_deadline.total_seconds(),
                    "A3": hes.policy.a3_deadline.total_seconds(),
                },
                "frames": {
                    "accepted": stats.frames_accepted,
                    "redelivered": stats.frames_redelivered,
                    "observed": stats.frames_observed,
                    "rejected": {r.label: n for r, n in stats.frames_rejected.items()},
                },
                "rereads_requested": stats.rereads_requested,
                "meter_events": dict(stats.events),
            }
        return body

    @api.post("/meters/{supply_point_id}/commands", status_code=202)
    def command(
        caller: Request,
        supply_point_id: str = Path(description="22-digit supply point id."),
        request: CommandRequest = Body(),
    ) -> JSONResponse:
        """Queue a command for one meter. Refused at once (HTTP 409, code `command_refused`)
        when the meter cannot do it: e.g. HV meters have no switch, gen-1 ampere limits stop
        at 60 A (SPEC M3, M6, R5)."""
        kind = _KINDS.get(request.kind.lower())
        if kind is None:
            raise InvalidInput(f"unknown command kind {request.kind!r}; one of {sorted(_KINDS)}")
        needs_value = kind in (
            CommandKind.SET_AMPERE_LIMIT,
            CommandKind.SET_SOFT_SWITCH,
            CommandKind.SET_REALTIME_5MIN,
        )
        if needs_value and request.value is None:
            raise InvalidInput(f"{request.kind} needs a value")
        args = (request.value or 0,) if needs_value else ()
        key = meter_key(supply_point_id)
        if kind in PROTECTED_KINDS and (control is None or gate is None):
            message = (
                "this API holds no control key: a disconnect, reconnect or ampere limit must be "
                "signed by the business system (docs/control.md)"
            )
            return JSONResponse(
                {"error": {"code": "command_refused", "message": message}}, status_code=409
            )
        actor = caller.state.principal.name
        with guard():
            now_us = to_epoch_us(hes.clock.now())
            padded = (*args, 0, 0, 0)[:3]
            cannot = command_refusal(hes.commands.meter_specs.spec(key), kind, padded, now_us)
            if kind in PROTECTED_KINDS and control and gate and cannot is None:
                # the switching gate first (thresholds, two-person rule, X1), then the business
                # system signs what passed
                judged = gate.submit(actor, request.reason or "", kind, [key], args, now_us)
                if judged.verdict is Verdict.REFUSED:
                    return JSONResponse(
                        {
                            "error": {"code": "command_refused", "message": judged.why},
                            "control_request": request_view(judged, spid_of),
                        },
                        status_code=409,
                    )
                if not judged.passes:  # held for a second person: nothing is sent yet
                    return JSONResponse(
                        {"control_request": request_view(judged, spid_of)}, status_code=202
                    )
                [record] = issue(hes, control, judged, now_us, request.idempotency_key)
            else:
                record = hes.commands.request(
                    key,
                    kind,
                    args,
                    now_us,
                    requested_by=actor,
                    idempotency_key=request.idempotency_key,
                )
        view = command_view(record, validate_supply_point_id(supply_point_id))
        if record.state is CommandState.REJECTED:
            return JSONResponse(
                {"error": {"code": "command_refused", "message": record.reason}, "command": view},
                status_code=409,
            )
        return JSONResponse(view, status_code=202)

    @api.get("/hes/commands")
    def list_commands(
        state: str | None = Query(
            None, description="requested, queued, sent, acknowledged, rejected, failed, expired."
        ),
        kind: str | None = Query(None, description="set_ampere_limit, switch_open, …"),
        supply_point_id: str | None = Query(None, description="Only this meter's commands."),
        limit: int = Query(100, ge=1, le=MAX_COMMANDS_PAGE),
        format: str = Query("json", description="json or csv."),
    ) -> Response:
        """The fleet's commands, newest first, as the head-end holds them (a finished command is
        kept for the command policy's ``keep_finished``, 24 h by default)."""
        if format not in ("json", "csv"):
            raise InvalidInput(f"format must be json or csv, got {format!r}")
        wanted_state = None if state is None else _STATES.get(state.lower())
        if state is not None and wanted_state is None:
            raise InvalidInput(f"unknown command state {state!r}; one of {sorted(_STATES)}")
        wanted_kind = None if kind is None else _KINDS.get(kind.lower())
        if kind is not None and wanted_kind is None:
            raise InvalidInput(f"unknown command kind {kind!r}; one of {sorted(_KINDS)}")
        key = None if supply_point_id is None else meter_key(supply_point_id)
        with guard():
            records = hes.commands.list(key, wanted_state, limit, wanted_kind)
        items = [command_view(r, spid_of(r.meter_key)) for r in records]
        if format == "csv":
            for item in items:
                item["args"] = " ".join(str(a) for a in item["args"])
            table = pa.Table.from_pylist(items) if items else pa.table({"command_id": []})
            return Response(csv_bytes(table), media_type="text/csv")
        return JSONResponse({"total": len(items), "limit": limit, "items": items})

    @api.get("/hes/commands/{command_id}")
    def get_command(command_id: int = Path(ge=1, le=U32_MAX)) -> dict[str, Any]:
        """A command and where it stands (requested → queued → sent → acknowledged | …)."""
        with guard():
            try:
                record = hes.commands.get(command_id)
            except UnknownCommand:  # forgotten by the book: its log in the store, if any
                logged = store.read_command_log(command_id)
                if not logged.num_rows:
                    raise
                return logged_command_view(logged, spid_of)
        return command_view(record, spid_of(record.meter_key))

    @api.post("/hes/polls", status_code=202)
    def poll(request: PollRequestBody) -> dict[str, Any]:
        """Poll meters for operating state and instantaneous values (SPEC A4)."""
        keys = [meter_key(spid) for spid in request.supply_point_ids]
        with guard():
            batch = hes.polls.request(keys, to_epoch_us(hes.clock.now()))
        return {"poll_id": batch, "meters": len(keys)}

    @api.get("/hes/polls/{poll_id}")
    def poll_result(poll_id: int = Path(ge=1, le=U32_MAX)) -> dict[str, Any]:
        with guard():
            result = hes.polls.result(poll_id)  # NotFound → 404
        s = result.summary
        return {
            "poll_id": poll_id,
            "requested_at": _iso(result.requested_at_us),
            "summary": {
                "requested": s.requested,
                "pending": s.pending,
                "answered": s.answered,
                "timed_out": s.timed_out,
                "p50_round_trip_s": None
                if s.p50_round_trip_us is None
                else s.p50_round_trip_us / 1e6,
                "p99_round_trip_s": None
                if s.p99_round_trip_us is None
                else s.p99_round_trip_us / 1e6,
            },
            "results": [
                {
                    "supply_point_id": spid_of(p.meter_key),
                    "state": p.state.label,
                    "round_trip_s": None if p.round_trip_us is None else p.round_trip_us / 1e6,
                    "response": None
                    if p.response is None
                    else {
                        "measured_at": _iso(p.response.measured_at_us),
                        "state_flags": p.response.state,
                        "ampere_limit_a": p.response.ampere_limit_a,
                        "power_w": p.response.power_w,
                        "current_r_a": p.response.current_r_da / 10,
                        "current_t_a": p.response.current_t_da / 10,
                        # an HV meter measures no supply voltage (IT switches do, SPEC A2 ※2)
                        "voltage_v": None
                        if hes.meter_class[p.meter_key] >= MeterClass.HV
                        else p.response.voltage_dv / 10,
                        "forward_register": p.response.forward_register,
                        "reverse_register": p.response.reverse_register,
                    },
                }
                for p in result.polls
            ],
        }

    if control is not None and gate is not None:
        api.include_router(control_router(hes, gate, control, spid_of, lock))
    if campaigns is not None:

        @functools.cache
        def keys_by_spid() -> dict[str, int]:
            return {spid: key for key, spid in roster().items()}

        def key_of(supply_point_id: str) -> int:
            spid = validate_supply_point_id(supply_point_id)
            if spid not in keys_by_spid():
                raise UnknownMeter(f"no meter with supply point id {spid}")
            return keys_by_spid()[spid]

        def now_us() -> int:
            return to_epoch_us(hes.clock.now())

        api.include_router(campaign_router(campaigns, now_us, spid_of, key_of, lock))
    return api
