"""The A-route wire codec: round trips, every rejection reason, fuzzing (SPEC A1–A5, X2–X5)."""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kenshin.aroute.codec import (
    HEADER,
    MIN_FRAME_BYTES,
    DecodedFrames,
    DownlinkRejected,
    FrameDecoder,
    Rejection,
    RejectionLog,
    decode_envelope,
    encode_envelope,
    encode_frame,
    encode_interval_frames,
    group_by_meters,
    open_downlink,
)
from kenshin.aroute.frames import (
    WIRE_VERSION,
    AckStatus,
    Command,
    CommandAck,
    CommandKind,
    Direction,
    EventCode,
    FrameType,
    MeterEvent,
    OperatingState,
    PollRequest,
    PollResponse,
    RejectReason,
)
from kenshin.aroute.keys import DEV_MASTER_KEY, KeyRing
from kenshin.aroute.messages import IntervalBlock, RegisterBlock
from kenshin.aroute.registry import MeterRegistry
from kenshin.aroute.replay import MemoryReplayGuard
from kenshin.core.channels import METERED_CHANNELS, Channel
from kenshin.core.quality import EstimationMethod, Quality, Source
from kenshin.core.schema import METERS_SCHEMA, READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.core.timeslots import US_PER_MINUTE, Resolution
from kenshin.errors import FrameError, InvalidInput, InvalidSetting, UnknownMeter
from kenshin.hes.ingest import decoded_to_batch

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
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

Row = tuple[int, int, int, int, int, int]


def make_decoder(log: RejectionLog | None = None) -> FrameDecoder:
    return FrameDecoder(
        MeterRegistry(DEVICES, METER_KEYS),
        KEYS,
        MemoryReplayGuard(int(METER_KEYS.max()) + 1),
        rejection_log=log,
    )


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


def reasons(decoded: DecodedFrames) -> Counter[RejectReason]:
    return decoded.rejected


def assert_accounted(decoded: DecodedFrames) -> None:
    assert decoded.accepted + sum(decoded.rejected.values()) == decoded.n_input


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


u32 = st.integers(0, 2**32 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)

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


@SETTINGS
@given(
    collector=st.text(max_size=60).filter(lambda s: len(s.encode()) <= 255),
    sent_at=i64,
    sequence=u32,
    frames=st.lists(st.binary(max_size=300), max_size=30),
)
def test_envelope_round_trip(
    collector: str, sent_at: int, sequence: int, frames: list[bytes]
) -> None:
    envelope = decode_envelope(encode_envelope(collector, sent_at, sequence, frames))
    assert envelope.collector == collector
    assert envelope.sent_at_us == sent_at
    assert envelope.sequence == sequence
    assert envelope.frames == frames


def test_envelope_of_real_frames_round_trips_through_the_decoder() -> None:
    frames = slot_frames()
    payload = encode_envelope("tokyo-c0001", END_US + 5, 42, frames)
    decoded = make_decoder().decode(decode_envelope(memoryview(payload)).frames)
    assert decoded.accepted == 3
    assert decoded_rows(decoded) == expected_rows(slot_blocks()[0], FrameType.PUSH_SCHEDULED)


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


def test_decoded_batches_concatenate() -> None:
    decoder = make_decoder()
    first = decoder.decode(slot_frames(1))
    second = decoder.decode([*slot_frames(2), b"x"])
    both = DecodedFrames.concat([first, second])
    assert both.accepted == 6
    assert both.n_input == 7
    assert both.rejected == Counter({RejectReason.MALFORMED: 1})
    assert len(both.intervals) == len(first.intervals) + len(second.intervals)
    assert decoded_to_batch(both, END_US).num_rows == len(both.intervals)
    empty = DecodedFrames.concat([])
    assert empty.accepted == 0
    assert decoded_to_batch(empty, END_US).num_rows == 0


