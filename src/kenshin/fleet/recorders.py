"""On-meter recorders as ring buffers of register snapshots for the whole fleet.

A meter derives every interval value from register differences (SPEC M5), so a recorder only needs
the register at each interval boundary: the value of a slot is ``register(end) - register(start)``
modulo 10**8. Keeping snapshots instead of values makes 2 × 15-min = 30-min and 6 × 5-min = 30-min
hold exactly by construction.

The ring holds ``depth`` snapshots of every meter. Real meters keep 30/15-min values for 45 days or
more (M3, M4); for big fleets that cannot live in memory, so the fleet sizes rings from a memory
budget and a lookup beyond the ring says so (:class:`~kenshin.errors.CapabilityError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from kenshin.core.channels import Channel
from kenshin.errors import CapabilityError


class SnapshotRing:
    """The last ``depth`` snapshots, taken every ``step_us`` microseconds, of some channels."""

    def __init__(
        self, n_meters: int, depth: int, step_us: int, channels: Mapping[Channel, np.dtype[Any]]
    ) -> None:
        if depth < 2:
            raise ValueError("a ring needs at least two snapshots to give one interval")
        self.depth = depth
        self.step_us = step_us
        self.data = {ch: np.zeros((depth, n_meters), dtype=dtype) for ch, dtype in channels.items()}
        self.times = np.full(depth, -1, dtype=np.int64)
        self._head = -1  # row of the newest snapshot

    @property
    def latest_us(self) -> int:
        return int(self.times[self._head]) if self._head >= 0 else -1

    def push(self, time_us: int, values: dict[Channel, npt.NDArray[np.generic]]) -> None:
        if self._head >= 0 and time_us != self.latest_us + self.step_us:
            raise ValueError("snapshots must be pushed at consecutive boundaries")
        self._head = (self._head + 1) % self.depth
        self.times[self._head] = time_us
        for ch, arr in self.data.items():
            arr[self._head] = values[ch]

    def rows_for(self, times_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Ring rows of the snapshots taken at ``times_us``; raises if any is not held."""
        latest = self.latest_us
        back = (latest - np.asarray(times_us, dtype=np.int64)) // self.step_us
        if (
            latest < 0
            or np.any(back < 0)
            or np.any(back >= self.depth)
            or np.any((latest - times_us) % self.step_us)
        ):
            raise CapabilityError(
                "requested snapshots are not held in the recorder "
                f"(it holds {self.depth} snapshots every {self.step_us // 60_000_000} min)"
            )
        rows = (self._head - back) % self.depth
        if np.any(self.times[rows] != times_us):
            raise CapabilityError("requested snapshots are older than the recorder's contents")
        return rows

    def last(self, channel: Channel, count: int) -> npt.NDArray[np.generic]:
        """The newest ``count`` snapshots of ``channel`` in time order, shape (count, n_meters)."""
        if count > self.depth:
            raise ValueError(f"ring holds {self.depth} snapshots, asked for {count}")
        rows = (self._head - np.arange(count - 1, -1, -1)) % self.depth
        return self.data[channel][rows]
