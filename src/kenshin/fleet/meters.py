"""The meters of a fleet: energy accumulators, 8-digit registers and recorders, vectorized.

Each step the simulator hands the meters each customer's mean load, PV and reactive power. A
meter integrates them into exact energy accumulators [mWh], and its registers show
``(initial + accumulated // count) mod 10**8`` (SPEC M5). Every interval value anywhere in kenshin
is a difference of two register snapshots, so interval sums always equal register deltas.

The model steps every 5 minutes. 1-minute values (SPEC M1, M2, B3) are derived on demand: the
energy of a 5-min step is spread over its five minutes by weights from a counter-based hash of
(seed, meter, minute), so any minute can be recomputed later without holding a day of 1-minute
values, and the five 1-minute register steps add up exactly to the 5-minute one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kenshin.core.channels import Channel
from kenshin.core.meterspec import (
    DEFAULT_RETENTION_5,
    DEFAULT_RETENTION_30_15,
    Generation,
    MeterClass,
    MeterSpec,
    meter_spec,
)
from kenshin.core.registers import REGISTER_DIGITS
from kenshin.core.switch import SwitchState
from kenshin.core.timeslots import US_PER_MINUTE, Resolution, to_epoch_us
from kenshin.fleet.population import Population
from kenshin.fleet.recorders import SnapshotRing

MODULUS = 10**REGISTER_DIGITS
STEP_MINUTES = 5
_SEED_TAG = 0x4D45544552  # "METER"


@dataclass(frozen=True, slots=True)
class RecorderPlan:
    """How many snapshots each in-memory recorder keeps."""

    depth_5: int
    depth_15: int
    depth_30: int

    @classmethod
    def from_budget(
        cls,
        n_meters: int,
        budget_bytes: int,
        retention: Mapping[Resolution, dt.timedelta] | None = None,
    ) -> RecorderPlan:
        """Keep the recording period of each resolution (M4; default the spec's) where the
        budget allows, at least what values need. A value is held for its whole period: the one
        that ended ``period`` ago needs the snapshot before it, so a period is
        ``period / resolution + 2`` snapshots."""
        periods = {
            Resolution.MIN30: DEFAULT_RETENTION_30_15,
            Resolution.MIN15: DEFAULT_RETENTION_30_15,
            Resolution.MIN5: DEFAULT_RETENTION_5,
            **(retention or {}),
        }
        per_meter = max(1, n_meters)
        share = budget_bytes // 3

        def depth(resolution: Resolution, bytes_per_snapshot: int) -> int:
            wanted = periods[resolution] // dt.timedelta(minutes=int(resolution)) + 2
            return min(wanted, share // (bytes_per_snapshot * per_meter))

        # bytes per snapshot and meter: 5-min 3 × int32 + int16 voltage; 15-min 2 × int32;
        # 30-min 3 × int32
        d5 = depth(Resolution.MIN5, 14)
        d15 = depth(Resolution.MIN15, 8)
        d30 = depth(Resolution.MIN30, 12)
        return cls(depth_5=max(d5, 13), depth_15=max(d15, 3), depth_30=max(d30, 3))


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def snapshot_differences(snaps: npt.NDArray[np.generic], channel: Channel) -> npt.NDArray[np.int32]:
    """Interval values from consecutive snapshots (axis 0): register steps mod 10**8 (M5), or the
    snapshot itself for voltage."""
    if channel is Channel.VOLTAGE:
        return snaps[1:].astype(np.int32)
    step = snaps[1:].astype(np.int32) - snaps[:-1].astype(np.int32)  # |step| < 10**8 fits int32
    step += np.int32(MODULUS) * (step < 0)
    return step


class MeterFleet:
    """State of every meter: registers, recorders, instantaneous values, switch and ampere limit."""

    def __init__(
        self,
        population: Population,
        seed: int,
        start: dt.datetime,
        recorder_budget_bytes: int = 256 * 2**20,
        *,
        recording_period_30_15: dt.timedelta = DEFAULT_RETENTION_30_15,
        recording_period_5: dt.timedelta = DEFAULT_RETENTION_5,
    ) -> None:
        start_us = to_epoch_us(start)
        if start_us % Resolution.MIN30.microseconds:
            raise ValueError(f"the fleet must start on a 30-min boundary, got {start.isoformat()}")
        n = len(population)
        self.population = population
        self.seed = seed
        self.now_us = start_us
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SEED_TAG]))

        # Registers start anywhere; ~1 % start within a few days of rolling over (M5).
        self.initial_count = np.empty((3, n), dtype=np.int64)
        self.initial_count[:] = rng.integers(0, MODULUS // 10, (3, n))
        near = rng.random(n) < 0.01
        self.initial_count[0, near] = MODULUS - rng.integers(1, 2000, int(near.sum()))
        # a customer without generation has never sent energy back: its reverse register
        # reads what the meter was installed with, 0 (a household without PV showed 34,639 kWh)
        self.initial_count[1, population.pv_kw <= 0] = 0
        self.mwh_per_count = np.rint(population.kwh_per_count * 1e6).astype(np.int64)
        # registers as the meter shows them, and energy not yet worth a whole count [mWh]
        self._registers = self.initial_count.copy()
        self._remainder_mwh = np.zeros((3, n), dtype=np.int64)
        self._forward_counts = np.zeros(n, dtype=np.int64)  # since start, never wraps

        # the switch (core.switch: connected, disconnected, tripped, locked out); the limiter
        # and remote commands move it
        self.switch_state = np.full(n, int(SwitchState.CONNECTED), dtype=np.int8)
        self.has_switch = np.isin(
            population.meter_class, [int(MeterClass.LV_1P2W), int(MeterClass.LV_1P3W)]
        )
        self.ampere_limit_a = population.contract_a.astype(np.int16).copy()
        # an emergency profile (issue 16; DLMS limiter): a limit in force for a period only,
        # after which the meter goes back to ``ampere_limit_a`` by itself
        self.profile_limit_a = np.zeros(n, dtype=np.int16)
        self.profile_start_us = np.zeros(n, dtype=np.int64)
        self.profile_end_us = np.zeros(n, dtype=np.int64)  # 0: no profile
        # the next profile, given while one runs: it takes over at its start
        self.next_limit_a = np.zeros(n, dtype=np.int16)
        self.next_start_us = np.zeros(n, dtype=np.int64)
        self.next_end_us = np.zeros(n, dtype=np.int64)
        self.power_w = np.zeros(n, dtype=np.float32)  # instantaneous net active power [W]
        self.voltage_dv = np.zeros(n, dtype=np.int16)

        # SPEC M4: how long each meter keeps its values, the utility's recording periods for
        # next-generation meters (gen-1 keeps 45 days, M3); the rings hold the longest of them
        self.specs: dict[tuple[int, int], MeterSpec] = {
            (g, c): meter_spec(
                Generation(g),
                MeterClass(c),
                retention_30_15=recording_period_30_15,
                retention_5=recording_period_5,
            )
            for g, c in np.unique(
                np.stack([population.generation, population.meter_class], axis=1).astype(np.int64),
                axis=0,
            ).tolist()
        }
        longest = {
            resolution: max(
                (s.retention[resolution] for s in self.specs.values() if resolution in s.retention),
                default=dt.timedelta(0),
            )
            for resolution in (Resolution.MIN30, Resolution.MIN15, Resolution.MIN5)
        }
        plan = RecorderPlan.from_budget(n, recorder_budget_bytes, longest)
        i32, i16 = np.dtype(np.int32), np.dtype(np.int16)
        energy3 = {Channel.ACTIVE_FORWARD: i32, Channel.ACTIVE_REVERSE: i32, Channel.REACTIVE: i32}
        self.ring5 = SnapshotRing(
            n, plan.depth_5, Resolution.MIN5.microseconds, {**energy3, Channel.VOLTAGE: i16}
        )
        self.ring15 = SnapshotRing(
            n,
            plan.depth_15,
            Resolution.MIN15.microseconds,
            {Channel.ACTIVE_FORWARD: i32, Channel.ACTIVE_REVERSE: i32},
        )
        self.ring30 = SnapshotRing(n, plan.depth_30, Resolution.MIN30.microseconds, energy3)
        # exact forward accumulators at 5-min boundaries: the base of 1-minute values (B3)
        self.acc_ring = SnapshotRing(
            n, 13, Resolution.MIN5.microseconds, {Channel.ACTIVE_FORWARD: np.dtype(np.int64)}
        )
        self._snapshot()

    @property
    def n_meters(self) -> int:
        return len(self.population)

    def spec_of(self, meter_key: int) -> MeterSpec:
        """What one meter records and how long it keeps it (SPEC M1–M4)."""
        pop = self.population
        return self.specs[(int(pop.generation[meter_key]), int(pop.meter_class[meter_key]))]

    def holds(self, meter_key: int, resolution: Resolution, first_end_us: int) -> bool:
        """Whether the meter still keeps its ``resolution`` values from the one ending at
        ``first_end_us`` on: within its recording period (M4). The rings may hold more (they
        are as deep as the longest period of any meter) or less (the memory budget)."""
        period = self.spec_of(meter_key).retention.get(resolution)
        if period is None:
            return False
        return first_end_us >= self.now_us - period // dt.timedelta(microseconds=1)

    def registers(self) -> npt.NDArray[np.int64]:
        """Current register counts, shape (3, n): forward, reverse, reactive."""
        return self._registers.copy()

    def preset_registers(self, registers: npt.NDArray[np.int64]) -> None:
        """Set the registers, shape (3, n), as a technician presets a replaced meter; the next
        interval value starts from them."""
        values = np.asarray(registers, dtype=np.int64)
        if values.shape != self._registers.shape or values.min() < 0 or values.max() >= MODULUS:
            raise ValueError(f"registers must have shape {self._registers.shape} and 8 digits")
        self._registers[:] = values

    def forward_accumulated_mwh(self) -> npt.NDArray[np.int64]:
        """Exact forward energy since the fleet started [mWh] (base of 1-minute values)."""
        total: npt.NDArray[np.int64] = self._forward_counts * self.mwh_per_count
        total += self._remainder_mwh[0]
        return total

    def limit_in_force(self, at_us: int) -> npt.NDArray[np.int16]:
        """Each meter's ampere limit at ``at_us``: its emergency profile's while one runs."""
        running = (self.profile_start_us <= at_us) & (at_us < self.profile_end_us)
        following = (self.next_start_us <= at_us) & (at_us < self.next_end_us)
        if not running.any() and not following.any():
            return self.ampere_limit_a
        limits: npt.NDArray[np.int16] = np.where(
            following,
            self.next_limit_a,
            np.where(running, self.profile_limit_a, self.ampere_limit_a),
        )
        return limits

    def set_profile(self, key: int, limit_a: int, start_us: int, end_us: int) -> None:
        """An emergency profile for one meter: it replaces the one running unless it starts
        later, then it follows it (the one running stays in force until then). One starting
        now replaces the follower too (a rollback: nothing queued comes back after it)."""
        now = self.now_us
        if self.next_start_us[key] <= now < self.next_end_us[key]:  # the follower took over
            self.profile_limit_a[key] = self.next_limit_a[key]
            self.profile_start_us[key] = self.next_start_us[key]
            self.profile_end_us[key] = self.next_end_us[key]
        self.next_end_us[key] = 0 if self.next_start_us[key] <= now else self.next_end_us[key]
        running = self.profile_start_us[key] <= now < self.profile_end_us[key]
        if start_us > now and running:
            self.next_limit_a[key], self.next_start_us[key] = limit_a, start_us
            self.next_end_us[key] = end_us
            return
        self.next_end_us[key] = 0  # replaced with the one running
        self.profile_limit_a[key], self.profile_start_us[key] = limit_a, start_us
        self.profile_end_us[key] = end_us

    @property
    def switch_closed(self) -> npt.NDArray[np.bool_]:
        """Whether each switch is connected now (a view: move it through ``switch_state``)."""
        closed: npt.NDArray[np.bool_] = self.switch_state == SwitchState.CONNECTED
        return closed

    def advance(
        self,
        load_w: npt.NDArray[np.float64],
        pv_w: npt.NDArray[np.float64],
        reactive_var: npt.NDArray[np.float64],
        voltage_dv: npt.NDArray[np.int16],
        minutes: int = STEP_MINUTES,
        powered: npt.NDArray[np.bool_] | None = None,
        flowing: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """Integrate one step of mean powers [W, var] and move the meters' clock on.
        ``powered``: False where the meter has no grid power this step (it counts nothing and
        measures no voltage; its registers stand still). ``flowing``: where the switch was
        closed for some of the step (the powers are then already its share; default: where it
        is closed now)."""
        if minutes != STEP_MINUTES:
            raise ValueError(f"meters step {STEP_MINUTES} minutes at a time")
        closed = self.switch_closed if flowing is None else flowing
        closed = closed if powered is None else closed & powered
        net_w = np.where(closed, load_w - pv_w, 0.0)
        mwh_per_w = minutes / 60.0 * 1000.0
        energy = np.empty((3, len(net_w)))
        np.maximum(net_w, 0.0, out=energy[0])
        np.maximum(-net_w, 0.0, out=energy[1])
        np.multiply(reactive_var, closed, out=energy[2])
        energy *= mwh_per_w
        # whole counts move the registers; the rest waits for the next step, so nothing is lost
        self._remainder_mwh += np.rint(energy).astype(np.int64)
        advanced = self._remainder_mwh // self.mwh_per_count
        self._remainder_mwh -= advanced * self.mwh_per_count
        self._registers += advanced
        self._forward_counts += advanced[0]
        self._registers -= MODULUS * (self._registers >= MODULUS)
        now_closed = self.switch_closed if powered is None else self.switch_closed & powered
        self.power_w = np.where(now_closed, net_w, 0.0).astype(np.float32)
        self.voltage_dv = np.where(now_closed, voltage_dv, 0).astype(np.int16)
        self.now_us += minutes * US_PER_MINUTE
        self._snapshot()

    def instantaneous_current_a(self, meter_keys: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """R- and T-phase currents of some meters now, shape (2, m) [A] (SPEC M1: on demand)."""
        keys = np.asarray(meter_keys, dtype=np.int64)
        cls = self.population.meter_class[keys]
        volts = np.maximum(self.voltage_dv[keys].astype(np.float32) / 10.0, 1.0)
        amps = np.abs(self.power_w[keys]) / volts
        three_phase = cls == MeterClass.LV_3P3W
        two_wire = cls == MeterClass.LV_1P2W
        # 1P3W: the load splits over the two 100 V legs; 3P3W: P = √3·V·I
        r = np.where(
            two_wire, amps, np.where(three_phase, amps / np.float32(np.sqrt(3.0)), amps * 0.55)
        )
        t = np.where(two_wire, 0.0, np.where(three_phase, r, amps * 0.45))
        # HV/EHV: three-phase at the line voltage the meter's instrument transformers see (M2)
        line_v = np.where(cls == MeterClass.EHV, 22_000.0, 6_600.0).astype(np.float32)
        hv_amps = np.abs(self.power_w[keys]) / (np.float32(np.sqrt(3.0)) * line_v)
        hv = cls >= MeterClass.HV
        return np.stack([np.where(hv, hv_amps, r), np.where(hv, hv_amps, t)]).astype(np.float32)

    def _snapshot(self) -> None:
        regs = self._registers.astype(np.int32)
        values = {
            Channel.ACTIVE_FORWARD: regs[0],
            Channel.ACTIVE_REVERSE: regs[1],
            Channel.REACTIVE: regs[2],
            Channel.VOLTAGE: self.voltage_dv,
        }
        t = self.now_us
        self.ring5.push(t, values)
        self.acc_ring.push(t, {Channel.ACTIVE_FORWARD: self.forward_accumulated_mwh()})
        if t % Resolution.MIN15.microseconds == 0:
            self.ring15.push(t, values)
        if t % Resolution.MIN30.microseconds == 0:
            self.ring30.push(t, values)

    def ring(self, resolution: Resolution) -> SnapshotRing:
        return {
            Resolution.MIN5: self.ring5,
            Resolution.MIN15: self.ring15,
            Resolution.MIN30: self.ring30,
        }[resolution]

    def interval_values(
        self, resolution: Resolution, channel: Channel, count: int
    ) -> npt.NDArray[np.int64]:
        """The last ``count`` interval values of every meter, shape (count, n), oldest first.

        Energy channels are register differences [counts]; voltage is the snapshot [0.1 V].
        """
        snaps = self.ring(resolution).last(channel, count + 1)
        return snapshot_differences(snaps, channel).astype(np.int64)

    def one_minute_registers(
        self, meter_keys: npt.NDArray[np.int64], minutes: int = 60
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Forward registers at the last ``minutes`` + 1 minute boundaries (B3).

        Returns (epoch-µs times, registers of shape (minutes + 1, len(meter_keys))). The five
        minutes of a step share its energy by hashed weights, so differences are the 1-min values.
        """
        if not 1 <= minutes <= 60:
            raise ValueError("the meter keeps 1-minute values for 60 minutes (SPEC B3)")
        keys = np.asarray(meter_keys, dtype=np.int64)
        steps = -(-minutes // STEP_MINUTES)
        base = self.acc_ring.last(Channel.ACTIVE_FORWARD, steps + 1)[:, keys].astype(np.int64)
        step_start_us = self.now_us - np.arange(steps, -1, -1) * Resolution.MIN5.microseconds
        # minute indexes since the epoch of the minutes inside each step, shape (steps, 5)
        first_minute = step_start_us[:-1] // US_PER_MINUTE
        minute_idx = first_minute[:, None] + np.arange(STEP_MINUTES)[None, :]
        weights = self._minute_weights(minute_idx, keys)  # (steps, 5, m)
        cumulative = np.cumsum(weights, axis=1)
        delta = base[1:] - base[:-1]  # (steps, m)
        inside = base[:-1, None, :] + delta[:, None, :] * cumulative // cumulative[:, -1:, :]
        acc = np.concatenate([base[:1], inside.reshape(steps * STEP_MINUTES, len(keys))])
        regs = (self.initial_count[0, keys] + acc // self.mwh_per_count[keys]) % MODULUS
        times = self.now_us - np.arange(steps * STEP_MINUTES, -1, -1) * US_PER_MINUTE
        return times[-(minutes + 1) :], regs[-(minutes + 1) :]

    def _minute_weights(
        self, minute_idx: npt.NDArray[np.int64], keys: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        seed = np.uint64(self.seed & 0xFFFFFFFF) << np.uint64(32)
        mixed = _splitmix64(
            (minute_idx.astype(np.uint64)[..., None] * np.uint64(0x100000001B3))
            ^ (keys.astype(np.uint64)[None, None, :] + seed)
        )
        return (mixed >> np.uint64(54)).astype(np.int64) + 64  # 64 … 1087

    def energy_registers(self, meter_keys: npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
        """Forward and reverse registers of some meters now, shape (2, m) (specified meters)."""
        return self._registers[:2, meter_keys]