def test_a_mixed_batch_is_parsed_by_type() -> None:
    frames = [
        *slot_frames(5),
        encode_frame(
            FrameType.EVENT, int(DEVICES[0]), 6, MeterEvent(EventCode.POWER_FAIL, END_US), KEYS
        ),
        encode_frame(
            FrameType.COMMAND_ACK, int(DEVICES[1]), 6, CommandAck(9, AckStatus.OK, 40), KEYS
        ),
    ]
    decoded = make_decoder().decode(frames)
    assert decoded.accepted == 5
    assert [m for m, _ in decoded.messages] == [10, 11]
    assert len(decoded.intervals) == 3 * 4


# ---------------------------------------------------------------------------------------------
# every rejection reason


def test_a_captured_frame_replayed_is_refused() -> None:
    decoder = make_decoder()
    frames = slot_frames()
    assert decoder.decode(frames).accepted == 3
    again = decoder.decode([frames[1]])
    assert again.accepted == 0
    assert again.rejected == Counter({RejectReason.REPLAYED: 1})
    assert again.rejections[0].device_id == int(DEVICES[1])
    assert len(again.intervals) == 0


def test_a_duplicate_within_one_batch_is_refused() -> None:
    frames = slot_frames()
    decoded = make_decoder().decode([frames[0], frames[0], frames[2]])
    assert decoded.accepted == 2
    assert decoded.rejected == Counter({RejectReason.REPLAYED: 1})


def test_late_frames_within_the_window_are_accepted_once() -> None:
    decoder = make_decoder()
    newer, older = slot_frames(10, m=1)[0], slot_frames(9, m=1)[0]
    assert decoder.decode([newer]).accepted == 1
    assert decoder.decode([older]).accepted == 1
    assert decoder.decode([older]).rejected == Counter({RejectReason.REPLAYED: 1})


@pytest.mark.parametrize(
    ("position", "reason"),
    [
        (0, RejectReason.MALFORMED),  # version
        (2, RejectReason.UNKNOWN_METER),  # device id's top byte
        (12, RejectReason.AUTH_FAILED),  # counter (nonce and AAD)
        (20, RejectReason.AUTH_FAILED),  # ciphertext
        (-1, RejectReason.AUTH_FAILED),  # tag
    ],
)
def test_a_flipped_byte_is_detected(position: int, reason: RejectReason) -> None:
    frame = bytearray(slot_frames()[0])
    frame[position] ^= 0x01
    decoded = make_decoder().decode([bytes(frame)])
    assert decoded.accepted == 0
    assert decoded.rejected == Counter({reason: 1})


def test_a_frame_type_changed_to_another_uplink_type_fails_authentication() -> None:
    frame = bytearray(slot_frames()[0])
    frame[1] = FrameType.RESEND_RESPONSE  # a re-read would be stored with another source
    assert make_decoder().decode([bytes(frame)]).rejected == Counter({RejectReason.AUTH_FAILED: 1})


def test_a_frame_redirected_to_another_meter_fails_authentication() -> None:
    frame = bytearray(slot_frames()[0])
    frame[2:10] = int(DEVICES[1]).to_bytes(8, "big")  # registered, but its key differs
    assert make_decoder().decode([bytes(frame)]).rejected == Counter({RejectReason.AUTH_FAILED: 1})


def test_a_frame_under_the_wrong_key_fails_authentication() -> None:
    intervals, registers = slot_blocks(1)
    frame = encode_interval_frames(
        FrameType.PUSH_SCHEDULED, DEVICES[:1], [1], intervals, registers, OTHER_KEYS
    )[0]
    decoded = make_decoder().decode([frame])
    assert decoded.rejected == Counter({RejectReason.AUTH_FAILED: 1})


def test_an_unknown_meter_is_refused_before_decryption() -> None:
    frame = encode_frame(FrameType.EVENT, UNREGISTERED, 1, MeterEvent(EventCode.TAMPER, 0), KEYS)
    decoded = make_decoder().decode([frame])
    assert decoded.rejected == Counter({RejectReason.UNKNOWN_METER: 1})
    assert decoded.rejections == [
        Rejection(UNREGISTERED, RejectReason.UNKNOWN_METER, "device id not registered")
    ]


