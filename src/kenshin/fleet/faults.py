"""Faults in the simulated world (issue 15 item 1; SPEC R1, R2): power outages at every level of
the topology, a customer's own breaker trip (which is not a grid outage), collectors that fail
while the meters behind them are fine, and restoration — scheduled in simulated time.

A de-energized meter counts nothing (its registers stand still, so its interval values for the
dark time are 0 and the interval/register invariants hold), sends nothing and answers nothing;
when power returns it resumes, and the head-end re-reads what it missed. Meters that can send a
last gasp do so with a probability (:data:`LAST_GASP_DELIVERY`): the radio has milliseconds of
stored energy and shares the channel with every other meter going dark at once, so a last gasp
is evidence, never a guarantee. Every meter reports ``POWER_RESTORE`` when it comes back.

A step is dark when the fault covers the step's start: faults are meant to begin and end on
5-minute boundaries, as the simulation steps.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from kenshin.core.meterspec import Generation
from kenshin.core.timeslots import to_epoch_us
from kenshin.errors import InvalidSetting
from kenshin.grid.topology import Topology

# share of last gasps that reach the head-end's side of the radio, by generation (a planning
# figure: vendors quote 80–95 % for a single meter and far less in a storm; gen-1 modules keep
# less energy in reserve)
LAST_GASP_DELIVERY = {Generation.GEN1: 0.5, Generation.GEN2: 0.8}


class Level(StrEnum):
    SUBSTATION = "substation"
    FEEDER = "feeder"
    TRANSFORMER = "transformer"  # pole transformer
    SERVICE_DROP = "service_drop"  # one customer's line from the pole
    BREAKER = "breaker"  # the customer's own main breaker: the grid is fine
    COLLECTOR = "collector"  # a collector or relay: meters fine, but unreachable

    @property
    def is_outage(self) -> bool:
        return self in OUTAGE_LEVELS


OUTAGE_LEVELS = (Level.SUBSTATION, Level.FEEDER, Level.TRANSFORMER, Level.SERVICE_DROP)


@dataclass(frozen=True, slots=True)
class Fault:
    """``level`` device ``device`` (a substation, feeder, transformer or collector number, or
    the meter key of a service drop or breaker) fails at ``start`` until ``end`` (None: until
    the end of the run)."""

    level: Level
    device: int
    start: dt.datetime
    end: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or (self.end is not None and self.end.tzinfo is None):
            raise InvalidSetting("fault times need a time zone")
        if self.end is not None and self.end <= self.start:
            raise InvalidSetting(f"a fault ends after it starts: {self.start} … {self.end}")
        if self.device < 0:
            raise InvalidSetting(f"device numbers are ≥ 0, got {self.device}")


class FaultSchedule:
    """The faults of a run, turned into per-meter masks at any instant."""

    def __init__(
        self, faults: tuple[Fault, ...], topology: Topology, n_collectors: int | None = None
    ):
        """``n_collectors``: the network's collector count, to check collector faults against
        (None: not known here, not checked)."""
        self.faults = faults
        self._topology = topology
        self._n_collectors = n_collectors or 0
        self._spans = [
            (
                f,
                to_epoch_us(f.start),
                np.iinfo(np.int64).max if f.end is None else to_epoch_us(f.end),
            )
            for f in faults
        ]
        n = len(topology.substation)
        for fault in faults:
            limit = {
                Level.SUBSTATION: int(topology.feeder_substation.max(initial=-1)) + 1,
                Level.FEEDER: topology.n_feeders,
                Level.TRANSFORMER: topology.n_transformers,
                Level.SERVICE_DROP: n,
                Level.BREAKER: n,
                Level.COLLECTOR: np.iinfo(np.int32).max if n_collectors is None else n_collectors,
            }[fault.level]
            if fault.device >= limit:
                raise InvalidSetting(f"no {fault.level} {fault.device} (this fleet has {limit:,})")

    def _members(self, fault: Fault) -> npt.NDArray[np.bool_]:
        topo = self._topology
        n = len(topo.substation)
        if fault.level is Level.SUBSTATION:
            return np.asarray(topo.substation == fault.device)
        if fault.level is Level.FEEDER:
            return np.asarray(topo.feeder == fault.device)
        if fault.level is Level.TRANSFORMER:
            return np.asarray(topo.transformer == fault.device)
        mask = np.zeros(n, dtype=bool)
        mask[fault.device] = True
        return mask

    def _active(self, at_us: int, levels: tuple[Level, ...]) -> list[Fault]:
        return [f for f, s, e in self._spans if f.level in levels and s <= at_us < e]

    def dark(self, at_us: int) -> npt.NDArray[np.bool_]:
        """Meters without grid power at ``at_us``."""
        mask = np.zeros(len(self._topology.substation), dtype=bool)
        for fault in self._active(at_us, OUTAGE_LEVELS):
            mask |= self._members(fault)
        return mask

    def breaker_open(self, at_us: int) -> npt.NDArray[np.bool_]:
        """Meters whose customer's own breaker is open at ``at_us`` (the meter is powered)."""
        mask = np.zeros(len(self._topology.substation), dtype=bool)
        for fault in self._active(at_us, (Level.BREAKER,)):
            mask[fault.device] = True
        return mask

    def collectors_down(self, at_us: int) -> npt.NDArray[np.bool_]:
        """Collectors that relay nothing at ``at_us``."""
        mask = np.zeros(self._n_collectors, dtype=bool)
        for fault in self._active(at_us, (Level.COLLECTOR,)):
            mask[fault.device] = True
        return mask

    @property
    def any(self) -> bool:
        return bool(self.faults)
