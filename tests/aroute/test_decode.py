"""A-route decoding: every rejection reason, fuzzing, logging of rejections (SPEC A1–A5, X2–X5)."""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kenshin.aroute.codec.decode import DownlinkRejected, open_downlink
from kenshin.aroute.codec.decoded import DecodedFrames, Rejection, RejectionLog
from kenshin.aroute.codec.encode import encode_frame, encode_interval_frames
from kenshin.aroute.codec.layout import HEADER, MIN_FRAME_BYTES
from kenshin.aroute.frames import (
    WIRE_VERSION,
    AckStatus,
    Command,
    CommandAck,
    CommandKind,
    Direction,
    FrameType,
    MeterEvent,
    PollRequest,
    RejectReason,
)
from kenshin.core.events import EventCode
from kenshin.core.timeslots import US_PER_MINUTE
from kenshin.hes.ingest import decoded_to_batch
from tests.aroute.codec_support import (
    BASE_MIN,
    DEVICES,
    END_US,
    FWD,
    KEYS,
    OTHER_KEYS,
    SETTINGS,
    UNREGISTERED,
    V,
    assert_accounted,
    decoded_registers,
    decoded_rows,
    make_decoder,
    seal,
    slot_blocks,
    slot_frames,
    u32,
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


def test_the_guard_is_asked_about_authentic_frames_only() -> None:
    """The decoder does no I/O: it hands its caller the meter keys and counters of the frames
    that authenticated, and forged counters never reach the replay guard."""
    frames = slot_frames(7)
    forged = encode_interval_frames(
        FrameType.PUSH_SCHEDULED, DEVICES[:1], [99], *slot_blocks(1), OTHER_KEYS
    )[0]
    stranger = encode_frame(
        FrameType.EVENT, UNREGISTERED, 98, MeterEvent(EventCode.TAMPER, 0), KEYS
    )
    decoder = make_decoder().decoder
    authentic = decoder.authenticate([frames[0], forged, b"x", stranger, frames[2]])
    assert len(authentic) == 2
    assert authentic.meter_key.tolist() == [10, 12]
    assert authentic.counter.tolist() == [7, 7]
    assert authentic.index.tolist() == [0, 4]
    assert authentic.rejected == Counter(
        {
            RejectReason.AUTH_FAILED: 1,
            RejectReason.MALFORMED: 1,
            RejectReason.UNKNOWN_METER: 1,
        }
    )


def test_what_the_guard_does_not_admit_is_refused_as_replayed() -> None:
    decoder = make_decoder().decoder
    frames = [*slot_frames(3), seal(FrameType.PUSH_SCHEDULED, int(DEVICES[3]), 4, b"\x01")]
    authentic = decoder.authenticate(frames)
    decoded = decoder.parse(authentic, [True, False, True, False])
    assert decoded.frames.meter_key.tolist() == [10, 12]
    assert decoded.frames.index.tolist() == [0, 2]
    # replay comes before the plaintext: the nonsense frame is a replay, not a bad payload
    assert decoded.rejected == Counter({RejectReason.REPLAYED: 2})
    assert decoded.rejections == [
        Rejection(int(DEVICES[1]), RejectReason.REPLAYED, "counter 3"),
        Rejection(int(DEVICES[3]), RejectReason.REPLAYED, "counter 4"),
    ]
    assert_accounted(decoded)
    # the decoder keeps no replay state: the same frames, admitted again, are accepted again
    assert decoder.parse(decoder.authenticate(frames[:3]), [True] * 3).accepted == 3
    with pytest.raises(ValueError, match="admissions"):
        decoder.parse(authentic, [True])


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
    decoded = make_decoder(max_details=3).decode([b"x"] * 10)
    assert decoded.rejected == Counter({RejectReason.MALFORMED: 10})
    assert len(decoded.rejections) == 3


# ---------------------------------------------------------------------------------------------
# downlink, meter side


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
# grouping by layout


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