def test_a_downlink_frame_on_the_uplink_is_refused() -> None:
    frame = encode_frame(
        FrameType.COMMAND, int(DEVICES[0]), 1, Command(1, CommandKind.SWITCH_OPEN), KEYS
    )
    decoded = make_decoder().decode([frame])
    assert decoded.rejected == Counter({RejectReason.WRONG_DIRECTION: 1})


def test_unknown_version_and_type_are_malformed() -> None:
    frame = bytearray(slot_frames()[0])
    frame[1] = 0x42
    decoded = make_decoder().decode([bytes(frame)])
    assert decoded.rejected == Counter({RejectReason.MALFORMED: 1})


@pytest.mark.parametrize("cut", [0, 1, 13, 14, MIN_FRAME_BYTES - 1])
def test_frames_too_short_to_hold_a_header_and_tag_are_malformed(cut: int) -> None:
    decoded = make_decoder().decode([slot_frames()[0][:cut]])
    assert decoded.rejected == Counter({RejectReason.MALFORMED: 1})
    assert decoded.rejections[0].device_id is None


def test_truncated_or_extended_frames_fail_authentication() -> None:
    frame = slot_frames()[0]
    decoded = make_decoder().decode([frame[:MIN_FRAME_BYTES], frame[:-1], frame + b"\0"])
    assert decoded.rejected == Counter({RejectReason.AUTH_FAILED: 3})


def counted_block(
    res: int, ch: int, first_min: int, values: Sequence[int], size: int = 4
) -> tuple[bytes, bytes]:
    fmt = ">H" if size == 2 else ">I"
    return (
        struct.pack(">BBIH", res, ch, first_min, len(values)),
        b"".join(struct.pack(fmt, v) for v in values),
    )


def body(blocks: Sequence[tuple[bytes, bytes]], regs: Sequence[tuple[int, int, int]] = ()) -> bytes:
    head = struct.pack(">BB", len(blocks), len(regs))
    head += b"".join(d for d, _ in blocks)
    head += b"".join(struct.pack(">BI", ch, at) for ch, at, _ in regs)
    return head + b"".join(v for _, v in blocks) + b"".join(struct.pack(">I", r) for *_, r in regs)


