"""Fleet-wide answers for one JST day: late and missing values, estimated and suspect values,
open gaps, meter events (issue 13; SPEC A1–A3 deadlines, M5 estimates, S2 versions, R1–R3).

Written once over the store contract (:class:`~kenshin.mdms.store.SweepSource`,
:class:`~kenshin.mdms.store.GapBook`, :class:`~kenshin.mdms.store.Roster`), so every backend
answers the same; the API (``/api/v1/reports/…``) and the CLI (``kenshin report …``) both call
it. Each report is one Arrow table of coded columns plus ``supply_point_id``; labels are the
caller's concern (:func:`labelled`).

*Late* is judged from what the store holds, not from a head-end's memory, so it is the same
whichever worker stored a value and after any restart: a cell's first measured version (push,
re-read or poll) is its arrival, and it is late when that transaction time is past the slot end
plus the deadline. A cell expected and with no measured version at all is *missing* once its
deadline has passed (before that it is still on its way and not reported).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kenshin.core.channels import Channel
from kenshin.core.meterspec import BRouteMedium, Generation, MeterClass, MeterSpec, meter_spec
from kenshin.core.quality import Quality
from kenshin.core.schema import TIMESTAMP
from kenshin.core.timeslots import Resolution
from kenshin.errors import InvalidInput
from kenshin.mdms import versions
from kenshin.mdms.labels import (
    EVENT_NAMES,
    METHOD_NAMES,
    QUALITY_NAMES,
    SOURCE_NAMES,
    method_codes,
    named,
    rule_text,
)
from kenshin.mdms.store import EventLog, GapBook, Roster, SweepSource
from kenshin.mdms.sweep import day_window

REPORT_KINDS = ("late", "estimated", "gaps", "events")
NO_TIME = np.iinfo(np.int64).max


class ReportStore(Roster, SweepSource, GapBook, EventLog, Protocol):
    """What the reports read."""


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Seconds after a slot's end by which its value is due (SPEC A1–A3). The head-end's
    :class:`~kenshin.hes.policy.CollectionPolicy` holds the utility's values; the composition
    root passes them (the MDMS does not import the head-end)."""

    a1_lv_s: int = 3600  # A1: LV 30-min values within 60 min
    a1_hv_s: int = 1800  # A1: HV within 30 min
    a3_s: int = 600  # A3: real-time 5-min values within 10 min
    a2_s: int = 3 * 86400  # A2: other 5-min values within a few days

    def of(self, roster: pa.Table, resolution: Resolution) -> npt.NDArray[np.int64]:
        """Each roster meter's deadline [s] for values of ``resolution``."""
        if resolution is Resolution.MIN5:
            realtime = np.asarray(roster.column("realtime_5min").to_numpy(False), bool)
            return np.where(realtime, self.a3_s, self.a2_s).astype(np.int64)
        hv = np.asarray(roster.column("meter_class").to_numpy(False)) >= int(MeterClass.HV)
        return np.where(hv, self.a1_hv_s, self.a1_lv_s).astype(np.int64)


# what a meter can do, from its generation and class (SPEC M1–M7): the roster filter's names
CAPABILITIES: dict[str, Callable[[MeterSpec], bool]] = {
    "switch": lambda s: s.has_switch,  # remote open/close (M6)
    "ampere_limit": lambda s: s.max_ampere_limit_a is not None,  # remote ampere limit (R3)
    "min15": lambda s: Resolution.MIN15 in s.channels,  # 15-min values (A5)
    "min5": lambda s: Resolution.MIN5 in s.channels,  # 5-min values (A2, A3)
    "min1": lambda s: Resolution.MIN1 in s.channels,
    "reactive": lambda s: s.records(Channel.REACTIVE, Resolution.MIN5),
    "voltage": lambda s: s.records(Channel.VOLTAGE, Resolution.MIN5),
    "wisun": lambda s: BRouteMedium.WISUN in s.broute_media,  # B-route media (B1, B2)
    "wifi": lambda s: BRouteMedium.WIFI in s.broute_media,
    "ethernet": lambda s: BRouteMedium.ETHERNET in s.broute_media,
}


