"""The collector envelope: many meters' frames in one transport message.

The envelope is not authenticated by the frame keys (the transport protects it); a collector
that alters one can make frames disappear or fail, never make a forged value be accepted. The
byte layout is in ``docs/protocols/aroute.md``. No I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from kenshin.aroute.codec.layout import MAX_FRAME_BYTES
from kenshin.errors import FrameError

ENVELOPE_MAGIC = b"KSA"
ENVELOPE_VERSION = 1
# a collector's clock reads between 1970 and 2100: anything else is refused as malformed, so no
# later date arithmetic can overflow on it (a hostile envelope once crashed the head-end)
SENT_AT_MAX_US = 4_102_444_800_000_000  # 2100-01-01T00:00Z
# a collector id becomes an MQTT topic level: printable, no separator or wildcard
_BAD_ID_CHARS = frozenset("/+#")
_ENV_TAIL = struct.Struct(">qIH")  # sent_at_us, sequence, n_frames
_U16 = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a collector sends (or receives) in one transport message: many meters' frames."""

    collector: str
    sent_at_us: int  # collector clock, epoch µs
    sequence: int  # u32, per collector and direction
    frames: list[bytes]


def check_collector_id(collector: str) -> None:
    """Refuse (:class:`FrameError`) an id that is empty, not printable, or holds ``/ + #``."""
    if not collector:
        raise FrameError("empty collector id")
    if not collector.isprintable() or any(c in _BAD_ID_CHARS or c.isspace() for c in collector):
        raise FrameError(f"collector id {collector!r} has characters a topic level cannot hold")


def check_sent_at(sent_at_us: int) -> None:
    if not 0 <= sent_at_us <= SENT_AT_MAX_US:
        raise FrameError(f"envelope sent at {sent_at_us} µs, outside 1970 … 2100")


def encode_envelope(
    collector: str, sent_at_us: int, sequence: int, frames: Sequence[bytes | memoryview]
) -> bytes:
    name = collector.encode("utf-8")
    if len(name) > 0xFF:
        raise FrameError(f"collector id of {len(name)} bytes, at most 255")
    check_collector_id(collector)
    check_sent_at(sent_at_us)
    if len(frames) > 0xFFFF:
        raise FrameError(f"{len(frames)} frames in one envelope, at most {0xFFFF}")
    if not 0 <= sequence <= 0xFFFF_FFFF:
        raise FrameError(f"envelope sequence {sequence} outside 0 … 2**32 - 1")
    try:
        tail = _ENV_TAIL.pack(sent_at_us, sequence, len(frames))
    except struct.error as exc:
        raise FrameError(f"cannot encode envelope: {exc}") from None
    parts = [ENVELOPE_MAGIC, bytes((ENVELOPE_VERSION, len(name))), name, tail]
    for frame in frames:
        if len(frame) > MAX_FRAME_BYTES:
            raise FrameError(f"frame of {len(frame)} bytes, at most {MAX_FRAME_BYTES}")
        parts.append(_U16.pack(len(frame)))
        parts.append(bytes(frame))
    return b"".join(parts)


def decode_envelope(data: bytes | bytearray | memoryview) -> Envelope:
    """Parse an envelope; raises :class:`FrameError` on anything malformed (and only that)."""
    buf = bytes(data)
    size = len(buf)
    if size < 5 or buf[:3] != ENVELOPE_MAGIC:
        raise FrameError("not an A-route envelope (bad magic)")
    if buf[3] != ENVELOPE_VERSION:
        raise FrameError(f"envelope version {buf[3]} unsupported")
    name_len = buf[4]
    pos = 5 + name_len
    if size < pos + _ENV_TAIL.size:
        raise FrameError("envelope truncated in its header")
    try:
        collector = buf[5:pos].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("collector id is not UTF-8") from None
    check_collector_id(collector)
    sent_at_us, sequence, n_frames = _ENV_TAIL.unpack_from(buf, pos)
    check_sent_at(sent_at_us)
    pos += _ENV_TAIL.size
    frames = []
    for k in range(n_frames):
        if pos + 2 > size:
            raise FrameError(f"envelope truncated at frame {k} of {n_frames}")
        end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
        if end > size:
            raise FrameError(f"envelope truncated in frame {k} of {n_frames}")
        frames.append(buf[pos + 2 : end])
        pos = end
    if pos != size:
        raise FrameError(f"{size - pos} bytes after the last frame")
    return Envelope(collector, sent_at_us, sequence, frames)
