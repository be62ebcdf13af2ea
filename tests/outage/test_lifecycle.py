"""The outage event lifecycle as a table (issue 15 item 3): each row drives the engine over the
hand-built topology of ``test_inference`` (4 feeders × 3 transformers × 4 customers, one HV
customer per feeder) through one transition and states the event's states in order, with
the evidence that made each move.

    suspected ──confidence ≥ 0.6 or 30 min──▶ confirmed ──some back──▶ restoring
        │                                         │                       │
        │                                         │             all or half back
        └──evidence gone──▶ withdrawn             │                       ▼
                                                  └──a bigger event──▶ merged    restored
    restored with meters still dark → nested suspected per group of them
    nested suspected ──3 pings unanswered──▶ confirmed ──heard──▶ restored
    nested suspected ──heard (the restore was lost)──▶ withdrawn
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from kenshin.core.events import EventCode
from kenshin.outage.engine import PINGS_FOR_PROOF, OutageEngine, OutageEvent
from tests.outage.test_inference import COLLECTOR, TOPOLOGY, N, _feeder, _tx

MIN = 60_000_000


@dataclass
class Grid:
    """Meters heard every 5 minutes unless dark; gasps, restores and unanswered pings on cue."""

    engine: OutageEngine = field(
        default_factory=lambda: OutageEngine(TOPOLOGY, COLLECTOR, np.zeros(N, dtype=bool))
    )
    heard: np.ndarray = field(default_factory=lambda: np.zeros(N, np.int64))
    dark: set[int] = field(default_factory=set)
    now: int = 0

    def step(
        self,
        minutes: int = 5,
        *,
        gasp: list[int] | None = None,
        restore: list[int] | None = None,
        unanswered: list[int] | None = None,
    ) -> None:
        self.now += minutes * MIN
        alive = np.setdiff1d(np.arange(N), list(self.dark))
        self.heard[alive] = self.now
        events = [(k, EventCode.POWER_FAIL, self.now) for k in gasp or []]
        events += [(k, EventCode.POWER_RESTORE, self.now) for k in restore or []]
        self.engine.power_events(events)
        if unanswered:
            for _ in range(PINGS_FOR_PROOF):
                self.engine.no_answer(np.array(unanswered, np.int64), self.now, self.heard)
        self.engine.evaluate(self.now, self.heard)

    def fail(self, meters: list[int], *, gasps: bool = False) -> None:
        self.dark |= set(meters)
        self.step(gasp=meters if gasps else None)

    def back(self, meters: list[int], *, report: bool = True) -> None:
        self.dark -= set(meters)
        self.step(restore=meters if report else None)

    def event(self, level: str, device: int) -> OutageEvent:
        [found] = [e for e in self.engine.events if (e.level, e.device) == (level, device)]
        return found


def states(event: OutageEvent) -> list[str]:
    return [what.split(":")[0] for _, what in event.timeline]


def silence_then_lasting(grid: Grid) -> OutageEvent:
    grid.step()
    grid.fail(_tx(1))  # no gasp: silence only (confidence 0.5)
    for _ in range(16):  # overdue 45 min after last heard, then 30 min more
        grid.step()
    return grid.event("transformer", 1)


def gasps_confirm(grid: Grid) -> OutageEvent:
    grid.step()
    grid.fail(_tx(1), gasps=True)
    return grid.event("transformer", 1)


def withdrawn(grid: Grid) -> OutageEvent:
    grid.step()
    grid.fail(_tx(1))
    for _ in range(9):
        if grid.engine.events:
            break
        grid.step()
    grid.back(_tx(1), report=False)  # heard again before it was confirmed: the radio
    return grid.event("transformer", 1)


def restoring_then_restored(grid: Grid) -> OutageEvent:
    grid.step()
    grid.fail(_feeder(1), gasps=True)
    grid.back(_feeder(1)[:3])  # a quarter back: restoring
    grid.back(_feeder(1)[3:])
    return grid.event("feeder", 1)


def all_back_at_once(grid: Grid) -> OutageEvent:
    gasps_confirm(grid)
    grid.back(_tx(1))
    return grid.event("transformer", 1)


def half_back_with_a_straggler(grid: Grid) -> OutageEvent:
    grid.step()
    grid.fail(_feeder(1), gasps=True)
    grid.back(_feeder(1)[1:])  # all but one: the feeder is back, meter 12 to check
    return grid.event("feeder", 1)


def straggler_heard_again(grid: Grid) -> OutageEvent:
    half_back_with_a_straggler(grid)
    grid.back(_feeder(1)[:1], report=False)  # its restore had been lost
    return grid.event("service_drop", _feeder(1)[0])


def straggler_confirmed_by_pings(grid: Grid) -> OutageEvent:
    half_back_with_a_straggler(grid)
    grid.step(unanswered=_feeder(1)[:1])
    grid.step()
    grid.back(_feeder(1)[:1])
    return grid.event("service_drop", _feeder(1)[0])


def merged_into_a_feeder(grid: Grid) -> OutageEvent:
    grid.step()
    grid.fail(_tx(3), gasps=True)  # transformer 3, the first of feeder 1
    grid.fail(_feeder(1), gasps=True)
    return grid.event("transformer", 3)


ROWS: list[tuple[str, Callable[[Grid], OutageEvent], list[str]]] = [
    ("silence lasting 30 min confirms", silence_then_lasting, ["suspected", "confirmed"]),
    ("last gasps confirm at once", gasps_confirm, ["suspected", "confirmed"]),
    ("evidence gone: withdrawn", withdrawn, ["suspected", "withdrawn"]),
    (
        "some back, then all",
        restoring_then_restored,
        ["suspected", "confirmed", "restoring", "restored"],
    ),
    ("all back at once", all_back_at_once, ["suspected", "confirmed", "restored"]),
    (
        "half back: restored, the rest nested",
        half_back_with_a_straggler,
        ["suspected", "confirmed", "restoring", "restored"],
    ),
    ("nested, heard again", straggler_heard_again, ["suspected", "withdrawn"]),
    (
        "nested, pings unanswered, then back",
        straggler_confirmed_by_pings,
        ["suspected", "confirmed", "restored"],
    ),
    (
        "a bigger event explains it",
        merged_into_a_feeder,
        ["suspected", "confirmed", "merged into event 2"],
    ),
]


@pytest.mark.parametrize(("name", "drive", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_each_transition(
    name: str, drive: Callable[[Grid], OutageEvent], expected: list[str]
) -> None:
    grid = Grid()
    event = drive(grid)
    assert states(event) == expected, (name, event.timeline)


def test_the_nested_event_is_dated_back_and_counted_once() -> None:
    grid = Grid()
    parent = half_back_with_a_straggler(grid)
    [nested] = [e for e in grid.engine.events if e.nested_in == parent.event_id]
    assert nested.started_us == parent.started_us
    assert parent.restored_us == grid.now  # the restores reported at this step
    # while the nested suspicion is open, only its customer is out
    assert grid.engine.customers_out() == 1
    grid.step(unanswered=list(nested.meters))
    assert nested.confirmed_us == grid.now and grid.engine.customers_out() == 1


def test_lasting_silence_confirms_thirty_minutes_after_the_suspicion() -> None:
    grid = Grid()
    event = silence_then_lasting(grid)
    suspected_at, confirmed_at = event.timeline[0][0], event.timeline[1][0]
    assert confirmed_at - suspected_at == 30 * MIN
    assert event.confidence < 0.6  # silence alone: 0.5