def _capable(roster: pa.Table, test: Callable[[MeterSpec], bool]) -> pa.ChunkedArray:
    """Each roster row's answer to ``test`` of its (generation, class) spec: one spec per
    pair, then a lookup by code."""
    codes = pc.add(
        pc.multiply(roster.column("generation").cast(pa.int16()), 8),
        roster.column("meter_class").cast(pa.int16()),
    )
    able = [int(g) * 8 + int(c) for g in Generation for c in MeterClass if test(meter_spec(g, c))]
    return pc.is_in(codes, pa.array(able, pa.int16()))


@dataclass(frozen=True, slots=True)
class MeterFilter:
    """Which meters a report (or the roster listing) covers; None is "any"."""

    area: int | None = None
    substation: int | None = None
    feeder: int | None = None
    transformer: int | None = None
    generation: int | None = None
    customer_type: int | None = None
    meter_class: int | None = None
    sampled_5min: bool | None = None  # A2 sample
    realtime_5min: bool | None = None  # A3 sample
    capability: str | None = None  # one of CAPABILITIES: what the meter's spec can do

    def __post_init__(self) -> None:
        if self.capability is not None and self.capability not in CAPABILITIES:
            raise InvalidInput(
                f"unknown capability {self.capability!r}; one of {', '.join(CAPABILITIES)}"
            )

    def apply(self, roster: pa.Table) -> pa.Table:
        mask = None
        for field in dataclasses.fields(self):
            wanted = getattr(self, field.name)
            if wanted is None:
                continue
            if field.name == "capability":
                test = _capable(roster, CAPABILITIES[wanted])
            else:
                test = pc.equal(roster.column(field.name), pa.scalar(wanted))
            mask = test if mask is None else pc.and_(mask, test)
        return roster if mask is None else roster.filter(mask)

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in dataclasses.fields(self))


def expected_meters(roster: pa.Table, resolution: Resolution, rows: pa.Table) -> pa.Table:
    """The roster meters expected to deliver ``resolution`` values: every meter at 30 min
    (A1), the A2 sample at 5 min, and at 15 or 1 min (sent only where switched on: A5, HV
    voltage) the meters that delivered any such value that day."""
    if resolution is Resolution.MIN30:
        return roster
    if resolution is Resolution.MIN5:
        return roster.filter(roster.column("sampled_5min"))
    present = np.unique(np.asarray(rows.column("meter_key").to_numpy(), np.int32))
    return roster.filter(pc.is_in(roster.column("meter_key"), pa.array(present, pa.int32())))


LATE_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("supply_point_id", pa.string()),
        ("interval_end", TIMESTAMP),
        ("late", pa.bool_()),  # False: missing (nothing measured arrived)
        ("arrived", TIMESTAMP),  # the first measured version's transaction time
        ("delay_s", pa.int64()),  # arrival − slot end
        ("deadline_s", pa.int64()),
        ("source", pa.uint8()),  # how it arrived (Source), null when missing
        ("quality", pa.uint8()),  # the current version's quality, null when nothing stored
    ]
)

ESTIMATED_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("supply_point_id", pa.string()),
        ("interval_end", TIMESTAMP),
        ("value", pa.int32()),
        ("quality", pa.uint8()),
        ("source", pa.uint8()),
        ("method", pa.uint8()),
        ("failed_rule", pa.uint16()),
        ("tx_time", TIMESTAMP),
    ]
)

GAPS_REPORT_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("supply_point_id", pa.string()),
        ("interval_end", TIMESTAMP),
        ("found_at", TIMESTAMP),
    ]
)

