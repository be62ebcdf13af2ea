"""Decoded A-route frames → Arrow reading batches for the MDMS.

The wire decoder (:class:`kenshin.aroute.codec.decode.FrameDecoder`) yields long numpy columns;
this module adds the bookkeeping columns (quality, source, method, transaction time) and wraps
them in the storage schemas, without a Python loop per value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.aroute.codec.decode import FrameDecoder
from kenshin.aroute.codec.decoded import DecodedFrames
from kenshin.aroute.frames import FrameType, MeterEvent
from kenshin.aroute.replay import ReplayGuard
from kenshin.core.batches import (
    ReadingBatch,
    events_table,
    received_readings,
    register_reads_table,
)
from kenshin.core.quality import Source

_RESEND = np.uint8(FrameType.RESEND_RESPONSE)


def _sources(frame_type: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8] | int:
    """METER_PUSH, or REREAD for values re-sent from meter memory on request."""
    if not len(frame_type) or not (frame_type == _RESEND).any():
        return int(Source.METER_PUSH)
    return np.where(frame_type == _RESEND, np.uint8(Source.REREAD), np.uint8(Source.METER_PUSH))


def decoded_to_batch(decoded: DecodedFrames, tx_time_us: int) -> ReadingBatch:
    """Readings (quality RAW, method NONE) and register reads of the accepted frames."""
    iv = decoded.intervals
    readings = received_readings(
        iv.meter_key,
        iv.channel,
        iv.resolution,
        iv.interval_end_us,
        iv.value,
        _sources(iv.frame_type),
        tx_time_us,
    )
    rg = decoded.registers
    registers = register_reads_table(
        rg.meter_key, rg.channel, rg.read_at_us, rg.register, _sources(rg.frame_type), tx_time_us
    )
    return ReadingBatch(
        readings=readings, registers=registers, events=events_of(decoded, tx_time_us)
    )


def events_of(decoded: DecodedFrames, tx_time_us: int) -> pa.Table:
    """The meter events among the accepted frames (SPEC R1–R3), stored with the values."""
    events = [(key, m) for key, m in decoded.messages if isinstance(m, MeterEvent)]
    return events_table(
        [key for key, _ in events],
        [int(m.code) for _, m in events],
        [m.at_us for _, m in events],
        [m.detail for _, m in events],
        tx_time_us,
    )


# the frames carrying values a worker that was down may still store (late)
_VALUE_FRAMES = np.array(
    [
        FrameType.PUSH_SCHEDULED,
        FrameType.PUSH_5MIN_HISTORICAL,
        FrameType.PUSH_5MIN_REALTIME,
        FrameType.RESEND_RESPONSE,
    ],
    dtype=np.uint8,
)


def decode(decoder: FrameDecoder, replay: ReplayGuard, frames: Sequence[bytes]) -> DecodedFrames:
    """Authenticate (pure), ask ``replay`` which authentic frames are fresh (the one step that
    may do I/O), then parse those (pure); the others are refused as REPLAYED."""
    authentic = decoder.authenticate(frames)
    return decoder.parse(authentic, replay.admit(authentic.meter_key, authentic.counter))


def decode_keeping_late(
    decoder: FrameDecoder, replay: ReplayGuard, frames: Sequence[bytes]
) -> tuple[DecodedFrames, DecodedFrames | None]:
    """As :func:`decode`, and the value frames refused only for being older than their
    meter's window, parsed apart: a worker that was down delivers them after another worker
    took the meters' newer frames. Their values are stored only where the store holds no
    measured value yet (``ReadingSink.ingest(late=True)``), so a true replay adds nothing."""
    authentic = decoder.authenticate(frames)
    late = np.zeros(len(authentic), dtype=bool)
    admitted = replay.admit(authentic.meter_key, authentic.counter, late=late)
    late &= np.isin(authentic.frame_type, _VALUE_FRAMES)
    if not late.any():
        return decoder.parse(authentic, admitted), None
    fresh = decoder.parse(authentic.subset(~late), admitted[~late])
    old = decoder.parse(authentic.subset(late, refusals=False), np.ones(int(late.sum()), bool))
    return fresh, old
