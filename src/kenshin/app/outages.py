"""The outage engine in the running system (issue 15): after every 5-minute step of the wire
system, what the head-end heard goes to the engine, and the events that changed go to the store
(``OutageLog``), where the API reads them."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from kenshin.core.grouping import rank_within
from kenshin.grid.topology import Topology
from kenshin.hes.polling import PollState
from kenshin.mdms.store import OutageLog
from kenshin.outage.engine import OutageEngine, outage_rows
from kenshin.outage.inference import Seen

UNTIL_2100_US = 4_102_444_800_000_000
PING_EVERY_US = 15 * 60_000_000  # a meter is pinged at most every 15 minutes …
PING_RETRY_US = 5 * 60_000_000  # … but asked again after 5 when its first ping failed
PINGS_PER_TICK = 200
# a collector keeps 4 polls in flight and a ping unanswered holds its place a minute: about 20
# a tick where nothing answers
PINGS_PER_COLLECTOR = 16


CONTROL_TURN_US = 5 * 60_000_000  # the control behind a collector changes every 5 minutes


def control_meters(
    alive: npt.NDArray[np.bool_],
    collector_of: npt.NDArray[np.int64],
    collectors: npt.NDArray[np.int64],
    turn: int,
) -> npt.NDArray[np.int64]:
    """One live meter behind each of ``collectors`` that has one (the ``turn``-th of them, by
    meter key, round the group): one sort, no loop over collectors or meters."""
    keys = np.flatnonzero(alive)
    order = keys[np.argsort(collector_of[keys], kind="stable")]
    groups, starts, counts = np.unique(collector_of[order], return_index=True, return_counts=True)
    wanted = np.isin(groups, collectors)
    picked: npt.NDArray[np.int64] = order[starts[wanted] + turn % counts[wanted]]
    return picked


class OutageMonitor:
    def __init__(
        self,
        topology: Topology,
        collector_of: np.ndarray,
        realtime: np.ndarray,
        hes: Any,
        store: OutageLog,
    ) -> None:
        # numbering goes on after the events the store holds (a store reused by `kenshin up`
        # after a restart; the engine does not pick up events left open: a limit for now)
        held = store.read_outages(0, UNTIL_2100_US)
        ids = held.column("event_id").to_pylist()
        self.engine = OutageEngine(
            topology, collector_of, realtime, first_id=max(ids, default=0) + 1
        )
        self.hes = hes
        self.store = store
        # pings (A4 polls) where an answer decides: each meter at most every PING_EVERY_US,
        # at most PINGS_PER_TICK a tick; the poll book keeps the collectors' limits
        self._pinged_us = np.full(len(topology.feeder), -PING_EVERY_US, np.int64)
        self._batches: dict[int, set[int]] = {}  # poll batch → its timeouts already counted
        self.pings_sent = 0

    def tick(self, now_us: int) -> None:
        events = self.hes.power_events
        taken = [events.popleft() for _ in range(len(events))]
        self.engine.power_events(taken)
        self._collect_pings(now_us)
        changed = self.engine.evaluate(now_us, self.hes.heard_us)
        if changed:
            self.store.save_outages(outage_rows(changed))
        self._ping(now_us)

    def _ping(self, now_us: int) -> None:
        wanted = self.engine.ping_candidates()  # most telling first
        dead = list(self.engine.dead_collectors)
        # a meter one failed ping from evidence is asked again after PING_RETRY_US
        every = np.where(self.engine.no_answers[wanted] >= 1, PING_RETRY_US, PING_EVERY_US)
        wanted = wanted[
            (now_us - self._pinged_us[wanted] >= every)
            & ~np.isin(self.engine.collector_of[wanted], dead)
        ]
        # no more per collector than it can finish before the next tick, where no answer
        # comes: what is asked waits in the poll book behind the rest
        wanted = wanted[rank_within(self.engine.collector_of[wanted]) < PINGS_PER_COLLECTOR]
        wanted = wanted[:PINGS_PER_TICK]
        if len(wanted):
            self._pinged_us[wanted] = now_us
            # a control per collector: a meter heard lately behind it; if it answers, the
            # collector relays and the others' silence is theirs (a dead collector answers none)
            controls = control_meters(
                self.engine.last_seen == Seen.ALIVE,
                self.engine.collector_of,
                np.unique(self.engine.collector_of[wanted]),
                now_us // CONTROL_TURN_US,
            )
            asked = np.unique(np.concatenate([wanted, controls]))
            self._batches[self.hes.polls.request(asked, now_us)] = set()
            self.pings_sent += len(asked)

    def _collect_pings(self, now_us: int) -> None:
        """Each timed-out ping counts as soon as a control behind the same collector answered
        in its batch (not when the whole batch is done: a batch's last ping may wait behind a
        dark area's timeouts)."""
        for batch, counted in list(self._batches.items()):
            result = self.hes.polls.result(batch)
            answered = {
                int(self.engine.collector_of[p.meter_key])
                for p in result.polls
                if p.state is PollState.ANSWERED
            }
            silent = [
                p
                for p in result.polls
                if p.state is PollState.TIMED_OUT
                and p.request_id not in counted
                and int(self.engine.collector_of[p.meter_key]) in answered
            ]
            if silent:
                counted.update(p.request_id for p in silent)
                keys = np.array([p.meter_key for p in silent], np.int64)
                self.engine.no_answer(keys, now_us, self.hes.heard_us)
            if result.summary.done:
                self.hes.polls.forget(batch)
                del self._batches[batch]

    def customers_out(self) -> int:
        return self.engine.customers_out()