GOOD_BODY = body([counted_block(30, FWD, BASE_MIN, [5])], [(FWD, BASE_MIN, 1234)])
BAD_BODIES = {
    "resolution": body([counted_block(7, FWD, BASE_MIN, [5])]),
    "unknown channel": body([counted_block(30, 9, BASE_MIN, [5])]),
    "voltage at 30 min": body([counted_block(30, V, BASE_MIN, [1010], size=2)]),
    "voltage register": body([], [(V, BASE_MIN, 1010)]),
    "register channel": body([], [(0, BASE_MIN, 1)]),
    "not on a boundary": body([counted_block(30, FWD, BASE_MIN + 15, [5])]),
    "repeated block": body(
        [counted_block(30, FWD, BASE_MIN, [5]), counted_block(30, FWD, BASE_MIN, [6])]
    ),
    "repeated register": body([], [(FWD, BASE_MIN, 1), (FWD, BASE_MIN, 2)]),
    "too long": GOOD_BODY + b"\0",
    "too short": GOOD_BODY[:-1],
    "directory cut": GOOD_BODY[:5],
    "empty": b"",
    "one byte": b"\x01",
    "value too big": body([counted_block(30, FWD, BASE_MIN, [2**31])]),
    "register too big": body([], [(FWD, BASE_MIN, 2**32 - 1)]),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_authentic_nonsense_is_a_bad_payload(name: str) -> None:
    decoder = make_decoder()
    frames = [
        seal(FrameType.PUSH_SCHEDULED, int(DEVICES[0]), 1, BAD_BODIES[name]),
        seal(FrameType.PUSH_SCHEDULED, int(DEVICES[1]), 1, GOOD_BODY),
    ]
    decoded = decoder.decode(frames)
    assert decoded.rejected == Counter({RejectReason.BAD_PAYLOAD: 1}), decoded.rejections
    assert decoded.frames.meter_key.tolist() == [11]
    assert decoded_rows(decoded) == [(11, int(FWD), 30, END_US, 5, FrameType.PUSH_SCHEDULED)]
    # the counter is spent: the same frame again is a replay, not a second bad payload
    assert decoder.decode(frames[:1]).rejected == Counter({RejectReason.REPLAYED: 1})


def test_five_minute_pushes_carry_only_five_minute_values() -> None:
    frame = seal(FrameType.PUSH_5MIN_REALTIME, int(DEVICES[0]), 1, GOOD_BODY)
    decoded = make_decoder().decode([frame])
    assert decoded.rejected == Counter({RejectReason.BAD_PAYLOAD: 1})
    five = body([counted_block(5, V, BASE_MIN, [1010, 1009], size=2)])
    decoded = make_decoder().decode([seal(FrameType.PUSH_5MIN_REALTIME, int(DEVICES[0]), 1, five)])
    assert decoded_rows(decoded) == [
        (10, int(V), 5, END_US, 1010, FrameType.PUSH_5MIN_REALTIME),
        (10, int(V), 5, END_US + 5 * US_PER_MINUTE, 1009, FrameType.PUSH_5MIN_REALTIME),
    ]


@pytest.mark.parametrize(
    ("frame_type", "plaintext"),
    [
        (FrameType.POLL_RESPONSE, b"\0" * 36),
        (FrameType.COMMAND_ACK, struct.pack(">IBI", 1, 99, 0)),  # unknown status
        (FrameType.EVENT, struct.pack(">BqI", 0, 0, 0)),  # unknown event code
        (FrameType.EVENT, struct.pack(">BqI", 1, 0, 0) + b"\0"),
        (FrameType.POLL_RESPONSE, struct.pack(">IqBHiIIHII", 1, 0, 0x80, 0, 0, 0, 0, 0, 0, 0)),
    ],
)
def test_fixed_bodies_that_do_not_fit_are_bad_payloads(
    frame_type: FrameType, plaintext: bytes
) -> None:
    decoded = make_decoder().decode([seal(frame_type, int(DEVICES[2]), 1, plaintext)])
    assert decoded.rejected == Counter({RejectReason.BAD_PAYLOAD: 1})
    assert decoded.messages == []


def test_a_collector_flipping_a_byte_in_a_bundled_frame_is_detected() -> None:
    frames = slot_frames()
    payload = bytearray(encode_envelope("c1", END_US, 1, frames))
    # the second frame starts after the first one and its two length bytes
    offset = len(payload) - (2 + len(frames[2])) - len(frames[1]) + 30
    payload[offset] ^= 0x80
    envelope = decode_envelope(bytes(payload))
    decoded = make_decoder().decode(envelope.frames)
    assert decoded.rejected == Counter({RejectReason.AUTH_FAILED: 1})
    assert decoded.rejections[0].device_id == int(DEVICES[1])
    assert sorted(decoded.frames.meter_key.tolist()) == [10, 12]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"KS",
        b"XSA\x01\x00",
        b"KSA\x02\x00" + bytes(14),
        b"KSA\x01\x05ab",
        b"KSA\x01\x02\xff\xfe" + bytes(14),
    ],
)
def test_malformed_envelopes_raise_frame_error(payload: bytes) -> None:
    with pytest.raises(FrameError):
        decode_envelope(payload)


def test_envelope_truncation_and_trailing_bytes_raise_frame_error() -> None:
    payload = encode_envelope("c1", 0, 0, slot_frames())
    for cut in (len(payload) - 1, len(payload) - 50, 20):
        with pytest.raises(FrameError):
            decode_envelope(payload[:cut])
    with pytest.raises(FrameError):
        decode_envelope(payload + b"\0")
    assert issubclass(FrameError, InvalidInput)


# ---------------------------------------------------------------------------------------------
# fuzzing: nothing crashes, nothing forged gets through


@SETTINGS
@given(frames=st.lists(st.binary(max_size=200), max_size=20))
def test_random_bytes_never_crash_the_decoder(frames: list[bytes]) -> None:
    decoded = make_decoder().decode(frames)
    assert_accounted(decoded)
    assert decoded.accepted == 0  # forging a GCM tag by chance: 2**-128


