"""The ping budget (issue 15 item 2): pings (A4 polls) go only where an answer decides, each
meter at most every 15 minutes (5 after a failed one), never behind a collector judged dead, no
more per collector a tick than it can finish, and a timeout counts only when a control behind
the same collector answered. The monitor runs over the real poll book and a DuckDB store; the
head-end's side (what it heard, the wire) is played by hand."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pytest

from kenshin.app import outages
from kenshin.app.outages import OutageMonitor
from kenshin.aroute.frames import PollResponse
from kenshin.core.grouping import rank_within
from kenshin.hes.polling import PollBook
from kenshin.mdms.duckdb_store import DuckDBStore
from tests.outage.test_inference import COLLECTOR, TOPOLOGY, N, _tx

MIN = 60_000_000


@dataclass
class HeadEndSide:
    """What the monitor reads of a head-end: power events, when each meter was last heard, the
    poll book."""

    heard_us: np.ndarray = field(default_factory=lambda: np.zeros(N, np.int64))
    power_events: deque = field(default_factory=deque)  # type: ignore[type-arg]
    polls: PollBook = field(default_factory=lambda: PollBook(COLLECTOR))

    def wire(self, now_us: int, *, answer: set[int]) -> list[int]:
        """Put the due polls on the wire; the meters in ``answer`` reply at once. Returns the
        meters asked."""
        asked = []
        for key, request in self.polls.due(now_us):
            asked.append(key)
            if key in answer:
                self.heard_us[key] = now_us
                reply = PollResponse(request.request_id, now_us, 0, 0, 0, 0, 0, 0, 0, 0)
                assert self.polls.on_response(key, reply, now_us)
        self.polls.tick(now_us + 2 * MIN)  # the rest times out
        return asked


def _monitor() -> tuple[OutageMonitor, HeadEndSide]:
    hes = HeadEndSide()
    monitor = OutageMonitor(TOPOLOGY, COLLECTOR, np.zeros(N, dtype=bool), hes, DuckDBStore())
    return monitor, hes


def _run(monitor: OutageMonitor, hes: HeadEndSide, now: int, silent: set[int]) -> list[int]:
    """Everyone but ``silent`` heard now; a tick; the pings on the wire, answered by the
    living."""
    alive = np.setdiff1d(np.arange(N), list(silent))
    hes.heard_us[alive] = now
    monitor.tick(now)
    return hes.wire(now, answer=set(alive.tolist()))


def test_a_silent_meter_is_pinged_and_three_failures_in_a_row_are_proof() -> None:
    monitor, hes = _monitor()
    silent = {9}  # one meter of transformer 2: a ping decides, no device is out
    for minute in (0, 5, 10, 15, 20, 25, 30, 35, 40, 45):
        _run(monitor, hes, minute * MIN, silent)
    asked = _run(monitor, hes, 50 * MIN, silent)  # overdue (45 min): silent now
    assert 9 in asked and len(asked) == 2  # the meter and a control behind its collector
    control = next(k for k in asked if k != 9)
    assert COLLECTOR[control] == COLLECTOR[9] and control not in silent
    # its answer timed out with the control answering: one failure, asked again after 5 min
    assert 9 in _run(monitor, hes, 55 * MIN, silent) and monitor.engine.no_answers[9] == 1
    assert 9 in _run(monitor, hes, 60 * MIN, silent) and monitor.engine.no_answers[9] == 2
    assert monitor.engine.events == []  # two lost answers in a row still happen
    _run(monitor, hes, 65 * MIN, silent)  # the third failure: proof
    assert [(e.level, e.device) for e in monitor.engine.events] == [("service_drop", 9)]


def test_an_answered_ping_makes_the_meter_alive_and_stops_the_asking() -> None:
    monitor, hes = _monitor()
    for minute in range(0, 50, 5):
        _run(monitor, hes, minute * MIN, {9})
    # silent to the pushes, but it answers its ping (the radio lost the pushes)
    monitor.tick(50 * MIN)
    hes.wire(50 * MIN, answer=set(range(N)))
    # heard at 50 by its answer: alive until overdue again (45 min), not asked meanwhile
    asked_later = [_run(monitor, hes, m * MIN, {9}) for m in range(55, 100, 5)]
    assert all(9 not in a for a in asked_later) and monitor.engine.events == []
    assert 9 in _run(monitor, hes, 100 * MIN, {9})  # silent again: asked again


def test_a_timeout_without_an_answering_control_is_not_counted() -> None:
    monitor, hes = _monitor()
    for minute in range(0, 50, 5):
        _run(monitor, hes, minute * MIN, {9})
    monitor.tick(50 * MIN)
    hes.wire(50 * MIN, answer=set())  # nothing answers: the collector may be the trouble
    monitor.tick(55 * MIN)
    assert monitor.engine.no_answers[9] == 0


def test_no_ping_behind_a_dead_collector() -> None:
    monitor, hes = _monitor()
    behind = set(np.flatnonzero(COLLECTOR == 0).tolist())  # transformers 0 and 1 of feeder 0
    assert behind == set(_tx(0) + _tx(1))
    asked: list[int] = []
    for minute in range(0, 90, 5):
        asked += _run(monitor, hes, minute * MIN, behind)
    assert monitor.engine.dead_collectors == {0}
    assert not behind & set(asked) and monitor.engine.events == []


def test_no_more_pings_per_collector_a_tick_than_the_budget(monkeypatch) -> None:
    monkeypatch.setattr(outages, "PINGS_PER_COLLECTOR", 2)
    monitor, hes = _monitor()
    # three of four meters silent on each transformer of feeder 1: no device is out (a live
    # neighbour), six silent meters behind each of its collectors
    silent = {m for t in (3, 4, 5) for m in _tx(t)[1:]}
    for minute in range(0, 50, 5):
        _run(monitor, hes, minute * MIN, silent)
    monitor.tick(50 * MIN)
    [batch] = list(monitor._batches)
    asked = [p.meter_key for p in hes.polls.result(batch).polls]
    pinged = [k for k in asked if k in silent]
    per_collector = np.bincount(COLLECTOR[pinged])
    assert per_collector.max() == 2 and len(pinged) == 2 * len(np.unique(COLLECTOR[pinged]))


@pytest.mark.parametrize("groups", [[5, 5, 1, 5, 1, 2], [0], []])
def test_rank_within_counts_each_group_in_order(groups: list[int]) -> None:
    ranks = rank_within(np.array(groups, np.int64)).tolist()
    expected = [groups[:i].count(g) for i, g in enumerate(groups)]
    assert ranks == expected
