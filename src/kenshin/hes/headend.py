"""The head-end turns uplink messages into Arrow reading batches for the MDMS.

It owns no storage: it hands every batch to a :class:`ReadingSink` (the MDMS). It keeps delivery
statistics per resolution, the seed of the SLO metrics of SPEC A1–A3.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from kenshin.aroute.messages import UplinkMessage
from kenshin.core.batches import ReadingBatch, ReadingSink, received_readings, register_reads_table
from kenshin.core.clock import Clock
from kenshin.core.quality import Source
from kenshin.core.timeslots import to_epoch_us


@dataclass
class DeliveryStats:
    messages: int = 0
    values_by_resolution: Counter[int] = field(default_factory=Counter)
    registers: int = 0
    max_delay_s: float = 0.0

    @property
    def values(self) -> int:
        return sum(self.values_by_resolution.values())


def message_to_batch(message: UplinkMessage, tx_time_us: int) -> ReadingBatch:
    """Long rows for every value in ``message``; one array operation per block."""
    keys, channels, resolutions, ends, values = [], [], [], [], []
    for block in message.intervals:
        k, m = block.values.shape
        keys.append(np.tile(block.meter_keys, k))
        ends.append(np.repeat(block.interval_ends_us, m))
        values.append(block.values.reshape(-1))
        channels.append(np.full(k * m, int(block.channel), dtype=np.uint8))
        resolutions.append(np.full(k * m, int(block.resolution), dtype=np.uint8))

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)

    readings = received_readings(
        cat(keys, np.int32),
        cat(channels, np.uint8),
        cat(resolutions, np.uint8),
        cat(ends, np.int64),
        cat(values, np.int32),
        int(Source.METER_PUSH),
        tx_time_us,
    )
    regs = message.registers
    registers = register_reads_table(
        cat([b.meter_keys for b in regs], np.int32),
        cat([np.full(len(b.meter_keys), int(b.channel)) for b in regs], np.uint8),
        cat([np.full(len(b.meter_keys), b.read_at_us) for b in regs], np.int64),
        cat([b.registers for b in regs], np.int32),
        int(Source.METER_PUSH),
        tx_time_us,
    )
    return ReadingBatch(readings=readings, registers=registers)


class DirectHeadEnd:
    """Receives columnar uplink messages in-process, trusted as they are (the ``direct`` A-route
    mode of big simulations; the authenticated wire path is :class:`kenshin.hes.service.HeadEnd`).
    """

    def __init__(self, sink: ReadingSink, clock: Clock) -> None:
        self._sink = sink
        self._clock = clock
        self.stats = DeliveryStats()

    def receive(self, message: UplinkMessage) -> None:
        now = self._clock.now()
        now_us = to_epoch_us(now)
        batch = message_to_batch(message, now_us)
        self.stats.messages += 1
        for block in message.intervals:
            self.stats.values_by_resolution[int(block.resolution)] += block.n_values
            delay_s = (now_us - int(block.interval_ends_us.max())) / 1e6
            self.stats.max_delay_s = max(self.stats.max_delay_s, delay_s)
        self.stats.registers += batch.registers.num_rows
        self._sink.ingest(batch)
