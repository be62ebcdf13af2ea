"""The collector envelope: round trips, malformed envelopes, tampering collectors (SPEC X4)."""

from __future__ import annotations

import struct
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.aroute.codec.envelope import SENT_AT_MAX_US, decode_envelope, encode_envelope
from kenshin.aroute.frames import (
    FrameType,
    RejectReason,
)
from kenshin.errors import FrameError, InvalidInput
from tests.aroute.codec_support import (
    DEVICES,
    END_US,
    SETTINGS,
    assert_accounted,
    decoded_rows,
    expected_rows,
    make_decoder,
    slot_blocks,
    slot_frames,
    u32,
)

COLLECTOR_IDS = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp", "Cf", "Co", "Cn")),
    min_size=1,
    max_size=60,
).filter(lambda s: len(s.encode()) <= 255 and s.isprintable() and not set(s) & set("/+#"))


@SETTINGS
@given(
    collector=COLLECTOR_IDS,
    sent_at=st.integers(0, SENT_AT_MAX_US),
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


@pytest.mark.parametrize("sent_at", [-1, SENT_AT_MAX_US + 1, 2**62, -(2**63)])
def test_a_send_time_outside_1970_to_2100_is_malformed(sent_at: int) -> None:
    """Issue 12: an envelope dated 2**62 µs once crashed the head-end (OverflowError)."""
    payload = b"KSA\x01\x01c" + struct.pack(">qIH", sent_at, 0, 0)
    with pytest.raises(FrameError, match="outside 1970"):
        decode_envelope(payload)
    with pytest.raises(FrameError, match="outside 1970"):
        encode_envelope("c", sent_at, 0, [])


@pytest.mark.parametrize("collector", ["", "a/b", "c+", "#", "c 1", "c\n", "c\x00"])
def test_a_collector_id_a_topic_level_cannot_hold_is_malformed(collector: str) -> None:
    name = collector.encode()
    payload = b"KSA\x01" + bytes([len(name)]) + name + struct.pack(">qIH", 0, 0, 0)
    with pytest.raises(FrameError, match="collector id"):
        decode_envelope(payload)


def test_envelope_truncation_and_trailing_bytes_raise_frame_error() -> None:
    payload = encode_envelope("c1", 0, 0, slot_frames())
    for cut in (len(payload) - 1, len(payload) - 50, 20):
        with pytest.raises(FrameError):
            decode_envelope(payload[:cut])
    with pytest.raises(FrameError):
        decode_envelope(payload + b"\0")
    assert issubclass(FrameError, InvalidInput)


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
