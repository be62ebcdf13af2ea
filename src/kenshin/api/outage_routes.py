"""Outage routes (issue 15 item 4; SPEC R1, R2): the events the outage engine keeps, fleet-wide,
one at a time with its customers and timeline, and per meter."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from fastapi import APIRouter, Path, Query

from kenshin.api.params import MAX_OFFSET, parse_instant
from kenshin.core.timeslots import JST, iso_jst, to_epoch_us
from kenshin.errors import InvalidInput, InvalidPeriod, NotFound
from kenshin.mdms.store import OutageLog, Roster
from kenshin.outage.indices import SUSTAINED_US, interruptions, reliability

LEVELS = ("substation", "feeder", "transformer", "service_drop")
STATES = ("suspected", "confirmed", "restoring", "restored", "withdrawn")
OPEN = ("suspected", "confirmed", "restoring")
GROUPINGS = ("area", "substation", "feeder")
UNTIL_2100_US = 4_102_444_800_000_000
DEFAULT_DAYS = 7


class OutageStore(OutageLog, Roster, Protocol):
    """What the outage routes read."""


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else _iso_us(int(value.timestamp() * 1_000_000))


def _iso_us(us: int) -> str:
    return str(iso_jst(np.array([us], np.int64))[0])


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": row["event_id"],
        "level": row["level"],
        "device": row["device"],
        "state": row["state"],
        "started": _iso(row["started"]),
        "confirmed": _iso(row["confirmed"]),
        "restored": _iso(row["restored"]),
        "confidence": round(float(row["confidence"]), 3),
        "customers": row["customers"],
        "merged_into": row["merged_into"],
        "nested_in": json.loads(row["detail"]).get("nested_in"),
    }


def outage_router(
    store: OutageStore,
    find: Callable[[str], dict[str, Any]],
    now: Callable[[], dt.datetime],
) -> APIRouter:
    router = APIRouter(tags=["outages"])

    def spids(keys: list[int]) -> list[str]:
        roster = store.read_meters()
        by_key = dict(
            zip(
                roster.column("meter_key").to_pylist(),
                roster.column("supply_point_id").to_pylist(),
                strict=True,
            )
        )
        return [by_key[k] for k in keys if k in by_key]

    def group_of(column: str) -> npt.NDArray[np.int64]:
        """Each meter key's area (substation, feeder); -1 for keys not on the roster."""
        roster = store.read_meters()
        keys = roster.column("meter_key").to_numpy().astype(np.int64)
        groups = np.full(int(keys.max(initial=-1)) + 1, -1, np.int64)
        groups[keys] = roster.column(column).to_numpy().astype(np.int64)
        return groups

    @router.get("/outages")
    def list_outages(
        state: str | None = Query(
            None, description="suspected, confirmed, restoring, restored, withdrawn."
        ),
        level: str | None = Query(
            None, description="substation, feeder, transformer, service_drop."
        ),
        device: int | None = Query(None, ge=0, le=2**31 - 1),
        area: int | None = Query(None, ge=0, le=255, description="Events with customers there."),
        start: str | None = Query(
            None, description="Events that started after; default end − 7 days."
        ),
        end: str | None = Query(None, description="… and up to; default now. Open events always."),
        merged: bool = Query(False, description="Also the events folded into a bigger one."),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Outage events, newest first: the device, its state, when it started (dated back to
        the first evidence), was confirmed and restored, customers out."""
        if state is not None and state not in STATES:
            raise InvalidInput(f"state must be one of {', '.join(STATES)}, got {state!r}")
        if level is not None and level not in LEVELS:
            raise InvalidInput(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        end_ts = now() if end is None else parse_instant("end", end, InvalidPeriod)
        start_ts = (
            end_ts - dt.timedelta(days=DEFAULT_DAYS)
            if start is None
            else parse_instant("start", start, InvalidPeriod)
        )
        if end_ts <= start_ts:
            raise InvalidPeriod(f"end ({end_ts.isoformat()}) must be after start")
        rows = store.read_outages(to_epoch_us(start_ts), to_epoch_us(end_ts)).to_pylist()
        rows = [
            r
            for r in rows
            if (merged or r["merged_into"] is None)
            and (state is None or r["state"] == state)
            and (level is None or r["level"] == level)
            and (device is None or r["device"] == device)
        ]
        if area is not None:
            areas = group_of("area")
            rows = [
                r
                for r in rows
                if (areas[np.array(json.loads(r["detail"])["meters"], np.int64)] == area).any()
            ]
        rows.sort(key=lambda r: r["event_id"], reverse=True)
        return {
            "total": len(rows),
            "customers_out": sum(r["customers"] for r in rows if r["state"] in OPEN),
            "offset": offset,
            "limit": limit,
            "items": [_view(r) for r in rows[offset : offset + limit]],
        }

    @router.get("/outages/indices")
    def outage_indices(
        day: str | None = Query(
            None, description="JST day, YYYY-MM-DD; default today.", examples=["2026-06-01"]
        ),
        by: str = Query("area", description="area, substation or feeder."),
    ) -> dict[str, Any]:
        """Reliability indices of a day (the events that started in it), per area (or
        substation, feeder) and in total: customers served and interrupted, customer-minutes,
        SAIFI, SAIDI and CAIDI over sustained interruptions (longer than 5 minutes), momentary
        ones apart. A customer still dark after its device came back counts once, by its nested
        event."""
        if by not in GROUPINGS:
            raise InvalidInput(f"by must be one of {', '.join(GROUPINGS)}, got {by!r}")
        now_ts = now()
        when = now_ts.astimezone(JST).date() if day is None else parse_instant("day", day).date()
        start = dt.datetime.combine(when, dt.time(), JST)
        start_us, end_us = to_epoch_us(start), to_epoch_us(start + dt.timedelta(days=1))
        found = interruptions(
            store.read_outages(start_us - 1, end_us - 1).to_pylist(), to_epoch_us(now_ts)
        )
        groups = group_of(by)
        parts = reliability(found, groups, start_us, end_us)
        whole = reliability(found, np.where(groups >= 0, 0, -1), start_us, end_us)
        return {
            "day": when.isoformat(),
            "by": by,
            "sustained_over_minutes": SUSTAINED_US // 60_000_000,
            "total": whole[0].view() if whole else None,
            "items": [{by: p.group, **p.view()} for p in parts],
        }

    def _all() -> pa.Table:
        return store.read_outages(0, UNTIL_2100_US)

    @router.get("/outages/{event_id}")
    def get_outage(event_id: int = Path(ge=1, le=2**62)) -> dict[str, Any]:
        """One event with its customers (supply point ids) and its timeline."""
        rows = [r for r in _all().to_pylist() if r["event_id"] == event_id]
        if not rows:
            raise NotFound(f"no outage event {event_id}")
        row = rows[0]
        detail = json.loads(row["detail"])
        timeline = [{"at": _iso_us(int(at)), "what": what} for at, what in detail["timeline"]]
        return {**_view(row), "supply_point_ids": spids(detail["meters"]), "timeline": timeline}

    @router.get("/meters/{supply_point_id}/outages")
    def meter_outages(
        supply_point_id: str = Path(description="供給地点特定番号, 22 digits."),
    ) -> dict[str, Any]:
        """The outage events that darkened this meter (the biggest that explains it)."""
        key = int(find(supply_point_id)["meter_key"])
        items = [
            _view(r)
            for r in _all().to_pylist()
            if r["merged_into"] is None and key in json.loads(r["detail"])["meters"]
        ]
        return {"supply_point_id": supply_point_id, "outages": items}

    return router