EVENTS_REPORT_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("supply_point_id", pa.string()),
        ("occurred", TIMESTAMP),  # the meter's clock
        ("code", pa.uint8()),
        ("detail", pa.int32()),
        ("tx_time", TIMESTAMP),  # when the system stored it
    ]
)

# current qualities the estimated report lists: what a settlement user must not take as read
FLAGGED_QUALITIES = (Quality.ESTIMATED, Quality.SUSPECT, Quality.MISSING, Quality.EDITED)


def _us(table: pa.Table, column: str) -> npt.NDArray[np.int64]:
    return np.asarray(table.column(column).cast(pa.int64()).to_numpy(False), np.int64)


def _slot_index(ends: npt.NDArray[np.int64], start_us: int, step_us: int) -> npt.NDArray[np.int64]:
    # an end off the grid belongs to the slot it falls in (ceil), as VEE files it
    return -(-(ends - start_us) // step_us) - 1


def _positions(keys: npt.NDArray[np.int64], meter: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Each ``meter``'s position in the sorted ``keys``, -1 where it is not among them; by a
    lookup table when the keys are dense (a roster's are), else by binary search."""
    if len(keys) == 0 or len(meter) == 0:
        return np.full(len(meter), -1, np.int64)
    low, high = int(keys[0]), int(keys[-1])
    if high - low == len(keys) - 1:  # keys low … high without a hole: an offset
        inside = (meter >= low) & (meter <= high)
        return np.where(inside, meter - low, -1)
    if high - low <= 4 * len(keys) + 1024:
        table = np.full(high - low + 1, -1, np.int64)
        table[keys - low] = np.arange(len(keys))
        inside = (meter >= low) & (meter <= high)
        out = np.full(len(meter), -1, np.int64)
        out[inside] = table[meter[inside] - low]
        return out
    place = np.minimum(np.searchsorted(keys, meter), len(keys) - 1)
    return np.where(keys[place] == meter, place, -1)


def late_report(
    store: ReportStore,
    day: dt.date,
    *,
    now_us: int,
    channel: Channel = Channel.ACTIVE_FORWARD,
    resolution: Resolution = Resolution.MIN30,
    meters: MeterFilter | None = None,
    deadlines: Deadlines | None = None,
) -> pa.Table:
    """Cells of ``day`` whose value arrived after its deadline or, with the deadline passed
    by ``now_us``, has not arrived (``LATE_SCHEMA``), by meter and slot."""
    deadlines = deadlines or Deadlines()
    start, end = day_window(day)
    rows = store.read_window_versions(channel, resolution, start, end)
    roster = expected_meters((meters or MeterFilter()).apply(store.read_meters()), resolution, rows)
    keys = np.asarray(roster.column("meter_key").to_numpy(False), np.int64)
    spd, step = resolution.slots_per_day, resolution.microseconds
    n_cells = len(keys) * spd
    first_tx = np.full(n_cells, NO_TIME, np.int64)
    first_src = np.zeros(n_cells, np.uint8)
    current_q = np.full(n_cells, 255, np.uint8)  # 255: nothing stored
    if rows.num_rows and len(keys):
        place = _positions(keys, np.asarray(rows.column("meter_key").to_numpy(), np.int64))
        cell = place * spd + _slot_index(_us(rows, "interval_end"), start, step)
        ours = place >= 0
        tx = _us(rows, "tx_time")
        source = np.asarray(rows.column("source").to_numpy(False), np.uint8)
        # the first measured version of each cell: its arrival (of several at that instant,
        # the one stored last says how)
        counted = ours & versions.is_measured(source)
        if counted.all():  # the usual day: every row is ours and from the meters
            np.minimum.at(first_tx, cell, tx)
            at_first = np.flatnonzero(tx == first_tx[cell])
        else:
            measured = np.flatnonzero(counted)
            m_cell = cell[measured]
            np.minimum.at(first_tx, m_cell, tx[measured])
            at_first = measured[tx[measured] == first_tx[m_cell]]
        first_src[cell[at_first]] = source[at_first]
    slot_end = start + (np.arange(spd, dtype=np.int64) + 1) * step
    cell_end = np.tile(slot_end, len(keys))
    deadline_s = np.repeat(deadlines.of(roster, resolution), spd)
    due = cell_end + deadline_s * 1_000_000
    arrived = first_tx != NO_TIME
    late = arrived & (first_tx > due)
    missing = ~arrived & (due <= now_us)
    pick = np.flatnonzero(late | missing)
    if rows.num_rows and len(pick):
        # the current version's quality of the cells reported: what stands there now (the
        # rule applied to those cells' rows only, a small part of the day)
        wanted = np.zeros(n_cells, bool)
        wanted[pick] = True
        sub = rows.filter(pa.array(ours & wanted[np.where(ours, cell, 0)]))
        current = sub.take(pa.array(versions.current_indices(sub, step)))
        c_place = _positions(keys, np.asarray(current.column("meter_key").to_numpy(), np.int64))
        c_cell = c_place * spd + _slot_index(_us(current, "interval_end"), start, step)
        current_q[c_cell] = np.asarray(current.column("quality").to_numpy(False), np.uint8)
    place = pick // spd
    spid = roster.column("supply_point_id").take(pa.array(place))
    return pa.table(
        {
            "meter_key": pa.array(keys[place].astype(np.int32)),
            "supply_point_id": spid,
            "interval_end": pa.array(cell_end[pick]).cast(TIMESTAMP),
            "late": pa.array(late[pick]),
            "arrived": pa.array(first_tx[pick], mask=~arrived[pick]).cast(TIMESTAMP),
            "delay_s": pa.array(
                (first_tx[pick] - cell_end[pick]) // 1_000_000, mask=~arrived[pick]
            ),
            "deadline_s": pa.array(deadline_s[pick]),
            "source": pa.array(first_src[pick], mask=~arrived[pick]),
            "quality": pa.array(current_q[pick], mask=current_q[pick] == 255),
        },
        schema=LATE_SCHEMA,
    )


def estimated_report(
    store: ReportStore,
    day: dt.date,
    *,
    channel: Channel = Channel.ACTIVE_FORWARD,
    resolution: Resolution = Resolution.MIN30,
    meters: MeterFilter | None = None,
) -> pa.Table:
    """Current versions of ``day`` that are not plain readings: estimated (with the method),
    suspect (with the rules that failed), missing placeholders and manual edits
    (``ESTIMATED_SCHEMA``), by meter and slot."""
    start, end = day_window(day)
    rows = store.read_window_versions(channel, resolution, start, end)
    roster = (meters or MeterFilter()).apply(store.read_meters())
    codes = [int(q) for q in FLAGGED_QUALITIES]
    # a cell's current version is flagged only if one of its rows is: decide those cells alone
    quality = np.asarray(rows.column("quality").to_numpy(False), np.uint8)
    rows = versions.rows_of_cells_with(rows, np.isin(quality, codes), resolution.microseconds)
    current = rows.take(pa.array(versions.current_indices(rows, resolution.microseconds)))
    flagged = np.isin(np.asarray(current.column("quality").to_numpy(False)), codes)
    return _with_spid(current.filter(pa.array(flagged)), roster, ESTIMATED_SCHEMA)


def gaps_report(
    store: ReportStore,
    day: dt.date,
    *,
    channel: Channel = Channel.ACTIVE_FORWARD,
    resolution: Resolution = Resolution.MIN30,
    meters: MeterFilter | None = None,
) -> pa.Table:
    """Open gaps of ``day`` (slots VEE could not fill: the re-read list), by meter and slot."""
    start, end = day_window(day)
    gaps = store.read_gaps()
    ends = _us(gaps, "interval_end")
    keep = (
        (np.asarray(gaps.column("channel").to_numpy(False)) == int(channel))
        & (np.asarray(gaps.column("resolution").to_numpy(False)) == int(resolution))
        & (ends > start)
        & (ends <= end)
    )
    roster = (meters or MeterFilter()).apply(store.read_meters())
    return _with_spid(gaps.filter(pa.array(keep)), roster, GAPS_REPORT_SCHEMA)


def events_report(
    store: ReportStore, day: dt.date, *, meters: MeterFilter | None = None
) -> pa.Table:
    """Meter events that occurred on ``day`` (power fail and restore, trips, tamper, clock
    steps: SPEC R1–R3), by meter and time."""
    start, end = day_window(day)
    roster = (meters or MeterFilter()).apply(store.read_meters())
    return _with_spid(store.read_events(start, end), roster, EVENTS_REPORT_SCHEMA, "occurred")


def _with_spid(
    table: pa.Table, roster: pa.Table, schema: pa.Schema, time: str = "interval_end"
) -> pa.Table:
    """``table``'s rows of the ``roster`` meters, with their supply point ids, by meter and
    ``time``."""
    keys = np.asarray(roster.column("meter_key").to_numpy(False), np.int64)
    place = _positions(keys, np.asarray(table.column("meter_key").to_numpy(False), np.int64))
    ours = place >= 0
    table, place = table.filter(pa.array(ours)), place[ours]
    order = np.lexsort((_us(table, time), place))
    table = table.take(pa.array(order))
    spid = roster.column("supply_point_id").take(pa.array(place[order]))
    columns = {
        name: (spid if name == "supply_point_id" else table.column(name)) for name in schema.names
    }
    return pa.table(columns, schema=schema)


# ---- labels: what the API and the CLI show


def labelled(kind: str, table: pa.Table) -> pa.Table:
    """The report with names for codes and without the internal meter key: what users see."""
    out = table.drop_columns(["meter_key"])
    for column, names in (("quality", QUALITY_NAMES), ("source", SOURCE_NAMES)):
        if column in out.column_names:
            index = out.column_names.index(column)
            text = named(out.column(column), names).cast(pa.string())
            out = out.set_column(index, column, text)
    if "method" in out.column_names:
        index = out.column_names.index("method")
        text = named(method_codes(out.column("method")), METHOD_NAMES).cast(pa.string())
        out = out.set_column(index, "method", text)
    if "failed_rule" in out.column_names:
        index = out.column_names.index("failed_rule")
        flags = np.asarray(out.column("failed_rule").fill_null(0).to_numpy(False), np.int64)
        out = out.set_column(index, "rules", rule_text(flags).cast(pa.string()))
    if "code" in out.column_names:
        index = out.column_names.index("code")
        out = out.set_column(index, "event", named(out.column("code"), EVENT_NAMES))
    if kind == "late":
        state = pc.if_else(out.column("late"), "late", "missing")
        out = out.set_column(out.column_names.index("late"), "state", state)
    return out


def summary(kind: str, table: pa.Table) -> dict[str, Any]:
    """Counts a user reads first: cells and meters, and per state, quality or method."""
    body: dict[str, Any] = {
        "cells": table.num_rows,
        "meters": len(pc.unique(table.column("meter_key"))) if table.num_rows else 0,
    }
    if kind == "late":
        late = int(pc.sum(table.column("late")).as_py() or 0)
        body.update(late=late, missing=table.num_rows - late)
    elif kind == "estimated":
        counts = pc.value_counts(table.column("quality")).to_pylist()
        body["by_quality"] = {QUALITY_NAMES[c["values"]].as_py(): c["counts"] for c in counts}
    elif kind == "events":
        body["events"] = body.pop("cells")
        counts = pc.value_counts(table.column("code")).to_pylist()
        body["by_event"] = {EVENT_NAMES[c["values"]].as_py(): c["counts"] for c in counts}
    return body
