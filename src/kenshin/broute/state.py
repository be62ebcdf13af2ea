"""What a B-route node reads from the simulated fleet (SPEC B1–B3, M1, M2).

:class:`FleetState` adapts a :class:`~kenshin.fleet.simulator.Fleet` to the questions an
ECHONET Lite meter object answers: current registers, instantaneous power and currents, and the
register at past 30-minute and 1-minute boundaries. Every number is the fleet's own: registers are
the meter's 8-digit counts (SPEC M5), so ``count × coefficient × 10**unit_exponent`` is the
fleet's energy in kWh, which is what a HEMS computes from 0xE0 × 0xD3 × 0xE1.

Time: the data are as of ``fleet.now`` (the last 5-minute step); a slot or minute after it, or
older than the recorder holds, has no value (``None``, "no data" on the wire). The optional clock
only drives the meter's displayed time (0x97/0x98), so an accelerated clock can run between steps.

1-minute values (SPEC B3): forward registers come from ``MeterFleet.one_minute_registers`` (60
minutes kept). The fleet keeps reverse registers only every 5 minutes; inside a 5-minute step the
reverse register is interpolated linearly (whole counts, rounded down), so it is exact at every
5-minute boundary and never goes backwards. This is a documented simplification.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kenshin.core.channels import Channel
from kenshin.core.clock import Clock
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.timeslots import US_PER_MINUTE, Resolution, from_epoch_us, to_epoch_us
from kenshin.errors import CapabilityError, UnknownMeter
from kenshin.fleet.meters import MODULUS, STEP_MINUTES
from kenshin.fleet.recorders import SnapshotRing
from kenshin.fleet.simulator import Fleet

ONE_MINUTE_DEPTH = 60  # SPEC B3: 1-minute values are kept 60 minutes
_US_5 = Resolution.MIN5.microseconds


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """The fixed facts of one meter that a node needs."""

    key: int
    supply_point_id: str
    device_id: int
    meter_class: MeterClass
    generation: Generation
    unit_exponent: int  # one count is 10**unit_exponent kWh before the coefficient
    coefficient: int

    @property
    def is_low_voltage(self) -> bool:
        return self.meter_class.is_low_voltage

    @property
    def kwh_per_count(self) -> float:
        return float(10.0**self.unit_exponent) * self.coefficient


class FleetState:
    """Read-only view of a fleet for B-route nodes; caches per 5-minute step."""

    def __init__(self, fleet: Fleet, clock: Clock | None = None) -> None:
        self.fleet = fleet
        self.clock = clock
        self._start_us = to_epoch_us(fleet.config.start)
        self._cached_at = -1
        self._registers = np.zeros((3, 0), dtype=np.int64)
        self._power_w = np.zeros(0, dtype=np.int64)
        self._currents_da = np.zeros((2, 0), dtype=np.int64)
        self._minutes: dict[int, tuple[dict[int, int], int]] = {}

    # -- the roster

    def info(self, key: int) -> MeterInfo:
        pop = self.fleet.population
        if not 0 <= key < len(pop):
            raise UnknownMeter(f"no meter with key {key}")
        return MeterInfo(
            key=key,
            supply_point_id=str(pop.supply_point_id[key]),
            device_id=int(pop.device_id[key]),
            meter_class=MeterClass(int(pop.meter_class[key])),
            generation=Generation(int(pop.generation[key])),
            unit_exponent=int(pop.unit_exponent[key]),
            coefficient=int(pop.coefficient[key]),
        )

    def key_of(self, supply_point_id: str) -> int:
        (key,) = self.fleet.population.keys_of([supply_point_id])
        if key is None:
            raise UnknownMeter(f"no meter with supply point id {supply_point_id}")
        return key

    # -- time

    @property
    def data_us(self) -> int:
        """Epoch µs of the meters' latest values (the last 5-minute step)."""
        return self.fleet.meters.now_us

    def clock_now(self) -> dt.datetime:
        """The meter's displayed time (0x97/0x98): the clock if given, else the data time."""
        return self.clock.now() if self.clock is not None else from_epoch_us(self.data_us)

    # -- current values

    def _refresh(self) -> None:
        meters = self.fleet.meters
        if self._cached_at == meters.now_us:
            return
        self._registers = meters.registers()
        self._power_w = np.rint(meters.power_w).astype(np.int64)
        keys = np.arange(meters.n_meters, dtype=np.int64)
        amps = meters.instantaneous_current_a(keys)
        self._currents_da = np.rint(amps.astype(np.float64) * 10.0).astype(np.int64)
        self._minutes = {}
        self._cached_at = meters.now_us

    def registers(self, key: int) -> tuple[int, int, int]:
        """Current forward, reverse and reactive registers [counts] (SPEC M5)."""
        self._refresh()
        r = self._registers[:, key]
        return int(r[0]), int(r[1]), int(r[2])

    def power_w(self, key: int) -> int:
        """Instantaneous net active power [W]; negative when power flows back (PV)."""
        self._refresh()
        return int(self._power_w[key])

    def currents_da(self, key: int) -> tuple[int, int]:
        """Instantaneous R- and T-phase currents [0.1 A] as the fleet models them."""
        self._refresh()
        return int(self._currents_da[0, key]), int(self._currents_da[1, key])

    # -- recorders

    def half_hour_registers(
        self, key: int, times_us: Sequence[int]
    ) -> list[tuple[int, int, int] | None]:
        """Forward, reverse, reactive registers at 30-minute boundaries; ``None`` if not held."""
        ring = self.fleet.meters.ring30
        values = _ring_lookup(
            ring,
            key,
            times_us,
            (Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE, Channel.REACTIVE),
        )
        return [None if v is None else (v[0], v[1], v[2]) for v in values]

    def minute_registers(self, key: int, times_us: Sequence[int]) -> list[tuple[int, int] | None]:
        """Forward and reverse registers at 1-minute boundaries of the last 60 minutes (B3)."""
        forward, oldest = self._minute_forward(key)
        out: list[tuple[int, int] | None] = []
        rev_cache: dict[int, int | None] = {}
        for t in times_us:
            fwd = forward.get(int(t)) if t >= oldest else None
            rev = self._reverse_at(key, int(t), rev_cache) if fwd is not None else None
            out.append(None if fwd is None or rev is None else (fwd, rev))
        return out

    def _minute_forward(self, key: int) -> tuple[dict[int, int], int]:
        self._refresh()
        cached = self._minutes.get(key)
        if cached is not None:
            return cached
        meters = self.fleet.meters
        times, regs = meters.one_minute_registers(np.array([key]), ONE_MINUTE_DEPTH)
        oldest = max(int(times[0]), self._start_us)
        table = {int(t): int(r) for t, r in zip(times, regs[:, 0], strict=True) if t >= oldest}
        self._minutes[key] = (table, oldest)
        return table, oldest

    def _reverse_at(self, key: int, t: int, cache: dict[int, int | None]) -> int | None:
        base = t - t % _US_5
        if base not in cache:
            cache[base] = _single(self.fleet.meters.ring5, key, base, Channel.ACTIVE_REVERSE)
        start = cache[base]
        if start is None:
            return None
        if t == base:
            return start
        end_t = base + _US_5
        if end_t not in cache:
            cache[end_t] = _single(self.fleet.meters.ring5, key, end_t, Channel.ACTIVE_REVERSE)
        end = cache[end_t]
        if end is None:
            return None
        step = (end - start) % MODULUS
        minutes = (t - base) // US_PER_MINUTE
        return int((start + step * minutes // STEP_MINUTES) % MODULUS)


def _single(ring: SnapshotRing, key: int, t: int, channel: Channel) -> int | None:
    found = _ring_lookup(ring, key, [t], (channel,))[0]
    return None if found is None else int(found[0])


def _ring_lookup(
    ring: SnapshotRing, key: int, times_us: Sequence[int], channels: tuple[Channel, ...]
) -> list[tuple[int, ...] | None]:
    """Snapshot values at ``times_us`` (``None`` where the ring has none), one lookup per time."""
    out: list[tuple[int, ...] | None] = []
    latest = ring.latest_us
    for t in times_us:
        if latest < 0 or t > latest or (latest - t) % ring.step_us:
            out.append(None)
            continue
        try:
            row = int(ring.rows_for(np.array([t], dtype=np.int64))[0])
        except CapabilityError:
            out.append(None)
            continue
        out.append(tuple(int(ring.data[ch][row, key]) for ch in channels))
    return out


def floor_us(t_us: int, step_us: int) -> int:
    """``t_us`` rounded down to a multiple of ``step_us``."""
    return t_us - t_us % step_us


__all__ = ["ONE_MINUTE_DEPTH", "FleetState", "MeterInfo", "floor_us"]
