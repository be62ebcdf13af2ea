"""What each meter sends over the A-route every 30 minutes, chosen by its specification.

- SPEC A1: every meter, every 30-min active energy value (forward, reverse; reactive on HV).
- SPEC A5: 15-min values of next-generation meters, when the soft switch says so.
- SPEC A2/A3: 5-min values of a sample of next-generation meters, drawn separately among the LV
  meters (active, reactive and voltage; every pole transformer has a sampled meter where
  possible) and the HV/EHV meters (active and reactive: no voltage, SPEC A2, M2).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kenshin.aroute.messages import IntervalBlock, RegisterBlock, UplinkMessage
from kenshin.core.channels import Channel
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.timeslots import Resolution
from kenshin.fleet.meters import MeterFleet, snapshot_differences
from kenshin.fleet.population import Population

Keys = npt.NDArray[np.int32]


def choose_5min_sample(
    population: Population, share_lv: float, share_hv: float, rng: np.random.Generator
) -> npt.NDArray[np.bool_]:
    """The A2 sample: ``share_lv`` of the LV meters, at least one per pole transformer where
    possible, and, drawn separately, ``share_hv`` of the HV/EHV meters (SPEC A2: each share is a
    per-utility setting). Only next-generation meters record 5-min values (M1–M3)."""
    n = len(population)
    chosen = np.zeros(n, dtype=bool)
    gen2 = population.generation == Generation.GEN2
    hv = population.meter_class >= MeterClass.HV
    for high_voltage, share in ((False, share_lv), (True, share_hv)):
        in_class = hv == high_voltage
        target = round(share * int(in_class.sum()))
        candidates = np.flatnonzero(gen2 & in_class)
        if target <= 0 or len(candidates) == 0:
            continue
        shuffled = candidates[rng.permutation(len(candidates))]
        if not high_voltage:  # one per pole transformer first (HV meters have none)
            tx = population.topology.transformer[shuffled]
            _, first = np.unique(tx, return_index=True)
            per_transformer = shuffled[first][rng.permutation(len(first))][:target]
            chosen[per_transformer] = True
            target -= len(per_transformer)
        rest = shuffled[~chosen[shuffled]]
        chosen[rest[: max(0, target)]] = True
    return chosen


def choose_samples(
    population: Population,
    share_lv: float,
    share_hv: float,
    realtime_share: float,
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """The A2 samples (LV and HV/EHV, :func:`choose_5min_sample`) and the A3 real-time sample:
    ``realtime_share`` of the LV meters, drawn from the LV A2 sample (SPEC A3 is LV only)."""
    a2 = choose_5min_sample(population, share_lv, share_hv, rng)
    a3 = np.zeros_like(a2)
    lv = population.meter_class < MeterClass.HV
    candidates = np.flatnonzero(a2 & lv)
    take = min(len(candidates), round(realtime_share * int(lv.sum())))
    a3[rng.permutation(candidates)[:take]] = True
    return a2, a3


@dataclass(frozen=True, slots=True)
class UplinkPlan:
    """Which meters send which blocks; fixed index arrays so each slot costs a few gathers."""

    all_meters: Keys
    hv: Keys  # 30-min reactive
    fifteen: Keys  # A5
    five: Keys  # A2/A3 sample
    five_voltage: Keys  # sampled LV meters

    @classmethod
    def build(
        cls, population: Population, sampled: npt.NDArray[np.bool_], send_15min: bool
    ) -> UplinkPlan:
        gen2 = population.generation == Generation.GEN2
        hv = population.meter_class >= MeterClass.HV
        keys = population.meter_key

        def where(mask: npt.NDArray[np.bool_]) -> Keys:
            return keys[mask].astype(np.int32)

        return cls(
            all_meters=keys.astype(np.int32),
            hv=where(hv),
            fifteen=where(gen2) if send_15min else np.empty(0, dtype=np.int32),
            five=where(sampled & gen2),
            five_voltage=where(sampled & gen2 & ~hv),
        )


def _block(
    meters: MeterFleet, resolution: Resolution, channel: Channel, keys: Keys, per_slot: int
) -> IntervalBlock:
    snaps = meters.ring(resolution).last(channel, per_slot + 1)[:, keys]
    ends = meters.now_us - np.arange(per_slot - 1, -1, -1, dtype=np.int64) * resolution.microseconds
    return IntervalBlock(resolution, channel, keys, ends, snapshot_differences(snaps, channel))


def build_slot_message(
    meters: MeterFleet, plan: UplinkPlan, collector: str, sent_at: dt.datetime
) -> UplinkMessage:
    """The delivery for the 30-min slot that just ended at ``meters.now_us``."""
    if meters.now_us % Resolution.MIN30.microseconds:
        raise ValueError("slot messages are built at 30-min boundaries")
    fwd, rev, q, v = (
        Channel.ACTIVE_FORWARD,
        Channel.ACTIVE_REVERSE,
        Channel.REACTIVE,
        Channel.VOLTAGE,
    )
    wanted: list[tuple[Resolution, Channel, Keys, int]] = [
        (Resolution.MIN30, fwd, plan.all_meters, 1),
        (Resolution.MIN30, rev, plan.all_meters, 1),
        (Resolution.MIN30, q, plan.hv, 1),
        (Resolution.MIN15, fwd, plan.fifteen, 2),
        (Resolution.MIN15, rev, plan.fifteen, 2),
        (Resolution.MIN5, fwd, plan.five, 6),
        (Resolution.MIN5, rev, plan.five, 6),
        (Resolution.MIN5, q, plan.five, 6),
        (Resolution.MIN5, v, plan.five_voltage, 6),
    ]
    blocks = tuple(_block(meters, res, ch, keys, k) for res, ch, keys, k in wanted if len(keys))
    ring30 = meters.ring30
    registers = tuple(
        RegisterBlock(ch, keys, meters.now_us, ring30.last(ch, 1)[0, keys])
        for ch, keys in ((fwd, plan.all_meters), (rev, plan.all_meters), (q, plan.hv))
        if len(keys)
    )
    return UplinkMessage(
        collector=collector, sent_at=sent_at, intervals=blocks, registers=registers
    )


def start_registers_message(
    meters: MeterFleet, plan: UplinkPlan, collector: str, sent_at: dt.datetime
) -> UplinkMessage:
    """The register reads at the fleet's start (the reading taken when the meters went live), so
    that the first slot of the first day has a register at both ends (SPEC M5)."""
    registers = meters.registers()
    blocks = tuple(
        RegisterBlock(ch, keys, meters.now_us, registers[row, keys])
        for row, ch, keys in (
            (0, Channel.ACTIVE_FORWARD, plan.all_meters),
            (1, Channel.ACTIVE_REVERSE, plan.all_meters),
            (2, Channel.REACTIVE, plan.hv),
        )
        if len(keys)
    )
    return UplinkMessage(collector=collector, sent_at=sent_at, intervals=(), registers=blocks)
