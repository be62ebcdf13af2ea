"""The outage engine in the running system (issue 15): after every 5-minute step of the wire
system, what the head-end heard goes to the engine, and the events that changed go to the store
(``OutageLog``), where the API reads them."""

from __future__ import annotations

from typing import Any

import numpy as np

from kenshin.grid.topology import Topology
from kenshin.mdms.store import OutageLog
from kenshin.outage.engine import OutageEngine, outage_rows

UNTIL_2100_US = 4_102_444_800_000_000


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

    def tick(self, now_us: int) -> None:
        events = self.hes.power_events
        taken = [events.popleft() for _ in range(len(events))]
        self.engine.power_events(taken)
        changed = self.engine.evaluate(now_us, self.hes.heard_us)
        if changed:
            self.store.save_outages(outage_rows(changed))

    def customers_out(self) -> int:
        return self.engine.customers_out()