@SETTINGS
@given(
    meter=st.integers(0, len(DEVICES) - 1),
    frame_type=st.sampled_from([t for t in FrameType if t.direction is Direction.UP]),
    counter=u32,
    rest=st.binary(min_size=16, max_size=200),
)
def test_random_frames_of_registered_meters_fail_authentication(
    meter: int, frame_type: FrameType, counter: int, rest: bytes
) -> None:
    frame = HEADER.pack(WIRE_VERSION, frame_type, int(DEVICES[meter]), counter) + rest
    assert make_decoder().decode([frame]).rejected == Counter({RejectReason.AUTH_FAILED: 1})


@SETTINGS
@given(
    frame_type=st.sampled_from([t for t in FrameType if t.direction is Direction.UP]),
    plaintext=st.one_of(
        st.binary(max_size=120),
        # plausible directories with random contents, to get past the first checks
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.binary(max_size=120)).map(
            lambda t: bytes(t[:2]) + t[2]
        ),
    ),
)
def test_authentic_random_plaintexts_never_crash(frame_type: FrameType, plaintext: bytes) -> None:
    decoded = make_decoder().decode([seal(frame_type, int(DEVICES[0]), 1, plaintext)])
    assert_accounted(decoded)
    assert set(decoded.rejected) <= {RejectReason.BAD_PAYLOAD}


def expected_reason(original: bytes, mutated: bytes) -> RejectReason:
    """What the decoder must say about a mutated copy of a valid, fresh frame."""
    if len(mutated) < MIN_FRAME_BYTES:
        return RejectReason.MALFORMED
    version, frame_type, device, _ = HEADER.unpack_from(mutated)
    if version != WIRE_VERSION:
        return RejectReason.MALFORMED
    if frame_type & 0x80 and frame_type in {int(t) for t in FrameType}:
        return RejectReason.WRONG_DIRECTION
    if frame_type not in {int(t) for t in FrameType}:
        return RejectReason.MALFORMED
    if device not in DEVICES.tolist():
        return RejectReason.UNKNOWN_METER
    return RejectReason.AUTH_FAILED


@SETTINGS
@given(
    meter=st.integers(0, 2),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), min_size=1, max_size=3),
    cut=st.one_of(st.none(), st.integers(0, 120)),
)
def test_mutated_frames_are_refused_with_the_right_reason(
    meter: int, edits: list[tuple[int, int]], cut: int | None
) -> None:
    original = slot_frames()[meter]
    mutated = bytearray(original)
    for position, mask in edits:
        mutated[position % len(mutated)] ^= mask
    if cut is not None:
        mutated = mutated[:cut]
    assume(bytes(mutated) != original)
    decoded = make_decoder().decode([bytes(mutated)])
    assert decoded.accepted == 0
    assert decoded.rejected == Counter({expected_reason(original, bytes(mutated)): 1})


@SETTINGS
@given(
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4)
)
def test_a_tampering_collector_cannot_alter_values(edits: list[tuple[int, int]]) -> None:
    """Whatever a collector changes in an envelope, every value accepted is one a meter sent."""
    frames = slot_frames()
    original = set(decoded_rows(make_decoder().decode(frames)))
    payload = bytearray(encode_envelope("c1", 0, 0, frames))
    for position, mask in edits:
        payload[position % len(payload)] ^= mask
    try:
        envelope = decode_envelope(bytes(payload))
    except FrameError:
        return
    decoded = make_decoder().decode(envelope.frames)
    assert_accounted(decoded)
    assert set(decoded_rows(decoded)) <= original


@SETTINGS
@given(data=st.binary(max_size=400))
def test_random_envelopes_raise_only_frame_error(data: bytes) -> None:
    for payload in (data, b"KSA\x01" + data):
        try:
            envelope = decode_envelope(payload)
        except FrameError:
            continue
        assert_accounted(make_decoder().decode(envelope.frames))


