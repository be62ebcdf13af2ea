"""Fleet-wide reports (kenshin.mdms.reports, issue 13 item 2) on every backend, against a day
built by hand: which values arrived after their deadline (LV 60 min, HV 30 min, SPEC A1), which
never arrived, what is estimated or suspect, which gaps are open. The day is the last of a month
(its last slot ends at 00:00 of the next month) so month filing is crossed too."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kenshin.core.meterspec import MeterClass
from kenshin.core.quality import EstimationMethod, Quality, Rule, Source
from kenshin.core.schema import METERS_SCHEMA
from kenshin.core.timeslots import Resolution
from kenshin.mdms import versions
from kenshin.mdms.reports import (
    Deadlines,
    MeterFilter,
    estimated_report,
    gaps_report,
    labelled,
    late_report,
    summary,
)
from kenshin.mdms.sweep import day_window
from tests.mdms.test_duckdb_store import NO_REGISTERS, roster, rows

DAY = dt.date(2026, 4, 30)
START, END = day_window(DAY)
US30 = Resolution.MIN30.microseconds
MIN = 60_000_000
SLOTS = 48
HV_METER = 3
NOW = END + 30 * MIN  # LV: every slot but the last is due; HV: every slot is


def end_of(slot: int) -> int:
    return START + (slot + 1) * US30


def with_source(table: pa.Table, source: Source, **columns: int) -> pa.Table:
    n = table.num_rows
    table = table.set_column(
        table.column_names.index("source"), "source", pa.array([int(source)] * n, pa.uint8())
    )
    for name, value in columns.items():
        index = table.column_names.index(name)
        table = table.set_column(index, name, pa.array([value] * n, table.schema.field(name).type))
    return table


def fill(store) -> None:  # type: ignore[no-untyped-def]
    meters = roster(4)
    classes = np.where(
        np.asarray(meters.column("meter_key")) == HV_METER, int(MeterClass.HV), 2
    ).astype(np.uint8)
    meters = meters.set_column(
        METERS_SCHEMA.names.index("meter_class"), "meter_class", pa.array(classes, pa.uint8())
    )
    for name, code in (("area", 3), ("customer_type", 1), ("generation", 2)):  # valid codes
        index = METERS_SCHEMA.names.index(name)
        meters = meters.set_column(
            index, name, pa.array([code] * 4, METERS_SCHEMA.field(name).type)
        )
    store.write_meters(meters)
    # meter 0: on time (5 min after the slot) except slot 10 (2 h late), slot 20 (never, then
    # estimated by VEE) and slot 30 (first arrived by a re-read 90 min after the slot)
    for slot in range(SLOTS):
        if slot == 20:
            continue
        delay = {10: 120, 30: 90}.get(slot, 5) * MIN
        part = rows(0, [end_of(slot)], [slot + 1], end_of(slot) + delay)
        store.append(with_source(part, Source.REREAD) if slot == 30 else part, NO_REGISTERS)
    estimate = rows(0, [end_of(20)], [21], END + 120 * MIN, Quality.ESTIMATED)
    store.append(
        with_source(
            estimate,
            Source.ESTIMATE,
            method=int(EstimationMethod.LINEAR),
            failed_rule=int(Rule.MISSING),
        ),
        NO_REGISTERS,
    )
    # meter 1: nothing arrived; meter 2: everything on time, slot 7 later marked suspect
    ends = [end_of(s) for s in range(SLOTS)]
    for slot in range(SLOTS):
        store.append(rows(2, [ends[slot]], [7], ends[slot] + MIN), NO_REGISTERS)
    suspect = rows(2, [end_of(7)], [7], END + 120 * MIN, Quality.SUSPECT)
    store.append(with_source(suspect, Source.METER_PUSH, failed_rule=int(Rule.SPIKE)), NO_REGISTERS)
    # meter 3 (HV, 30 min): slot 5 arrived 45 min after its end, every other slot 10 min after
    for slot in range(SLOTS):
        delay = (45 if slot == 5 else 10) * MIN
        store.append(rows(HV_METER, [ends[slot]], [3], ends[slot] + delay), NO_REGISTERS)
    # the gap list VEE left: meter 1's slots 0–2
    gaps = pa.table(
        {
            "meter_key": pa.array([1, 1, 1], pa.int32()),
            "channel": pa.array([1, 1, 1], pa.uint8()),
            "resolution": pa.array([30, 30, 30], pa.uint8()),
            "interval_end": pa.array([end_of(s) for s in range(3)]).cast(
                versions.GAPS_SCHEMA.field("interval_end").type
            ),
            "found_at": pa.array([END + 120 * MIN] * 3).cast(
                versions.GAPS_SCHEMA.field("found_at").type
            ),
        },
        schema=versions.GAPS_SCHEMA,
    )
    store.replace_gaps(1, Resolution.MIN30, START, END, gaps)


def cells(table: pa.Table) -> list[tuple[int, int]]:
    """(meter, slot) of each row, in the report's order."""
    ends = np.asarray(table.column("interval_end").cast(pa.int64()).to_numpy())
    slots = (ends - START) // US30 - 1
    return list(zip(table.column("meter_key").to_pylist(), slots.tolist(), strict=True))


