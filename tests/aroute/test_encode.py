"""A-route encoding: what is encoded decodes to the same, and what the wire cannot carry is refused
(SPEC A1–A5, X2)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kenshin.aroute.codec.decode import FrameDecoder, open_downlink
from kenshin.aroute.codec.encode import encode_frame, encode_interval_frames, group_by_meters
from kenshin.aroute.frames import (
    AckStatus,
    Command,
    CommandAck,
    CommandKind,
    Direction,
    FrameType,
    MeterEvent,
    OperatingState,
    PollRequest,
    PollResponse,
)
from kenshin.aroute.messages import IntervalBlock, RegisterBlock
from kenshin.aroute.registry import MeterRegistry
from kenshin.aroute.replay import MemoryReplayGuard
from kenshin.core.channels import METERED_CHANNELS
from kenshin.core.events import EventCode
from kenshin.core.quality import EstimationMethod, Quality, Source
from kenshin.core.schema import READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.core.timeslots import US_PER_MINUTE, Resolution
from kenshin.errors import FrameError
from kenshin.hes.ingest import decoded_to_batch
from tests.aroute.codec_support import (
    BASE_MIN,
    DEVICES,
    END_US,
    FWD,
    INT32_MAX,
    INTERVAL_TYPES,
    KEYS,
    METER_KEYS,
    REV,
    SETTINGS,
    GuardedDecoder,
    Q,
    V,
    decoded_registers,
    decoded_rows,
    expected_rows,
    i64,
    make_decoder,
    u32,
)

# ---------------------------------------------------------------------------------------------
# round trips


@st.composite
def interval_payloads(
    draw: st.DrawFn,
) -> tuple[FrameType, int, list[IntervalBlock], list[RegisterBlock], list[int]]:
    frame_type = draw(st.sampled_from(INTERVAL_TYPES))
    m = draw(st.integers(1, len(DEVICES)))
    keys = METER_KEYS[:m]
    if frame_type in (FrameType.PUSH_5MIN_HISTORICAL, FrameType.PUSH_5MIN_REALTIME):
        combos = [(Resolution.MIN5, ch) for ch in METERED_CHANNELS]
    else:
        combos = [(r, ch) for r in Resolution for ch in METERED_CHANNELS if ch != V or r == 5]
    chosen = draw(st.lists(st.sampled_from(combos), unique=True, max_size=5))
    intervals = []
    for res, ch in chosen:
        k = draw(st.integers(1, 6))
        first = BASE_MIN + int(res) * draw(st.integers(-1000, 1000))
        ends = (first + int(res) * np.arange(k, dtype=np.int64)) * US_PER_MINUTE
        top = 0xFFFF if ch == V else INT32_MAX
        values = draw(arrays(np.int32, (k, m), elements=st.integers(0, top)))
        intervals.append(IntervalBlock(res, ch, keys, ends, values))
    read_at = draw(st.integers(0, 2**32 - 1)) * US_PER_MINUTE
    registers = [
        RegisterBlock(
            ch, keys, read_at, draw(arrays(np.int32, m, elements=st.integers(0, INT32_MAX)))
        )
        for ch in draw(st.lists(st.sampled_from([FWD, REV, Q]), unique=True))
    ]
    counters = draw(st.lists(st.integers(0, 2**32 - 1), min_size=m, max_size=m))
    return frame_type, m, intervals, registers, counters


@SETTINGS
@given(payload=interval_payloads())
def test_interval_frames_round_trip(
    payload: tuple[FrameType, int, list[IntervalBlock], list[RegisterBlock], list[int]],
) -> None:
    frame_type, m, intervals, registers, counters = payload
    frames = encode_interval_frames(
        frame_type, DEVICES[:m], np.array(counters), intervals, registers, KEYS
    )
    assert len(frames) == m
    decoded = make_decoder().decode(frames)
    assert not decoded.rejected
    assert decoded_rows(decoded) == expected_rows(intervals, int(frame_type))
    assert decoded_registers(decoded) == sorted(
        (key, int(r.channel), r.read_at_us, int(v))
        for r in registers
        for key, v in zip(r.meter_keys.tolist(), r.registers.tolist(), strict=True)
    )
    assert decoded.frames.meter_key.tolist() == METER_KEYS[:m].tolist()
    assert decoded.frames.counter.tolist() == counters
    assert set(decoded.frames.frame_type.tolist()) == {int(frame_type)}

    batch = decoded_to_batch(decoded, END_US)
    assert batch.readings.schema == READINGS_SCHEMA
    assert batch.registers.schema == REGISTER_READS_SCHEMA
    assert batch.num_rows == len(decoded.intervals)
    source = Source.REREAD if frame_type == FrameType.RESEND_RESPONSE else Source.METER_PUSH
    if batch.num_rows:
        assert set(batch.readings.column("source").to_pylist()) == {int(source)}
        assert set(batch.readings.column("quality").to_pylist()) == {int(Quality.RAW)}
        assert set(batch.readings.column("method").to_pylist()) == {int(EstimationMethod.NONE)}
    if batch.registers.num_rows:
        assert set(batch.registers.column("source").to_pylist()) == {int(source)}


uplink_bodies = st.one_of(
    st.builds(
        PollResponse,
        request_id=u32,
        measured_at_us=i64,
        state=st.integers(0, 0x1F),
        ampere_limit_a=st.integers(0, 0xFFFF),
        power_w=st.integers(-(2**31), 2**31 - 1),
        current_r_da=u32,
        current_t_da=u32,
        voltage_dv=st.integers(0, 0xFFFF),
        forward_register=st.integers(0, INT32_MAX),
        reverse_register=st.integers(0, INT32_MAX),
    ),
    st.builds(CommandAck, command_id=u32, status=st.sampled_from(AckStatus), detail=u32),
    st.builds(MeterEvent, code=st.sampled_from(EventCode), at_us=i64, detail=u32),
)
downlink_bodies = st.one_of(
    st.builds(PollRequest, request_id=u32),
    st.builds(
        Command,
        command_id=u32,
        kind=st.sampled_from(CommandKind),
        arg1=u32,
        arg2=u32,
        arg3=u32,
    ),
)
TYPE_OF = {
    PollResponse: FrameType.POLL_RESPONSE,
    CommandAck: FrameType.COMMAND_ACK,
    MeterEvent: FrameType.EVENT,
    PollRequest: FrameType.POLL_REQUEST,
    Command: FrameType.COMMAND,
}


@SETTINGS
@given(body=uplink_bodies, counter=u32, meter=st.integers(0, len(DEVICES) - 1))
def test_uplink_bodies_round_trip(
    body: PollResponse | CommandAck | MeterEvent, counter: int, meter: int
) -> None:
    frame = encode_frame(TYPE_OF[type(body)], int(DEVICES[meter]), counter, body, KEYS)
    decoded = make_decoder().decode([frame])
    assert not decoded.rejected
    assert decoded.messages == [(int(METER_KEYS[meter]), body)]
    assert decoded.frames.counter.tolist() == [counter]
    assert decoded.frames.frame_type.tolist() == [int(TYPE_OF[type(body)])]
    assert len(decoded.intervals) == 0


@SETTINGS
@given(body=downlink_bodies, counter=u32, device=st.integers(0, 2**64 - 1))
def test_downlink_bodies_round_trip(body: PollRequest | Command, counter: int, device: int) -> None:
    frame = encode_frame(TYPE_OF[type(body)], device, counter, body, KEYS)
    assert open_downlink(frame, KEYS) == (device, counter, body)
    assert open_downlink(memoryview(frame), KEYS) == (device, counter, body)


def test_group_by_meters_splits_a_slot_message_and_loses_nothing() -> None:
    keys_all = METER_KEYS
    hv = METER_KEYS[[1, 3]]
    gen2 = METER_KEYS[[0, 1, 4]]
    rng = np.random.default_rng(3)
    q = Resolution.MIN15.microseconds
    intervals = [
        IntervalBlock(
            Resolution.MIN30,
            FWD,
            keys_all,
            np.array([END_US]),
            rng.integers(0, 99, (1, 5), np.int32),
        ),
        IntervalBlock(
            Resolution.MIN30, Q, hv, np.array([END_US]), rng.integers(0, 99, (1, 2), np.int32)
        ),
        IntervalBlock(
            Resolution.MIN15,
            FWD,
            gen2,
            np.array([END_US - q, END_US]),
            rng.integers(0, 99, (2, 3), np.int32),
        ),
    ]
    registers = [RegisterBlock(FWD, keys_all[::-1].copy(), END_US, np.arange(5, dtype=np.int32))]
    groups = group_by_meters(intervals, registers)
    assert sorted(len(g[0]) for g in groups) == [1, 1, 1, 2]  # {0,4}, {1}, {2}, {3}
    device_of = dict(zip(METER_KEYS.tolist(), DEVICES.tolist(), strict=True))
    frames = []
    for keys, ivs, rgs in groups:
        devices = np.array([device_of[k] for k in keys.tolist()], dtype=np.uint64)
        frames += encode_interval_frames(
            FrameType.PUSH_SCHEDULED, devices, np.ones(len(keys), np.int64), ivs, rgs, KEYS
        )
    decoded = make_decoder().decode(frames)
    assert decoded.accepted == 5
    assert decoded_rows(decoded) == expected_rows(intervals, FrameType.PUSH_SCHEDULED)
    assert decoded_registers(decoded) == sorted(
        (k, int(FWD), END_US, v) for k, v in zip(keys_all[::-1].tolist(), range(5), strict=True)
    )


# ---------------------------------------------------------------------------------------------
# input checks


def test_encoder_refuses_what_the_wire_cannot_carry() -> None:
    keys = METER_KEYS[:2]
    ends = np.array([END_US, END_US + 2 * Resolution.MIN30.microseconds])
    gap = IntervalBlock(Resolution.MIN30, FWD, keys, ends, np.ones((2, 2), np.int32))
    off_slot = IntervalBlock(
        Resolution.MIN30, FWD, keys, np.array([END_US + 60_000_000]), np.ones((1, 2), np.int32)
    )
    negative = IntervalBlock(
        Resolution.MIN30, FWD, keys, np.array([END_US]), -np.ones((1, 2), np.int32)
    )
    loud = IntervalBlock(
        Resolution.MIN5, V, keys, np.array([END_US]), np.full((1, 2), 70_000, np.int32)
    )
    slow_v = IntervalBlock(Resolution.MIN30, V, keys, np.array([END_US]), np.ones((1, 2), np.int32))
    other = IntervalBlock(
        Resolution.MIN15, FWD, keys[::-1].copy(), np.array([END_US]), np.ones((1, 2), np.int32)
    )
    good = IntervalBlock(Resolution.MIN30, FWD, keys, np.array([END_US]), np.ones((1, 2), np.int32))
    cases: list[tuple[FrameType, list[IntervalBlock], list[RegisterBlock], Sequence[int]]] = [
        (FrameType.PUSH_SCHEDULED, [gap], [], [1, 1]),
        (FrameType.PUSH_SCHEDULED, [off_slot], [], [1, 1]),
        (FrameType.PUSH_SCHEDULED, [negative], [], [1, 1]),
        (FrameType.PUSH_SCHEDULED, [loud], [], [1, 1]),
        (FrameType.PUSH_SCHEDULED, [slow_v], [], [1, 1]),
        (FrameType.PUSH_SCHEDULED, [good, other], [], [1, 1]),
        (FrameType.PUSH_SCHEDULED, [good, good], [], [1, 1]),
        (FrameType.PUSH_5MIN_REALTIME, [good], [], [1, 1]),
        (
            FrameType.PUSH_SCHEDULED,
            [good],
            [RegisterBlock(V, keys, END_US, np.ones(2, np.int32))],
            [1, 1],
        ),
        (
            FrameType.PUSH_SCHEDULED,
            [good],
            [RegisterBlock(FWD, keys, END_US + 1, np.ones(2, np.int32))],
            [1, 1],
        ),
        (FrameType.PUSH_SCHEDULED, [good], [], [1, 2**32]),
        (FrameType.PUSH_SCHEDULED, [good], [], [1]),
        (FrameType.EVENT, [good], [], [1, 1]),
    ]
    for frame_type, intervals, registers, counters in cases:
        with pytest.raises(FrameError):
            encode_interval_frames(
                frame_type, DEVICES[:2], np.array(counters), intervals, registers, KEYS
            )


def test_encode_frame_checks_body_and_ranges() -> None:
    event = MeterEvent(EventCode.POWER_FAIL, 0)
    with pytest.raises(FrameError):
        encode_frame(FrameType.POLL_RESPONSE, 1, 1, event, KEYS)
    with pytest.raises(FrameError):
        encode_frame(FrameType.PUSH_SCHEDULED, 1, 1, event, KEYS)
    with pytest.raises(FrameError):
        encode_frame(FrameType.EVENT, 1, 2**32, event, KEYS)
    with pytest.raises(FrameError):
        encode_frame(FrameType.EVENT, -1, 1, event, KEYS)
    with pytest.raises(FrameError):
        encode_frame(FrameType.COMMAND_ACK, 1, 1, CommandAck(2**32, AckStatus.OK), KEYS)
    bad_state = PollResponse(1, 0, int(OperatingState.POWER_ON) | 0x40, 0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(FrameError):
        encode_frame(FrameType.POLL_RESPONSE, 1, 1, bad_state, KEYS)


# ---------------------------------------------------------------------------------------------
# the documented test vector (docs/protocols/aroute.md): the wire format must not drift

VECTOR = bytes.fromhex(
    "010100049e57d6354001000000015556100de06e2d08591262601156a53183e3bf924df0d2"
    "11eb9248de91f57c5349efc71bb7f978"
)


def test_documented_test_vector() -> None:
    device = 1300000000000001
    assert KEYS.key(device, Direction.UP).hex() == "e8b9aad7750ebf7991c109479d8ea29c"
    keys = np.array([0], np.int32)
    frame = encode_interval_frames(
        FrameType.PUSH_SCHEDULED,
        [device],
        [1],
        [IntervalBlock(Resolution.MIN30, FWD, keys, np.array([END_US]), np.array([[5]], np.int32))],
        [RegisterBlock(FWD, keys, END_US, np.array([1234], np.int32))],
        KEYS,
    )[0]
    assert frame == VECTOR
    decoder = GuardedDecoder(
        FrameDecoder(MeterRegistry(np.array([device], np.uint64), np.array([0], np.int32)), KEYS),
        MemoryReplayGuard(1),
    )
    decoded = decoder.decode([memoryview(VECTOR)])
    assert decoded_rows(decoded) == [(0, int(FWD), 30, END_US, 5, FrameType.PUSH_SCHEDULED)]
    assert decoded_registers(decoded) == [(0, int(FWD), END_US, 1234)]