# ---------------------------------------------------------------------------------------------
# logging of rejections


def test_rejections_are_logged_without_content(caplog: pytest.LogCaptureFixture) -> None:
    frame = bytearray(slot_frames()[0])
    frame[-1] ^= 1
    with caplog.at_level(logging.WARNING, logger="kenshin.aroute"):
        make_decoder().decode([bytes(frame), b"garbage"])
    (record,) = caplog.records
    text = record.getMessage()
    assert "auth_failed=1" in text
    assert "malformed=1" in text
    assert str(int(DEVICES[0])) in text
    assert "garbage" not in text


def test_rejection_log_is_rate_limited() -> None:
    now = [0.0]
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("kenshin.aroute.test-rate-limit")
    logger.propagate = False
    logger.addHandler(Capture())
    log = RejectionLog(max_lines=2, period_s=60.0, clock=lambda: now[0], logger=logger)
    decoder = make_decoder(log)
    for _ in range(5):
        decoder.decode([b"junk"])
    assert len(lines) == 2
    now[0] = 61.0
    decoder.decode([b"junk"])
    assert len(lines) == 3
    assert "3 batches not logged: malformed=3" in lines[-1]


def test_rejection_details_are_capped() -> None:
    decoder = FrameDecoder(
        MeterRegistry(DEVICES, METER_KEYS), KEYS, MemoryReplayGuard(15), max_details=3
    )
    decoded = decoder.decode([b"x"] * 10)
    assert decoded.rejected == Counter({RejectReason.MALFORMED: 10})
    assert len(decoded.rejections) == 3


# ---------------------------------------------------------------------------------------------
# encoder and downlink input checks


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


def test_open_downlink_says_why_it_refuses() -> None:
    poll = encode_frame(FrameType.POLL_REQUEST, 5, 1, PollRequest(3), KEYS)
    cases = {
        RejectReason.MALFORMED: poll[:10],
        RejectReason.AUTH_FAILED: poll[:-1] + bytes([poll[-1] ^ 1]),
        RejectReason.WRONG_DIRECTION: encode_frame(
            FrameType.EVENT, 5, 1, MeterEvent(EventCode.TAMPER, 0), KEYS
        ),
    }
    for reason, frame in cases.items():
        with pytest.raises(DownlinkRejected) as caught:
            open_downlink(frame, KEYS)
        assert caught.value.reason is reason
    with pytest.raises(DownlinkRejected) as caught:
        open_downlink(poll, OTHER_KEYS)
    assert caught.value.reason is RejectReason.AUTH_FAILED
    bad = seal(FrameType.COMMAND, 5, 1, struct.pack(">IBIII", 1, 200, 0, 0, 0))
    with pytest.raises(DownlinkRejected) as caught:
        open_downlink(bad, KEYS)
    assert caught.value.reason is RejectReason.BAD_PAYLOAD
    # the uplink key cannot open downlink frames: directions have separate keys
    header = HEADER.pack(WIRE_VERSION, FrameType.POLL_REQUEST, 5, 1)
    wrong = header + KEYS.aead(5, Direction.UP).encrypt(header[2:], b"\0\0\0\1", header)
    with pytest.raises(DownlinkRejected):
        open_downlink(wrong, KEYS)


# ---------------------------------------------------------------------------------------------
# registry


def test_registry_lookup_is_vectorized_with_minus_one_for_unknown() -> None:
    registry = MeterRegistry(DEVICES, METER_KEYS)
    assert len(registry) == 5
    query = np.array([DEVICES[3], UNREGISTERED, DEVICES[0], 0], dtype=np.uint64)
    assert registry.lookup(query).tolist() == [13, -1, 10, -1]
    assert registry.lookup(np.array([-5, int(DEVICES[1])], dtype=np.int64)).tolist() == [-1, 11]
    assert registry.lookup(np.empty(0, np.uint64)).tolist() == []
    assert registry.device_ids_of(np.array([14, 10])).tolist() == [int(DEVICES[4]), int(DEVICES[0])]
    with pytest.raises(UnknownMeter):
        registry.device_ids_of(np.array([99]))
    assert (
        MeterRegistry(np.empty(0, np.uint64), np.empty(0, np.int32)).lookup(DEVICES).tolist()
        == [-1] * 5
    )


