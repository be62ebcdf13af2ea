"""Reading batches: the columnar unit that moves values from the head-end to the MDMS.

A batch holds long reading rows (``READINGS_SCHEMA``) and register reads
(``REGISTER_READS_SCHEMA``). Every producer — the head-end's wire and direct paths, VEE, manual
edits, the S3 differences — builds its rows with :func:`readings_table` and
:func:`register_reads_table`, so the columns are typed and ordered in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.core.quality import EstimationMethod, Quality
from kenshin.core.schema import EVENTS_SCHEMA, READINGS_SCHEMA, REGISTER_READS_SCHEMA, TIMESTAMP

Column = npt.ArrayLike | int

# The head-end's replay windows (meter keys, last counter, bitmap) that changed with a batch: the
# A-route defines them (``kenshin.aroute.replay``); a store commits them in the same transaction
# as the values they let in, so a redelivered frame is a repeat exactly when its value is stored.
CounterState = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint64]]


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Readings, register reads and meter events of one delivery, as Arrow tables."""

    readings: pa.Table
    registers: pa.Table
    events: pa.Table = field(default_factory=EVENTS_SCHEMA.empty_table)

    @property
    def num_rows(self) -> int:
        return int(self.readings.num_rows)


class ReadingSink(Protocol):
    """Where the head-end hands its batches (the MDMS ingest service)."""

    def ingest(self, batch: ReadingBatch, *, late: bool = False) -> None:
        """Take a batch. ``late``: values to be stored only where the store holds no measured
        value of the same content yet (frames older than their meter's replay window, and the
        pushes a worker takes while catching up)."""
        ...


def timestamps(epoch_us: npt.ArrayLike) -> pa.Array:
    """Epoch microseconds as the schemas' JST timestamp column (a view, no copy)."""
    return pa.array(np.asarray(epoch_us, dtype=np.int64), type=pa.int64()).view(TIMESTAMP)


def _column(x: Column, n: int, dtype: type) -> npt.NDArray[np.generic]:
    if np.isscalar(x):
        return np.full(n, x, dtype=dtype)
    return np.asarray(x, dtype=dtype)


def readings_table(
    meter_key: npt.ArrayLike,
    channel: Column,
    resolution: Column,
    interval_end_us: npt.ArrayLike,
    value: npt.ArrayLike,
    value_present: npt.ArrayLike | None,
    quality: Column,
    source: Column,
    method: Column,
    failed_rule: Column,
    tx_time_us: Column,
) -> pa.Table:
    """Reading rows from numpy columns; a scalar stands for a column of one value, and
    ``value_present`` (if given) marks which values are not NULL."""
    keys = np.asarray(meter_key, dtype=np.int32)
    n = len(keys)
    mask = None if value_present is None else ~np.asarray(value_present, dtype=bool)
    return pa.Table.from_arrays(
        [
            pa.array(keys),
            pa.array(_column(channel, n, np.uint8)),
            pa.array(_column(resolution, n, np.uint8)),
            timestamps(_column(interval_end_us, n, np.int64)),
            pa.array(np.asarray(value, dtype=np.int32), mask=mask),
            pa.array(_column(quality, n, np.uint8)),
            pa.array(_column(source, n, np.uint8)),
            pa.array(_column(method, n, np.uint8)),
            pa.array(_column(failed_rule, n, np.uint16)),
            timestamps(_column(tx_time_us, n, np.int64)),
        ],
        schema=READINGS_SCHEMA,
    )


def received_readings(
    meter_key: npt.ArrayLike,
    channel: Column,
    resolution: Column,
    interval_end_us: npt.ArrayLike,
    value: npt.ArrayLike,
    source: Column,
    tx_time_us: int,
) -> pa.Table:
    """Reading rows as the head-end receives them: quality RAW, no estimation, no rule raised
    (VEE labels them on ingest and in the sweep)."""
    return readings_table(
        meter_key,
        channel,
        resolution,
        interval_end_us,
        value,
        None,
        int(Quality.RAW),
        source,
        int(EstimationMethod.NONE),
        0,
        tx_time_us,
    )


def events_table(
    meter_key: npt.ArrayLike,
    code: npt.ArrayLike,
    occurred_us: npt.ArrayLike,
    detail: npt.ArrayLike,
    tx_time_us: Column,
) -> pa.Table:
    """Meter-event rows (``EVENTS_SCHEMA``) from columns."""
    keys = np.asarray(meter_key, dtype=np.int32)
    return pa.Table.from_arrays(
        [
            pa.array(keys),
            pa.array(np.asarray(code, dtype=np.uint8)),
            timestamps(np.asarray(occurred_us, dtype=np.int64)),
            pa.array(np.asarray(detail, dtype=np.int32)),
            timestamps(_column(tx_time_us, len(keys), np.int64)),
        ],
        schema=EVENTS_SCHEMA,
    )


def register_reads_table(
    meter_key: npt.ArrayLike,
    channel: Column,
    read_at_us: Column,
    register: npt.ArrayLike,
    source: Column,
    tx_time_us: Column,
) -> pa.Table:
    """Register-read rows from numpy columns (scalars as for :func:`readings_table`)."""
    keys = np.asarray(meter_key, dtype=np.int32)
    n = len(keys)
    return pa.Table.from_arrays(
        [
            pa.array(keys),
            pa.array(_column(channel, n, np.uint8)),
            timestamps(_column(read_at_us, n, np.int64)),
            pa.array(np.asarray(register, dtype=np.int32)),
            pa.array(_column(source, n, np.uint8)),
            timestamps(_column(tx_time_us, n, np.int64)),
        ],
        schema=REGISTER_READS_SCHEMA,
    )
