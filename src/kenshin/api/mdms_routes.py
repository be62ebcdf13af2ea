"""MDMS routes: the gap list, every version of a reading, manual edits with their audit, and the
specified-meter differences (SPEC S3).

Mounted by :func:`kenshin.api.app.create_app` under ``/api/v1``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from kenshin.api.params import parse_channel, parse_instant, parse_period, parse_resolution
from kenshin.api.views import _scale
from kenshin.core.channels import Channel
from kenshin.core.events import EventCode
from kenshin.core.quality import Quality, Rule, Source
from kenshin.core.timeslots import Resolution, from_epoch_us, iso_jst, to_epoch_us
from kenshin.errors import InvalidInput, InvalidPeriod, PeriodTooLong, ReadOnly
from kenshin.mdms.differences import Term, terms_of
from kenshin.mdms.edits import Edit, edit_readings
from kenshin.mdms.store import ReadingQuery, ServedStore


class Gap(BaseModel):
    channel: int
    resolution_min: int
    interval_end: str
    found_at: str


class Gaps(BaseModel):
    supply_point_id: str
    gaps: list[Gap] = Field(description="Expected slots still missing after VEE: re-read these.")


class EditValue(BaseModel):
    interval_end: str = Field(examples=["2026-04-01T10:30:00+09:00"])
    # the edit's own check (kenshin.mdms.edits): a 32-bit register count
    raw: int = Field(
        ge=-(2**31), le=2**31 - 1, description="The value in register counts (or 0.1 V)."
    )


class EditRequest(BaseModel):
    channel: str = "active_forward"
    resolution: str = "30"
    reason: str = Field(min_length=1, description="Why; kept in the audit (SPEC X4).")
    editor: str | None = Field(
        default=None,
        max_length=200,
        description="Ignored: the edit is recorded as the authenticated caller's (issue 14).",
    )
    values: list[EditValue] = Field(min_length=1, max_length=17_568)


EVENT_DAYS_DEFAULT = 31  # a meter's events: the last month unless asked
EVENT_DAYS_MAX = 366


def check_period(start: dt.datetime, end: dt.datetime, max_days: int) -> None:
    if end <= start:
        raise InvalidPeriod(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    if end - start > dt.timedelta(days=max_days):
        raise PeriodTooLong(f"a period of events is at most {max_days} days")


def rule_names(flags: int) -> list[str]:
    return [r.label for r in Rule if r is not Rule.NONE and flags & r]


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = table.to_pylist()
    for column in table.column_names:
        if pa.types.is_timestamp(table.schema.field(column).type):
            texts = iso_jst(np.asarray(table.column(column).cast(pa.int64()).to_numpy()))
            for row, text in zip(out, texts, strict=True):
                row[column] = text
    return out


def mdms_router(
    store: ServedStore,
    find: Callable[[str], dict[str, Any]],
    now: Callable[[], dt.datetime],
    limits: dict[Resolution, int],
    read_only: bool = False,
) -> APIRouter:
    router = APIRouter()

    @router.get("/meters/{supply_point_id}/gaps", response_model=Gaps, tags=["mdms"])
    def get_gaps(supply_point_id: str = Path(description="供給地点特定番号")) -> dict[str, Any]:
        """Slots VEE expected and could not fill: the re-read list for the head-end."""
        row = find(supply_point_id)
        table = store.read_gaps(int(row["meter_key"]))
        gaps = [
            {
                "channel": g["channel"],
                "resolution_min": g["resolution"],
                "interval_end": g["interval_end"],
                "found_at": g["found_at"],
            }
            for g in _rows(table)
        ]
        return {"supply_point_id": supply_point_id, "gaps": gaps}

    @router.get("/meters/{supply_point_id}/events", tags=["mdms"])
    def get_events(
        supply_point_id: str = Path(description="供給地点特定番号"),
        start: str | None = Query(None, description="Exclusive start; default end − 31 days."),
        end: str | None = Query(None, description="Inclusive end; default now."),
    ) -> dict[str, Any]:
        """What the meter reported happened at it (power fail and restore, switch trips and
        lockouts, tamper, clock steps: SPEC R1–R3), oldest first, by the meter's clock."""
        row = find(supply_point_id)
        end_ts = now() if end is None else parse_instant("end", end, InvalidPeriod)
        start_ts = (
            end_ts - dt.timedelta(days=EVENT_DAYS_DEFAULT)
            if start is None
            else parse_instant("start", start, InvalidPeriod)
        )
        check_period(start_ts, end_ts, EVENT_DAYS_MAX)
        table = store.read_events(to_epoch_us(start_ts), to_epoch_us(end_ts), int(row["meter_key"]))
        events = [
            {
                "occurred": e["occurred"],
                "event": EventCode(e["code"]).label,
                "detail": e["detail"],
                "stored": e["tx_time"],
            }
            for e in _rows(table)
        ]
        return {
            "supply_point_id": supply_point_id,
            "start": start_ts.isoformat(),
            "end": end_ts.isoformat(),
            "events": events,
        }

    @router.get("/meters/{supply_point_id}/readings/versions", tags=["mdms"])
    def get_versions(
        supply_point_id: str,
        start: str = Query(description="Exclusive start (ISO-8601, naive = JST)."),
        end: str | None = Query(None, description="Inclusive end; default start + 1 day."),
        channel: str = "active_forward",
        resolution: str = "30",
    ) -> dict[str, Any]:
        """Every version of each value (SPEC S2): estimates superseded by late data stay here."""
        row = find(supply_point_id)
        chan, res = parse_channel(channel), parse_resolution(resolution)
        start_ts, end_ts = parse_period(start, end, res, limits)
        table = store.read_versions(
            ReadingQuery(
                int(row["meter_key"]), chan, res, to_epoch_us(start_ts), to_epoch_us(end_ts)
            )
        )
        versions = []
        for v in _rows(table):
            versions.append(
                {
                    "interval_end": v["interval_end"],
                    "version": v["version"],
                    "raw": v["value"],
                    "quality": Quality(v["quality"]).label,
                    "source": Source(v["source"]).label,
                    "failed_rules": rule_names(int(v["failed_rule"] or 0)),
                    "version_time": v["tx_time"],
                }
            )
        return {"supply_point_id": supply_point_id, "versions": versions}

    @router.post("/meters/{supply_point_id}/readings/edits", status_code=201, tags=["mdms"])
    def post_edits(supply_point_id: str, request: EditRequest, caller: Request) -> dict[str, Any]:
        """Manual values, stored as new versions (quality edited) with an audit row each.
        Refused (405 ``read_only``) by a server over a read-only store (``kenshin serve``)."""
        if read_only:
            raise ReadOnly(
                "this server serves its store read-only (kenshin serve); edits are made where "
                "the system runs: kenshin up, or kenshin hes --api-port"
            )
        row = find(supply_point_id)
        chan, res = parse_channel(request.channel), parse_resolution(request.resolution)
        edits = []
        for item in request.values:
            moment = parse_instant("interval_end", item.interval_end)
            edits.append(Edit(to_epoch_us(moment), item.raw))
        audit = edit_readings(
            store,
            int(row["meter_key"]),
            chan,
            res,
            edits,
            reason=request.reason,
            editor=caller.state.principal.name,
            now_us=to_epoch_us(now()),
        )
        return {"supply_point_id": supply_point_id, "edits": _rows(audit)}

    @router.get("/meters/{supply_point_id}/readings/edits", tags=["mdms"])
    def get_edits(supply_point_id: str) -> dict[str, Any]:
        """The audit of manual edits: who changed which value, from what, to what, and why."""
        row = find(supply_point_id)
        return {
            "supply_point_id": supply_point_id,
            "edits": _rows(store.read_edits(int(row["meter_key"]))),
        }

    @router.get("/meters/{supply_point_id}/differences", tags=["mdms"])
    def get_differences(
        supply_point_id: str = Path(description="供給地点特定番号 of the parent smart meter"),
        start: str | None = Query(None, description="Exclusive start (ISO-8601, naive = JST)."),
        end: str | None = Query(None, description="Inclusive end; default start + 1 day."),
        as_of: str | None = Query(None, description="What was known at this time."),
    ) -> dict[str, Any]:
        """Specified-meter differences (SPEC S3 差分計量): per 30-min slot, the smart meter's
        value less its specified sub-meters' (EV chargers, PV inverters), with its inputs."""
        row = find(supply_point_id)
        key = int(row["meter_key"])
        terms = terms_of(key, store.read_specified(key))
        diff = Channel.DIFFERENCE_FORWARD
        body: dict[str, Any] = {
            "supply_point_id": supply_point_id,
            "channel": diff.label,
            "unit": diff.unit,
            "resolution_min": 30,
            "formula": " ".join(_term_label(t, i) for i, t in enumerate(terms)) or None,
            "specified_meters": [
                {"device_id": str(t.device_id), "kind": t.kind.label}
                for t in terms
                if t.kind is not None
            ],
            "start": None,
            "end": None,
            "as_of": None,
            "differences": [],
        }
        if not terms:
            # nothing to read, but a malformed or out-of-range period is still the caller's error
            for name, text, error in (
                ("start", start, InvalidPeriod),
                ("end", end, InvalidPeriod),
                ("as_of", as_of, InvalidInput),
            ):
                if text is not None:
                    parse_instant(name, text, error)
            return body

        def newest() -> dt.datetime | None:
            us = store.latest_interval_end(key, diff, Resolution.MIN30)
            return None if us is None else from_epoch_us(us)

        start_ts, end_ts = parse_period(start, end, Resolution.MIN30, limits, newest)
        as_of_ts = None if as_of is None else parse_instant("as_of", as_of)
        body.update(
            start=start_ts.isoformat(),
            end=end_ts.isoformat(),
            as_of=None if as_of_ts is None else as_of_ts.isoformat(),
        )

        def read(meter_key: int, channel: Channel) -> pa.Table:
            return store.read(
                ReadingQuery(
                    meter_key,
                    channel,
                    Resolution.MIN30,
                    to_epoch_us(start_ts),
                    to_epoch_us(end_ts),
                    None if as_of_ts is None else to_epoch_us(as_of_ts),
                )
            )

        inputs = [(t, _values_by_end(read(t.meter_key, t.channel), row)) for t in terms]
        table = read(key, diff)
        scaled = _values_by_end(table, row)
        ends = np.asarray(table.column("interval_end").cast(pa.int64()).to_numpy())
        for end_us, text, version, rules, tx in zip(
            ends.tolist(),
            iso_jst(ends),
            table.column("version").to_pylist(),
            table.column("failed_rule").to_pylist(),
            iso_jst(np.asarray(table.column("tx_time").cast(pa.int64()).to_numpy())),
            strict=True,
        ):
            value, raw, quality = scaled[end_us]
            body["differences"].append(
                {
                    "interval_end": text,
                    "value": value,
                    "raw": raw,
                    "quality": quality,
                    "failed_rules": rule_names(int(rules or 0)),
                    "version": version,
                    "version_time": tx,
                    "inputs": [_input(t, values.get(end_us)) for t, values in inputs],
                }
            )
        return body

    return router


