"""Outage events on every backend (issue 15 item 4): saved as they move through their
lifecycle (a row replaced, not added), read back by period with the open ones always."""

from __future__ import annotations

import json

import numpy as np

from kenshin.outage.engine import OutageEvent, State, outage_rows

T0 = 1_780_000_000_000_000
MIN = 60_000_000


def _event(event_id: int, state: State, started: int, **fields: object) -> OutageEvent:
    event = OutageEvent(
        event_id,
        "transformer",
        7,
        np.array([3, 4, 5]),
        state,
        started,
        0.75,
        **fields,  # type: ignore[arg-type]
    )
    event.timeline.append((started, state.value))
    return event


def test_events_are_replaced_as_they_move_and_read_by_period(store):
    suspected = _event(1, State.SUSPECTED, T0)
    store.save_outages(
        outage_rows(
            [suspected, _event(2, State.RESTORED, T0 - 600 * MIN, restored_us=T0 - 500 * MIN)]
        )
    )
    suspected.move(State.CONFIRMED, T0 + 5 * MIN)
    suspected.confirmed_us = T0 + 5 * MIN
    store.save_outages(outage_rows([suspected]))
    rows = store.read_outages(T0 - MIN, T0 + 60 * MIN).to_pylist()
    assert [r["event_id"] for r in rows] == [1]  # event 2 started before and is restored
    [row] = rows
    assert row["state"] == "confirmed" and row["customers"] == 3 and row["restored"] is None
    assert row["confirmed"].timestamp() * 1e6 == T0 + 5 * MIN
    detail = json.loads(row["detail"])
    assert detail["meters"] == [3, 4, 5]
    assert [what for _, what in detail["timeline"]] == ["suspected", "confirmed"]
    later = store.read_outages(T0 + 61 * MIN, T0 + 120 * MIN)
    assert later.column("event_id").to_pylist() == [1]  # open events always come back
    everything = store.read_outages(0, T0 + 120 * MIN)
    assert everything.column("event_id").to_pylist() == [1, 2]
