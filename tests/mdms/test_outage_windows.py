"""Outage windows feed VEE (issue 15 item 3; SPEC R1): the slots of a customer inside an outage
the engine recorded are labelled ``outage`` with 0, never estimated, on every backend; the same
gap outside an outage is a missing value as usual."""

from __future__ import annotations

import datetime as dt

import numpy as np

from kenshin.core.channels import Channel
from kenshin.core.quality import Quality
from kenshin.core.timeslots import Resolution
from kenshin.mdms.scheduler import outage_windows, sweep_day
from kenshin.mdms.store import ReadingQuery
from kenshin.mdms.sweep import day_window
from kenshin.outage.engine import OutageEvent, State, outage_rows
from tests.mdms.test_duckdb_store import NO_REGISTERS, roster, rows

DAY = dt.date(2026, 6, 2)
START, END = day_window(DAY)
US30 = Resolution.MIN30.microseconds


def test_values_inside_a_recorded_outage_are_labelled_not_estimated(store):
    store.write_meters(roster(2))
    ends = [START + (i + 1) * US30 for i in range(48)]
    dark = range(20, 26)  # slots 21–26 never arrived for either meter
    for meter in (0, 1):
        kept = [i for i in range(48) if i not in dark]
        store.append(
            rows(meter, [ends[i] for i in kept], [100 + i for i in kept], END + US30), NO_REGISTERS
        )
    outage = OutageEvent(
        1,
        "service_drop",
        0,
        np.array([0]),
        State.RESTORED,
        ends[19],
        0.9,
        confirmed_us=ends[20],
        restored_us=ends[25],
    )
    store.save_outages(outage_rows([outage]))
    assert [(w.meter_key, w.start_us, w.end_us) for w in outage_windows(store, DAY)] == [
        (0, ends[19], ends[25])
    ]
    sweep_day(store, DAY, now_us=END + 4 * US30, channels=(Channel.ACTIVE_FORWARD,))
    # meter 1 had no outage: its gap is missing (no like days to estimate 3 h from yet) and
    # goes to the re-read list; meter 0's is explained
    for meter, expected in ((0, Quality.OUTAGE), (1, Quality.MISSING)):
        day = store.read(
            ReadingQuery(meter, Channel.ACTIVE_FORWARD, Resolution.MIN30, START, END)
        ).to_pylist()
        inside = [r for r in day if ends[20] <= r["interval_end"].timestamp() * 1e6 <= ends[25]]
        assert len(inside) == 6
        assert {r["quality"] for r in inside} == {int(expected)}, meter
    zeros = store.read(
        ReadingQuery(0, Channel.ACTIVE_FORWARD, Resolution.MIN30, ends[19], ends[25])
    )
    assert set(zeros.column("value").to_pylist()) == {0}  # dark: nothing was used
    merged = OutageEvent(
        2, "transformer", 3, np.array([1]), State.RESTORED, ends[0], 0.5, merged_into=1
    )
    store.save_outages(outage_rows([merged]))
    assert len(outage_windows(store, DAY)) == 1  # an event folded into another adds nothing
