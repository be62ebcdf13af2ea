"""Fleet-wide report routes: a day's late and missing values, estimated and suspect values, open
gaps, meter events (``/api/v1/reports/{kind}``), and the filters the roster listing shares with
them.

The answers come from :mod:`kenshin.mdms.reports`, over the store contract; JSON is paged, CSV is
the whole report (a download).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from enum import IntEnum
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response

from kenshin.api.params import MAX_OFFSET, parse_channel, parse_instant, parse_resolution
from kenshin.core.codes import parse_code
from kenshin.core.customers import CustomerType
from kenshin.core.ids import Area
from kenshin.core.meterspec import MeterClass
from kenshin.core.timeslots import iso_jst, to_epoch_us
from kenshin.errors import InvalidInput
from kenshin.hes.policy import CollectionPolicy
from kenshin.mdms.reports import (
    REPORT_KINDS,
    Deadlines,
    MeterFilter,
    ReportStore,
    estimated_report,
    events_report,
    gaps_report,
    labelled,
    late_report,
    summary,
)

MAX_PAGE = 10_000


def deadlines_of(policy: CollectionPolicy) -> Deadlines:
    """The head-end's deadlines (SPEC A1–A3) in the reports' terms."""
    return Deadlines(
        a1_lv_s=int(policy.a1_deadline_lv.total_seconds()),
        a1_hv_s=int(policy.a1_deadline_hv.total_seconds()),
        a3_s=int(policy.a3_deadline.total_seconds()),
        a2_s=int(policy.a2_deadline.total_seconds()),
    )


def _code(kind: type[IntEnum], name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(Area.parse(value) if kind is Area else parse_code(kind, value, name))
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from None


def meter_filter(
    area: Annotated[str | None, Query(description="Area code 01–10 or name (tokyo).")] = None,
    substation: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    feeder: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    transformer: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    generation: Annotated[int | None, Query(ge=1, le=2, description="Meter generation.")] = None,
    customer_type: Annotated[
        str | None, Query(description="household_detached, hv_building, … or code 1–7.")
    ] = None,
    meter_class: Annotated[str | None, Query(description="lv_1p3w, hv, … or code 1–5.")] = None,
    sampled_5min: Annotated[bool | None, Query(description="In the A2 5-min sample.")] = None,
    realtime_5min: Annotated[bool | None, Query(description="In the A3 real-time sample.")] = None,
    capability: Annotated[
        str | None,
        Query(
            description="Meters whose generation and class can: switch, ampere_limit, min15, "
            "min5, min1, reactive, voltage, wisun, wifi, ethernet."
        ),
    ] = None,
) -> MeterFilter:
    """The meter filters every fleet-wide route takes (FastAPI dependency)."""
    return MeterFilter(
        area=_code(Area, "area", area),
        substation=substation,
        feeder=feeder,
        transformer=transformer,
        generation=generation,
        customer_type=_code(CustomerType, "customer_type", customer_type),
        meter_class=_code(MeterClass, "meter_class", meter_class),
        sampled_5min=sampled_5min,
        realtime_5min=realtime_5min,
        capability=capability,
    )


def parse_report_day(text: str) -> dt.date:
    return parse_instant("day", text).date()


def report_table(
    store: ReportStore,
    kind: str,
    day: dt.date,
    *,
    now_us: int,
    channel: str = "active_forward",
    resolution: str = "30",
    meters: MeterFilter | None = None,
    deadlines: Deadlines | None = None,
) -> pa.Table:
    """One report, coded (``kenshin.mdms.reports``): the API's and the CLI's one entry."""
    chan, res = parse_channel(channel), parse_resolution(resolution)
    if kind == "late":
        return late_report(
            store,
            day,
            now_us=now_us,
            channel=chan,
            resolution=res,
            meters=meters,
            deadlines=deadlines,
        )
    if kind == "estimated":
        return estimated_report(store, day, channel=chan, resolution=res, meters=meters)
    if kind == "gaps":
        return gaps_report(store, day, channel=chan, resolution=res, meters=meters)
    if kind == "events":
        return events_report(store, day, meters=meters)
    raise InvalidInput(f"no report {kind!r}; reports: {', '.join(REPORT_KINDS)}")


def plain(table: pa.Table) -> pa.Table:
    """Timestamps as ISO-8601 JST text (``+09:00``), for JSON and CSV alike."""
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            column = table.column(index)
            us = pc.fill_null(column.cast(pa.int64()), 0).to_numpy(False)
            texts: list[str | None] = list(iso_jst(np.asarray(us, np.int64)))
            if column.null_count:
                valid = column.is_valid().to_numpy(False)
                texts = [t if ok else None for t, ok in zip(texts, valid, strict=True)]
            table = table.set_column(index, field.name, pa.array(texts, pa.string()))
    return table


def csv_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(plain(table), sink, pacsv.WriteOptions(quoting_style="needed"))
    return sink.getvalue()


def report_router(
    store: ReportStore, now: Callable[[], dt.datetime], deadlines: Deadlines
) -> APIRouter:
    router = APIRouter()

    @router.get("/reports/{kind}", tags=["reports"])
    def get_report(
        kind: str = Path(description="late, estimated, gaps or events."),
        day: str = Query(description="JST day, YYYY-MM-DD.", examples=["2026-04-01"]),
        channel: str = "active_forward",
        resolution: str = "30",
        meters: MeterFilter = Depends(meter_filter),
        format: str = Query("json", description="json (paged) or csv (the whole report)."),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
        limit: int = Query(1000, ge=1, le=MAX_PAGE),
    ) -> Response:
        """A day's fleet-wide answer, by meter and slot. **late**: values that arrived after
        their deadline (A1: LV 60 min, HV 30 min; A3 10 min; A2 3 days) and, once the deadline
        has passed, values that never arrived (``state`` missing). **estimated**: current values
        that are estimated (with the method), suspect (with the rules), missing placeholders or
        manual edits. **gaps**: slots VEE could not fill, still to re-read. **events**: what
        meters reported happened that day (power fail and restore, switch trips and lockouts,
        tamper, clock steps), by meter and time; channel and resolution do not apply."""
        if format not in ("json", "csv"):
            raise InvalidInput(f"format must be json or csv, got {format!r}")
        when = parse_report_day(day)
        table = report_table(
            store,
            kind,
            when,
            now_us=to_epoch_us(now()),
            channel=channel,
            resolution=resolution,
            meters=meters,
            deadlines=deadlines,
        )
        if format == "csv":
            return Response(
                csv_bytes(labelled(kind, table)),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{kind}-{when}.csv"'},
            )
        page = labelled(kind, table.slice(offset, limit))
        return JSONResponse(
            {
                "report": kind,
                "day": when.isoformat(),
                "channel": parse_channel(channel).label,
                "resolution_min": int(parse_resolution(resolution)),
                "summary": summary(kind, table),
                "total": table.num_rows,
                "offset": offset,
                "limit": limit,
                "items": plain(page).to_pylist(),
            }
        )

    return router
