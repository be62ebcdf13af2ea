"""The head-end turns uplink messages into Arrow reading batches for the MDMS.

It owns no storage: it hands every batch to a :class:`ReadingSink` (the MDMS). It keeps delivery
statistics per resolution, the seed of the SLO metrics of SPEC A1–A3.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pyarrow as pa

from kenshin.aroute.messages import UplinkMessage
from kenshin.core.clock import Clock
from kenshin.core.quality import EstimationMethod, Quality, Source
from kenshin.core.schema import READINGS_SCHEMA, REGISTER_READS_SCHEMA, TIMESTAMP
from kenshin.core.timeslots import to_epoch_us


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Readings and register reads of one delivery, as Arrow tables."""

    readings: pa.Table
    registers: pa.Table

    @property
    def num_rows(self) -> int:
        return int(self.readings.num_rows)


class ReadingSink(Protocol):
    def ingest(self, batch: ReadingBatch) -> None: ...


@dataclass
class DeliveryStats:
    messages: int = 0
    values_by_resolution: Counter[int] = field(default_factory=Counter)
    registers: int = 0
    max_delay_s: float = 0.0

    @property
    def values(self) -> int:
        return sum(self.values_by_resolution.values())


_CONSTANTS: dict[tuple[int, str], pa.Array] = {}


def _constant(value: int, n: int, type_: pa.DataType) -> pa.Array:
    """A column of one value; slices of a cached array cost nothing per batch."""
    key = (value, str(type_))
    cached = _CONSTANTS.get(key)
    if cached is None or len(cached) < n:
        cached = pa.array(np.full(max(n, 1 << 20), value), type=type_)
        _CONSTANTS[key] = cached
    return cached.slice(0, n)


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
    n = sum(len(v) for v in values)

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)

    readings = pa.Table.from_arrays(
        [
            pa.array(cat(keys, np.int32)),
            pa.array(cat(channels, np.uint8)),
            pa.array(cat(resolutions, np.uint8)),
            pa.array(cat(ends, np.int64)).cast(TIMESTAMP),
            pa.array(cat(values, np.int32)),
            _constant(int(Quality.RAW), n, pa.uint8()),
            _constant(int(Source.METER_PUSH), n, pa.uint8()),
            _constant(int(EstimationMethod.NONE), n, pa.uint8()),
            _constant(0, n, pa.uint16()),
            pa.repeat(pa.scalar(tx_time_us, pa.int64()), n).cast(TIMESTAMP),
        ],
        schema=READINGS_SCHEMA,
    )
    r_keys = [b.meter_keys for b in message.registers]
    r_n = sum(len(k) for k in r_keys)
    registers = pa.Table.from_arrays(
        [
            pa.array(cat(r_keys, np.int32)),
            pa.array(
                cat(
                    [np.full(len(b.meter_keys), int(b.channel)) for b in message.registers],
                    np.uint8,
                )
            ),
            pa.array(
                cat([np.full(len(b.meter_keys), b.read_at_us) for b in message.registers], np.int64)
            ).cast(TIMESTAMP),
            pa.array(cat([b.registers for b in message.registers], np.int32)),
            _constant(int(Source.METER_PUSH), r_n, pa.uint8()),
            pa.array(np.full(r_n, tx_time_us, dtype=np.int64)).cast(TIMESTAMP),
        ],
        schema=REGISTER_READS_SCHEMA,
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