def test_late_report_judges_each_meter_by_its_deadline(store):
    fill(store)
    report = late_report(store, DAY, now_us=NOW)
    expected_late = [(0, 10), (0, 30), (HV_METER, 5)]
    expected_missing = [(0, 20)] + [(1, s) for s in range(SLOTS - 1)]  # slot 47: not due yet
    got = cells(report)
    assert got == sorted(expected_late + expected_missing)
    late = dict(zip(got, report.column("late").to_pylist(), strict=True))
    assert [c for c in got if late[c]] == expected_late
    by_cell = dict(zip(got, report.to_pylist(), strict=True))
    assert by_cell[(0, 10)]["delay_s"] == 7200 and by_cell[(0, 10)]["deadline_s"] == 3600
    assert by_cell[(0, 30)]["source"] == int(Source.REREAD)  # how it first arrived
    assert (
        by_cell[(HV_METER, 5)]["delay_s"] == 2700 and by_cell[(HV_METER, 5)]["deadline_s"] == 1800
    )
    assert by_cell[(0, 20)]["arrived"] is None
    assert by_cell[(0, 20)]["quality"] == int(Quality.ESTIMATED)  # what stands there now
    assert by_cell[(1, 0)]["quality"] is None  # nothing stored at all
    assert by_cell[(0, 10)]["supply_point_id"] == f"03{0:020d}"
    assert summary("late", report) == {"cells": 51, "meters": 3, "late": 3, "missing": 48}


def test_a_later_now_makes_the_last_slot_due_and_longer_deadlines_excuse_lateness(store):
    fill(store)
    later = late_report(store, DAY, now_us=END + 61 * MIN)
    assert (1, SLOTS - 1) in cells(later)
    lenient = late_report(store, DAY, now_us=NOW, deadlines=Deadlines(a1_lv_s=3 * 3600))
    assert [
        c
        for c, is_late in zip(cells(lenient), lenient.column("late").to_pylist(), strict=True)
        if is_late
    ] == [(HV_METER, 5)]


def test_filters_choose_the_meters(store):
    fill(store)
    # the test roster's feeder is the meter key
    only = late_report(store, DAY, now_us=NOW, meters=MeterFilter(feeder=HV_METER))
    assert cells(only) == [(HV_METER, 5)]
    hv = late_report(store, DAY, now_us=NOW, meters=MeterFilter(meter_class=int(MeterClass.HV)))
    assert cells(hv) == [(HV_METER, 5)]
    assert late_report(store, DAY, now_us=NOW, meters=MeterFilter(feeder=99)).num_rows == 0


def test_estimated_report_lists_current_estimates_and_suspects_with_why(store):
    fill(store)
    report = estimated_report(store, DAY)
    assert cells(report) == [(0, 20), (2, 7)]
    first, second = report.to_pylist()
    assert first["quality"] == int(Quality.ESTIMATED)
    assert first["method"] == int(EstimationMethod.LINEAR)
    assert second["quality"] == int(Quality.SUSPECT)
    shown = labelled("estimated", report).to_pylist()
    assert shown[0]["method"] == "linear" and shown[0]["quality"] == "estimated"
    assert shown[1]["rules"] == "spike" and shown[1]["source"] == "meter_push"
    assert "meter_key" not in shown[0]
    assert summary("estimated", report)["by_quality"] == {"estimated": 1, "suspect": 1}


def test_gaps_report_is_the_days_open_gaps(store):
    fill(store)
    report = gaps_report(store, DAY)
    assert cells(report) == [(1, 0), (1, 1), (1, 2)]
    assert gaps_report(store, DAY + dt.timedelta(days=1)).num_rows == 0
    assert gaps_report(store, DAY, meters=MeterFilter(feeder=0)).num_rows == 0


def test_labels_say_late_or_missing(store):
    fill(store)
    shown = labelled("late", late_report(store, DAY, now_us=NOW))
    states = pc.value_counts(shown.column("state")).to_pylist()
    assert {s["values"]: s["counts"] for s in states} == {"late": 3, "missing": 48}
    assert set(shown.column("source").to_pylist()) == {None, "meter_push", "reread"}
