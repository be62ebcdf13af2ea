"""Composition root: wires fleet → A-route transport → head-end → MDMS → store.

The embedded system (DuckDB file, in-process transport) runs in one process with no servers to
install (ARCHITECTURE principle 4a). The service mode of later issues swaps the transport and the
store behind the same seams.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kenshin.aroute.transport import InProcessTransport
from kenshin.core.clock import Clock, SteppedClock
from kenshin.core.timeslots import Resolution, from_epoch_us, to_epoch_us
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.hes.headend import HeadEnd
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.service import MeterDataService


@dataclass
class SimulationSummary:
    meters: int
    start: dt.datetime
    end: dt.datetime
    values_by_resolution: dict[int, int]
    registers: int
    forward_kwh: float
    reverse_kwh: float
    seconds: float

    @property
    def values(self) -> int:
        return sum(self.values_by_resolution.values())


class EmbeddedSystem:
    """The whole thin path in one process."""

    def __init__(
        self,
        config: FleetConfig,
        db: str | Path = ":memory:",
        *,
        clock: Clock | None = None,
        flush_rows: int = 2_000_000,
        background_writer: bool = True,
    ) -> None:
        self.config = config
        self.store = DuckDBStore(db)
        self.fleet = Fleet(config)
        self.clock: Clock = clock or SteppedClock(config.start)
        self.mdms = MeterDataService(
            self.store, flush_rows=flush_rows, background=background_writer
        )
        self.transport = InProcessTransport()
        self.hes = HeadEnd(self.mdms, self.clock)
        self.transport.subscribe(self.hes.receive)
        self.store.write_meters(self.fleet.meters_table())
        self.store.set_meta(
            "fleet",
            json.dumps(
                {
                    "n_meters": config.n_meters,
                    "seed": config.seed,
                    "area": config.area.code,
                    "start": config.start.isoformat(),
                    "gen2_share": config.gen2_share,
                    "sample_5min_share": config.sample_5min_share,
                }
            ),
        )

    def next_slot_end(self) -> dt.datetime:
        return from_epoch_us(self.fleet.meters.now_us + Resolution.MIN30.microseconds)

    def run_slot(self) -> None:
        """Simulate the next 30 minutes and deliver the slot through the A-route to the MDMS."""
        message = self.fleet.run_slot()
        if isinstance(self.clock, SteppedClock):
            self.clock.set(message.sent_at)  # as fast as possible: delivery at the slot end
        self.transport.publish(message)

    def run(
        self, end: dt.datetime, progress: Callable[[int, int], None] | None = None
    ) -> SimulationSummary:
        """Simulate up to ``end`` as fast as possible; ``progress(done, total)`` after each slot."""
        started = time.perf_counter()
        first = self.fleet.now
        total = (to_epoch_us(end) - self.fleet.meters.now_us) // Resolution.MIN30.microseconds
        done = 0
        while done < total:
            self.run_slot()
            done += 1
            if progress:
                progress(done, total)
        self.mdms.flush()
        return SimulationSummary(
            meters=self.config.n_meters,
            start=first,
            end=self.fleet.now,
            values_by_resolution=dict(sorted(self.hes.stats.values_by_resolution.items())),
            registers=self.hes.stats.registers,
            forward_kwh=float(self.fleet.energy_kwh[0]),
            reverse_kwh=float(self.fleet.energy_kwh[1]),
            seconds=time.perf_counter() - started,
        )

    def close(self) -> None:
        self.mdms.close()
        self.store.checkpoint()
        self.store.close()
