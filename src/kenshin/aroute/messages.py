"""Uplink messages from meters (through collectors) to the head-end, in columnar form.

One message carries many meters' values for one delivery: blocks of interval values, each block one
(resolution, channel) with a (slots × meters) matrix, plus the register reads at the slot end.
Columnar blocks keep the wire path at one Python object per message, not per reading
(ARCHITECTURE principle 2). The binary, authenticated frame format of the A-route is built on top
of these in the A-route issue; the in-process transport passes them as they are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kenshin.core.channels import Channel
from kenshin.core.timeslots import Resolution


@dataclass(frozen=True, slots=True)
class IntervalBlock:
    """Interval values of one channel at one resolution for some meters."""

    resolution: Resolution
    channel: Channel
    meter_keys: npt.NDArray[np.int32]  # (m,)
    interval_ends_us: npt.NDArray[np.int64]  # (k,) epoch µs, the end of each slot
    values: npt.NDArray[np.int32]  # (k, m) [register counts] or [0.1 V]

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.interval_ends_us), len(self.meter_keys)):
            raise ValueError(
                f"values shape {self.values.shape} does not match "
                f"{len(self.interval_ends_us)} slots × {len(self.meter_keys)} meters"
            )

    @property
    def n_values(self) -> int:
        return int(self.values.size)


@dataclass(frozen=True, slots=True)
class RegisterBlock:
    """Register reads of one channel for some meters at one instant (SPEC M5)."""

    channel: Channel
    meter_keys: npt.NDArray[np.int32]
    read_at_us: int
    registers: npt.NDArray[np.int32]  # [register counts]


@dataclass(frozen=True, slots=True)
class UplinkMessage:
    """What one collector delivers to the head-end at once."""

    collector: str
    sent_at: dt.datetime
    intervals: tuple[IntervalBlock, ...]
    registers: tuple[RegisterBlock, ...] = ()

    @property
    def n_values(self) -> int:
        return sum(b.n_values for b in self.intervals)
