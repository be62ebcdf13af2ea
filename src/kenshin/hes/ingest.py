"""Decoded A-route frames → Arrow reading batches for the MDMS.

The wire decoder (:class:`kenshin.aroute.codec.decode.FrameDecoder`) yields long numpy columns;
this module adds the bookkeeping columns (quality, source, method, transaction time) and wraps
them in the storage schemas, without a Python loop per value.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.aroute.codec.decoded import DecodedFrames
from kenshin.aroute.frames import FrameType
from kenshin.core.quality import EstimationMethod, Quality, Source
from kenshin.core.schema import READINGS_SCHEMA, REGISTER_READS_SCHEMA, TIMESTAMP
from kenshin.hes.headend import ReadingBatch

_RESEND = np.uint8(FrameType.RESEND_RESPONSE)


def _sources(frame_type: npt.NDArray[np.uint8]) -> pa.Array:
    """METER_PUSH, or REREAD for values re-sent from meter memory on request."""
    if not len(frame_type) or not (frame_type == _RESEND).any():
        return pa.array(np.full(len(frame_type), int(Source.METER_PUSH), dtype=np.uint8))
    return pa.array(
        np.where(frame_type == _RESEND, np.uint8(Source.REREAD), np.uint8(Source.METER_PUSH))
    )


def _timestamps(us: npt.NDArray[np.int64]) -> pa.Array:
    return pa.array(np.asarray(us, dtype=np.int64), type=pa.int64()).view(TIMESTAMP)


def decoded_to_batch(decoded: DecodedFrames, tx_time_us: int) -> ReadingBatch:
    """Readings (quality RAW, method NONE) and register reads of the accepted frames."""
    iv = decoded.intervals
    n = len(iv)
    tx = _timestamps(np.full(n, tx_time_us, dtype=np.int64))
    readings = pa.Table.from_arrays(
        [
            pa.array(iv.meter_key),
            pa.array(iv.channel),
            pa.array(iv.resolution),
            _timestamps(iv.interval_end_us),
            pa.array(iv.value),
            pa.array(np.full(n, int(Quality.RAW), dtype=np.uint8)),
            _sources(iv.frame_type),
            pa.array(np.full(n, int(EstimationMethod.NONE), dtype=np.uint8)),
            pa.array(np.zeros(n, dtype=np.uint16)),
            tx,
        ],
        schema=READINGS_SCHEMA,
    )
    rg = decoded.registers
    r_n = len(rg)
    registers = pa.Table.from_arrays(
        [
            pa.array(rg.meter_key),
            pa.array(rg.channel),
            _timestamps(rg.read_at_us),
            pa.array(rg.register),
            _sources(rg.frame_type),
            _timestamps(np.full(r_n, tx_time_us, dtype=np.int64)),
        ],
        schema=REGISTER_READS_SCHEMA,
    )
    return ReadingBatch(readings=readings, registers=registers)