def _term_label(term: Term, index: int) -> str:
    name = term.channel.label if term.kind is None else f"{term.kind.label}:{term.device_id}"
    if index == 0:
        return name
    return f"{'+' if term.sign > 0 else '−'} {name}"


Scaled = tuple[float | None, int | None, str]


def _values_by_end(table: pa.Table, row: dict[str, Any]) -> dict[int, Scaled]:
    """Current values by interval end [µs]: (kWh, raw counts, quality label)."""
    ends = table.column("interval_end").cast(pa.int64()).to_pylist()
    raw = table.column("value").to_pylist()
    counts = np.asarray([0 if r is None else r for r in raw], dtype=np.int64)
    # sub-meters count in their parent's register units (kenshin.core.specified)
    kwh = _scale(counts, Channel.ACTIVE_FORWARD, row).tolist()
    quality = [Quality(q).label for q in table.column("quality").to_pylist()]
    return {
        e: (None if r is None else float(k), r, q)
        for e, r, k, q in zip(ends, raw, kwh, quality, strict=True)
    }


def _input(term: Term, value: Scaled | None) -> dict[str, Any]:
    kwh, raw, quality = value if value is not None else (None, None, Quality.MISSING.label)
    out: dict[str, Any] = (
        {"meter": "main", "channel": term.channel.label}
        if term.kind is None
        else {"meter": "specified", "device_id": str(term.device_id), "kind": term.kind.label}
    )
    out.update(sign=term.sign, value=kwh, raw=raw, quality=quality)
    return out
