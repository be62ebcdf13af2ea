"""Reliability indices (issue 15 item 3): hand-computed customers interrupted, customer-minutes,
SAIFI, SAIDI and CAIDI per area for a day of events — a feeder with a nested drop (counted once),
a momentary blink, an open event, and events that must not count (merged, withdrawn, another
day)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.outage.indices import interruptions, reliability

DAY = dt.datetime(2026, 6, 1, tzinfo=JST)


def _at(hours: float) -> dt.datetime:
    return DAY + dt.timedelta(hours=hours)


def _row(event_id, meters, start, end, state="restored", merged=None, nested=None):  # type: ignore[no-untyped-def]
    return {
        "event_id": event_id,
        "state": state,
        "started": _at(start),
        "restored": None if end is None else _at(end),
        "merged_into": merged,
        "detail": json.dumps({"meters": meters, "nested_in": nested, "timeline": []}),
    }


ROWS = [
    _row(1, list(range(10)), 1, 2),  # a feeder of area 0, 01:00–02:00
    _row(2, [3], 1, 3, nested=1),  # its meter 3 still dark until 03:00: counted here only
    _row(3, [0, 1], 1, 2, state="confirmed", merged=1),  # folded into the feeder
    _row(4, [20, 21], 1, 1.05),  # area 1: 3 minutes, momentary
    _row(5, [22], 1, None, state="withdrawn"),  # a suspicion whose evidence went away
    _row(6, list(range(30, 35)), 4, None, state="confirmed"),  # open at 04:30
    _row(7, [25], -2, -1),  # the day before
]
AREA = np.array([0] * 20 + [1] * 20, np.int64)


def test_indices_per_area_by_hand() -> None:
    found = interruptions(ROWS, to_epoch_us(_at(4.5)))
    start, end = to_epoch_us(DAY), to_epoch_us(DAY + dt.timedelta(days=1))
    zero, one = reliability(found, AREA, start, end)
    # area 0: nine customers 60 min by the feeder, meter 3 120 min by its nested event
    assert (zero.group, zero.customers_served) == (0, 20)
    assert zero.customers_interrupted == 10
    assert zero.customer_minutes == pytest.approx(9 * 60 + 120)
    assert zero.saifi == pytest.approx(0.5) and zero.saidi == pytest.approx(33.0)
    assert zero.caidi == pytest.approx(66.0) and zero.events == 2 and zero.momentary == 0
    # area 1: the blink is momentary; the open event counts 30 minutes for five customers
    assert (one.customers_interrupted, one.momentary, one.events) == (5, 2, 2)
    assert one.customer_minutes == pytest.approx(150.0)
    assert one.saifi == pytest.approx(0.25) and one.saidi == pytest.approx(7.5)
    assert one.caidi == pytest.approx(30.0)


def test_the_day_before_and_an_empty_day() -> None:
    found = interruptions(ROWS, to_epoch_us(_at(4.5)))
    before = to_epoch_us(DAY - dt.timedelta(days=1))
    zero, one = reliability(found, AREA, before, to_epoch_us(DAY))
    assert zero.customers_interrupted == 0 and one.customers_interrupted == 1
    assert one.customer_minutes == pytest.approx(60.0)
    nothing = interruptions([], 0)
    [quiet] = reliability(nothing, np.zeros(4, np.int64), before, to_epoch_us(DAY))
    assert quiet.saifi == 0.0 and quiet.saidi == 0.0 and quiet.caidi is None
