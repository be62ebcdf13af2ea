"""Fleet-wide reports (kenshin.mdms.reports, issue 13 item 2) on every backend, against a day
built by hand: which values arrived after their deadline (LV 60 min, HV 30 min, SPEC A1), which
never arrived, what is estimated or suspect, which gaps are open. The day is the last of a month
(its last slot ends at 00:00 of the next month) so month filing is crossed too."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kenshin.core.batches import events_table
from kenshin.core.events import EventCode
from kenshin.core.meterspec import MeterClass
from kenshin.core.quality import EstimationMethod, Quality, Rule, Source
from kenshin.core.schema import METERS_SCHEMA, READINGS_SCHEMA
from kenshin.core.timeslots import Resolution
from kenshin.errors import InvalidInput
from kenshin.mdms import versions
from kenshin.mdms.reports import (
    Deadlines,
    MeterFilter,
    estimated_report,
    events_report,
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


def events(meter: list[int], code: list[EventCode], at: list[int], tx: int) -> pa.Table:
    return events_table(meter, [int(c) for c in code], at, [0] * len(meter), tx)


def test_events_are_stored_once_and_reported_by_the_day_they_occurred(store):
    fill(store)
    empty = READINGS_SCHEMA.empty_table()
    first = events(
        [0, 0, HV_METER, 2],
        [EventCode.POWER_FAIL, EventCode.POWER_RESTORE, EventCode.TAMPER, EventCode.CLOCK_ADJUSTED],
        [START + 10 * MIN, START + 40 * MIN, END, START],  # END is the day's; START the day before
        END + MIN,
    )
    store.append(empty, NO_REGISTERS, None, first)
    # the same power fail delivered again (a copy sent after a reconnect) and a new trip
    again = events(
        [0, 2],
        [EventCode.POWER_FAIL, EventCode.SWITCH_TRIPPED],
        [START + 10 * MIN, END],
        END + 9 * MIN,
    )
    store.append(empty, NO_REGISTERS, None, again)
    report = events_report(store, DAY)
    got = [(r["meter_key"], EventCode(r["code"]).label) for r in report.to_pylist()]
    assert got == [(0, "power_fail"), (0, "power_restore"), (2, "switch_tripped"), (3, "tamper")]
    kept = report.to_pylist()[0]
    assert kept["tx_time"].timestamp() * 1e6 == END + MIN  # the first copy stays as it was
    before = events_report(store, DAY - dt.timedelta(days=1))
    assert before.column("meter_key").to_pylist() == [2]  # an event at 00:00 is the day before
    assert events_report(store, DAY, meters=MeterFilter(feeder=0)).num_rows == 2
    one = store.read_events(START, END, meter_key=0)
    assert one.column("code").to_pylist() == [
        int(EventCode.POWER_FAIL),
        int(EventCode.POWER_RESTORE),
    ]
    shown = labelled("events", report).to_pylist()
    assert shown[3]["event"] == "tamper" and shown[3]["supply_point_id"] == f"03{3:020d}"
    assert "code" not in shown[0] and "meter_key" not in shown[0]
    counts = summary("events", report)
    assert counts["events"] == 4 and counts["meters"] == 3
    assert counts["by_event"] == {
        "power_fail": 1,
        "power_restore": 1,
        "switch_tripped": 1,
        "tamper": 1,
    }


def test_capability_filter_follows_the_meter_spec(store):
    fill(store)
    roster_table = store.read_meters()
    # HV meters have no switch and no remote ampere limit (SPEC M6, R5); gen-2 LV meters do
    with_switch = MeterFilter(capability="switch").apply(roster_table)
    assert with_switch.column("meter_key").to_pylist() == [0, 1, 2]
    assert MeterFilter(capability="ampere_limit").apply(roster_table).num_rows == 3
    hv_switch = MeterFilter(capability="switch", meter_class=int(MeterClass.HV))
    assert hv_switch.apply(roster_table).num_rows == 0
    with pytest.raises(InvalidInput, match="unknown capability 'teleport'; one of switch"):
        MeterFilter(capability="teleport")
