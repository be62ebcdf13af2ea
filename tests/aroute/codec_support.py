"""What the A-route codec tests share: meters, keys, frames, readers of decoded columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from kenshin.aroute.codec.decode import FrameDecoder
from kenshin.aroute.codec.decoded import DecodedFrames, RejectionLog
from kenshin.aroute.codec.encode import encode_interval_frames
from kenshin.aroute.codec.layout import HEADER
from kenshin.aroute.frames import WIRE_VERSION, Direction, FrameType
from kenshin.aroute.keys import DEV_MASTER_KEY, KeyRing
from kenshin.aroute.messages import IntervalBlock, RegisterBlock
from kenshin.aroute.registry import MeterRegistry
from kenshin.aroute.replay import MemoryReplayGuard, ReplayGuard
from kenshin.core.channels import Channel
from kenshin.core.timeslots import US_PER_MINUTE, Resolution

KEYS = KeyRing(DEV_MASTER_KEY)
OTHER_KEYS = KeyRing(bytes(32))
DEVICES = np.array([13 * 10**14 + 1, 13 * 10**14 + 2, 13 * 10**14 + 3, 2**63 + 5, 77], np.uint64)
METER_KEYS = np.array([10, 11, 12, 13, 14], dtype=np.int32)
UNREGISTERED = 13 * 10**14 + 999
BASE_MIN = 28_000_020  # a multiple of 60 minutes (2023-03-28 20:00 JST)
END_US = BASE_MIN * US_PER_MINUTE
FWD, REV, Q, V = Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE, Channel.REACTIVE, Channel.VOLTAGE
INTERVAL_TYPES = [t for t in FrameType if t.carries_intervals]
INT32_MAX = 2**31 - 1
u32 = st.integers(0, 2**32 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

Row = tuple[int, int, int, int, int, int]


@dataclass
class GuardedDecoder:
    """A decoder and a replay guard, used as the head-end uses them."""

    decoder: FrameDecoder
    replay: ReplayGuard

    def decode(self, frames: Sequence[bytes | bytearray | memoryview]) -> DecodedFrames:
        authentic = self.decoder.authenticate(frames)
        admitted = self.replay.admit(authentic.meter_key, authentic.counter)
        return self.decoder.parse(authentic, admitted)


def make_decoder(log: RejectionLog | None = None, max_details: int = 100) -> GuardedDecoder:
    decoder = FrameDecoder(
        MeterRegistry(DEVICES, METER_KEYS), KEYS, max_details=max_details, rejection_log=log
    )
    return GuardedDecoder(decoder, MemoryReplayGuard(int(METER_KEYS.max()) + 1))


def seal(frame_type: int, device_id: int, counter: int, plaintext: bytes) -> bytes:
    """An authentic frame around any plaintext (what a meter with the right key could send)."""
    header = HEADER.pack(WIRE_VERSION, frame_type, device_id, counter)
    direction = Direction.DOWN if frame_type & 0x80 else Direction.UP
    return header + KEYS.aead(device_id, direction).encrypt(header[2:], plaintext, header)


def slot_blocks(m: int = 3) -> tuple[list[IntervalBlock], list[RegisterBlock]]:
    keys = METER_KEYS[:m]
    q = Resolution.MIN15.microseconds
    fwd15 = np.arange(2 * m, dtype=np.int32).reshape(2, m) + 1
    intervals = [
        IntervalBlock(Resolution.MIN30, FWD, keys, np.array([END_US]), fwd15.sum(0)[None]),
        IntervalBlock(
            Resolution.MIN30, REV, keys, np.array([END_US]), np.full((1, m), 2, np.int32)
        ),
        IntervalBlock(Resolution.MIN15, FWD, keys, np.array([END_US - q, END_US]), fwd15),
    ]
    registers = [RegisterBlock(FWD, keys, END_US, np.arange(m, dtype=np.int32) + 99_999_990)]
    return intervals, registers


def slot_frames(counter: int = 1, m: int = 3) -> list[bytes]:
    intervals, registers = slot_blocks(m)
    return encode_interval_frames(
        FrameType.PUSH_SCHEDULED, DEVICES[:m], np.full(m, counter), intervals, registers, KEYS
    )


def expected_rows(intervals: Sequence[IntervalBlock], frame_type: int) -> list[Row]:
    rows = []
    for block in intervals:
        for i, end in enumerate(block.interval_ends_us.tolist()):
            for j, key in enumerate(block.meter_keys.tolist()):
                rows.append(
                    (
                        key,
                        int(block.channel),
                        int(block.resolution),
                        end,
                        int(block.values[i, j]),
                        frame_type,
                    )
                )
    return sorted(rows)


def decoded_rows(decoded: DecodedFrames) -> list[Row]:
    iv = decoded.intervals
    return sorted(
        zip(
            iv.meter_key.tolist(),
            iv.channel.tolist(),
            iv.resolution.tolist(),
            iv.interval_end_us.tolist(),
            iv.value.tolist(),
            iv.frame_type.tolist(),
            strict=True,
        )
    )


def decoded_registers(decoded: DecodedFrames) -> list[tuple[int, int, int, int]]:
    rg = decoded.registers
    return sorted(
        zip(
            rg.meter_key.tolist(),
            rg.channel.tolist(),
            rg.read_at_us.tolist(),
            rg.register.tolist(),
            strict=True,
        )
    )


def assert_accounted(decoded: DecodedFrames) -> None:
    assert decoded.accepted + sum(decoded.rejected.values()) == decoded.n_input