def test_registry_from_the_meters_table() -> None:
    columns = {
        name: pa.nulls(3, type=METERS_SCHEMA.field(name).type) for name in METERS_SCHEMA.names
    }
    columns["meter_key"] = pa.array([0, 1, 2], pa.int32())
    columns["device_id"] = pa.array([30, 10, 20], pa.int64())
    table = pa.table(columns, schema=METERS_SCHEMA)
    registry = MeterRegistry.from_meters_table(table)
    assert registry.lookup(np.array([10, 20, 30, 40], np.uint64)).tolist() == [1, 2, 0, -1]


def test_registry_refuses_duplicates_and_mismatches() -> None:
    with pytest.raises(InvalidSetting):
        MeterRegistry(np.array([1, 1], np.uint64), np.array([0, 1], np.int32))
    with pytest.raises(InvalidSetting):
        MeterRegistry(np.array([1, 2], np.uint64), np.array([0, 0], np.int32))
    with pytest.raises(InvalidSetting):
        MeterRegistry(np.array([1, 2], np.uint64), np.array([0], np.int32))
    with pytest.raises(InvalidSetting):
        MeterRegistry(np.array([-1, 2], np.int64), np.array([0, 1], np.int32))
    with pytest.raises(InvalidSetting):
        MeterRegistry.from_meters_table(pa.table({"meter_key": pa.array([0], pa.int32())}))


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
    decoder = FrameDecoder(
        MeterRegistry(np.array([device], np.uint64), np.array([0], np.int32)),
        KEYS,
        MemoryReplayGuard(1),
    )
    decoded = decoder.decode([memoryview(VECTOR)])
    assert decoded_rows(decoded) == [(0, int(FWD), 30, END_US, 5, FrameType.PUSH_SCHEDULED)]
    assert decoded_registers(decoded) == [(0, int(FWD), END_US, 1234)]


def test_frames_with_equal_shapes_but_different_directories_in_one_batch() -> None:
    """Same type, length and directory size, different slots: grouped apart, all parsed."""
    early = body([counted_block(30, FWD, BASE_MIN - 30, [7])], [(FWD, BASE_MIN - 30, 1)])
    frames = [
        seal(FrameType.PUSH_SCHEDULED, int(DEVICES[0]), 1, GOOD_BODY),
        seal(FrameType.PUSH_SCHEDULED, int(DEVICES[1]), 1, early),
        seal(FrameType.PUSH_SCHEDULED, int(DEVICES[2]), 1, GOOD_BODY),
        seal(FrameType.PUSH_SCHEDULED, int(DEVICES[3]), 1, BAD_BODIES["not on a boundary"]),
    ]
    decoded = make_decoder().decode(frames)
    assert decoded.rejected == Counter({RejectReason.BAD_PAYLOAD: 1})
    assert decoded.rejections[0].device_id == int(DEVICES[3])
    half_hour = 30 * US_PER_MINUTE
    assert decoded_rows(decoded) == sorted(
        [
            (10, int(FWD), 30, END_US, 5, FrameType.PUSH_SCHEDULED),
            (11, int(FWD), 30, END_US - half_hour, 7, FrameType.PUSH_SCHEDULED),
            (12, int(FWD), 30, END_US, 5, FrameType.PUSH_SCHEDULED),
        ]
    )
    assert decoded_registers(decoded) == [
        (10, int(FWD), END_US, 1234),
        (11, int(FWD), END_US - half_hour, 1),
        (12, int(FWD), END_US, 1234),
    ]


def test_a_flood_of_one_captured_frame_is_refused_quickly() -> None:
    frame = slot_frames(m=1)[0]
    decoded = make_decoder().decode([frame] * 5000)
    assert decoded.accepted == 1
    assert decoded.rejected == Counter({RejectReason.REPLAYED: 4999})
    assert len(decoded.rejections) == 100
