"""The A-route frame layout: the header, the fixed bodies and the interval-body directory.

Constants and ``struct`` layouts shared by :mod:`~kenshin.aroute.codec.encode` and
:mod:`~kenshin.aroute.codec.decode`, the packing and unpacking of the fixed bodies (polls,
commands, acknowledgements, events), and the parsing of an interval body's directory into a
:class:`Layout` (where every value sits). The byte layouts are drawn in
``docs/protocols/aroute.md``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from kenshin.aroute.frames import (
    AckStatus,
    Authorization,
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
from kenshin.core.channels import METERED_CHANNELS, Channel
from kenshin.core.events import EventCode
from kenshin.core.timeslots import Resolution
from kenshin.errors import FrameError

# ---------------------------------------------------------------------------------------------
# constants and fixed layouts (the envelope's are in envelope.py)

HEADER = struct.Struct(">BBQI")  # version, type, device_id, counter
HEADER_BYTES = HEADER.size  # 14
TAG_BYTES = 16
MIN_FRAME_BYTES = HEADER_BYTES + TAG_BYTES  # an empty body
MAX_FRAME_BYTES = 0xFFFF  # the envelope's u16 length
MAX_COUNTER = 0xFFFF_FFFF
INT32_MAX = 0x7FFF_FFFF

# interval body: directory first, then values
BODY_HEAD = struct.Struct(">BB")  # n_blocks, n_registers
BLOCK_DIR = struct.Struct(
    ">BBIH"
)  # resolution [min], channel, first interval end [epoch min], count
REG_DIR = struct.Struct(">BI")  # channel, read_at [epoch min]
MAX_BLOCKS = 0xFF
MAX_COUNT = 0xFFFF
MAX_EPOCH_MINUTES = 0xFFFF_FFFF

VOLTAGE_RESOLUTIONS = frozenset({Resolution.MIN5})  # A2/A3: voltage is a 5-min value
FIVE_MIN_TYPES = frozenset({FrameType.PUSH_5MIN_HISTORICAL, FrameType.PUSH_5MIN_REALTIME})
VALID_RESOLUTIONS = frozenset(int(r) for r in Resolution)
VALID_CHANNELS = frozenset(int(c) for c in METERED_CHANNELS)  # not computed ones (S3)
_STATE_BITS = 0
for _flag in OperatingState:
    _STATE_BITS |= int(_flag)

_POLL_REQUEST = struct.Struct(">I")
# request_id, measured_at_us, state, ampere_limit_a, power_w, current_r_da, current_t_da,
# voltage_dv, forward_register, reverse_register
_POLL_RESPONSE = struct.Struct(">IqBHiIIHII")
_COMMAND = struct.Struct(">IBIII")  # command_id, kind, arg1, arg2, arg3
# … then, on switching commands, the business system's authorization (issue 16)
_AUTHORIZATION = struct.Struct(">qqQ64s")  # not before, not after [µs], nonce, signature
_COMMAND_ACK = struct.Struct(">IBI")  # command_id, status, detail
_EVENT = struct.Struct(">BqI")  # code, at_us, detail

UPLINK_TYPES = frozenset(int(t) for t in FrameType if t.direction is Direction.UP)
DOWNLINK_TYPES = frozenset(int(t) for t in FrameType if t.direction is Direction.DOWN)
INTERVAL_TYPE_CODES = frozenset(int(t) for t in FrameType if t.carries_intervals)

Body = PollRequest | PollResponse | Command | CommandAck | MeterEvent
UplinkMessageBody = PollResponse | CommandAck | MeterEvent

_BODY_TYPES: dict[FrameType, type] = {
    FrameType.POLL_REQUEST: PollRequest,
    FrameType.POLL_RESPONSE: PollResponse,
    FrameType.COMMAND: Command,
    FrameType.COMMAND_ACK: CommandAck,
    FrameType.EVENT: MeterEvent,
}


class BadPayload(Exception):
    """An authentic plaintext that makes no sense (→ RejectReason.BAD_PAYLOAD)."""


# ---------------------------------------------------------------------------------------------
# fixed bodies


def pack_body(frame_type: FrameType, body: Body) -> bytes:
    """The plaintext of a fixed body; raises FrameError if it does not fit the frame type."""
    expected = _BODY_TYPES.get(frame_type)
    if expected is None:
        raise FrameError(
            f"{frame_type.name} frames carry interval blocks: use encode_interval_frames"
        )
    if not isinstance(body, expected):
        raise FrameError(
            f"{frame_type.name} frames carry a {expected.__name__}, got {type(body).__name__}"
        )
    try:
        if isinstance(body, PollRequest):
            return _POLL_REQUEST.pack(body.request_id)
        if isinstance(body, PollResponse):
            if body.state & ~_STATE_BITS:
                raise FrameError(f"unknown operating state bits {body.state:#x}")
            return _POLL_RESPONSE.pack(
                body.request_id,
                body.measured_at_us,
                body.state,
                body.ampere_limit_a,
                body.power_w,
                body.current_r_da,
                body.current_t_da,
                body.voltage_dv,
                body.forward_register,
                body.reverse_register,
            )
        if isinstance(body, Command):
            packed = _COMMAND.pack(
                body.command_id, CommandKind(body.kind), body.arg1, body.arg2, body.arg3
            )
            a = body.authorization
            if a is None:
                return packed
            if len(a.signature) != 64:
                raise FrameError(f"a signature is 64 bytes, got {len(a.signature)}")
            return packed + _AUTHORIZATION.pack(
                a.not_before_us, a.not_after_us, a.nonce, a.signature
            )
        if isinstance(body, CommandAck):
            return _COMMAND_ACK.pack(body.command_id, AckStatus(body.status), body.detail)
        return _EVENT.pack(EventCode(body.code), body.at_us, body.detail)
    except (struct.error, ValueError, OverflowError) as exc:
        raise FrameError(f"cannot encode {type(body).__name__}: {exc}") from None


def unpack_body(frame_type: int, pt: bytes) -> Body:
    """Decode a fixed body; raises BadPayload."""
    try:
        if frame_type == FrameType.POLL_RESPONSE:
            (rid, at, state, limit, power, cur_r, cur_t, volt, fwd, rev) = _POLL_RESPONSE.unpack(pt)
            if state & ~_STATE_BITS:
                raise BadPayload(f"unknown operating state bits {state:#x}")
            if fwd > INT32_MAX or rev > INT32_MAX:
                raise BadPayload("register above 2**31 - 1")
            return PollResponse(rid, at, state, limit, power, cur_r, cur_t, volt, fwd, rev)
        if frame_type == FrameType.COMMAND_ACK:
            cid, status, detail = _COMMAND_ACK.unpack(pt)
            return CommandAck(cid, AckStatus(status), detail)
        if frame_type == FrameType.EVENT:
            code, at, detail = _EVENT.unpack(pt)
            return MeterEvent(EventCode(code), at, detail)
        if frame_type == FrameType.POLL_REQUEST:
            (rid,) = _POLL_REQUEST.unpack(pt)
            return PollRequest(rid)
        if frame_type == FrameType.COMMAND:
            cid, kind, a1, a2, a3 = _COMMAND.unpack_from(pt)
            rest = pt[_COMMAND.size :]
            if not rest:
                return Command(cid, CommandKind(kind), a1, a2, a3)
            before, after, nonce, signature = _AUTHORIZATION.unpack(rest)
            authorization = Authorization(before, after, nonce, signature)
            return Command(cid, CommandKind(kind), a1, a2, a3, authorization)
    except struct.error:
        raise BadPayload(f"body of {len(pt)} bytes does not fit the layout") from None
    except ValueError:
        raise BadPayload("unknown code in the body") from None
    raise BadPayload(f"frame type {frame_type:#04x} has no fixed body")


# ---------------------------------------------------------------------------------------------
# interval bodies


@dataclass(frozen=True, slots=True)
class Layout:
    """What a body directory says: where every value sits. Parsed once per distinct directory."""

    size: int  # bytes of the whole body
    dtype: np.dtype[Any]  # structured: one field per block ("b0", …) and "r" for registers
    blocks: tuple[tuple[int, int, int, int], ...]  # (resolution, channel, first end min, count)
    registers: tuple[tuple[int, int], ...]  # (channel, read_at min)
    energy_fields: tuple[str, ...]  # fields whose values must fit in int32
    five_min_only: bool  # every block is 5-min (allowed in PUSH_5MIN_* frames)
    error: str | None = None  # set when the directory itself is invalid


def _value_bytes(channel: int) -> int:
    return 2 if channel == Channel.VOLTAGE else 4


def parse_layout(directory: bytes) -> Layout:
    """What an interval body's directory (all of it: see :func:`directory_size`) says.

    A directory that breaks a rule gives a Layout whose ``error`` says which.
    """
    n_blocks, n_regs = BODY_HEAD.unpack_from(directory)
    blocks = []
    offset = BODY_HEAD.size
    for _ in range(n_blocks):
        blocks.append(BLOCK_DIR.unpack_from(directory, offset))
        offset += BLOCK_DIR.size
    registers = []
    for _ in range(n_regs):
        registers.append(REG_DIR.unpack_from(directory, offset))
        offset += REG_DIR.size

    def invalid(reason: str) -> Layout:
        return Layout(0, np.dtype(np.uint8), (), (), (), False, error=reason)

    seen: set[tuple[int, int]] = set()
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    energy: list[str] = []
    for j, (res, ch, first, count) in enumerate(blocks):
        if res not in VALID_RESOLUTIONS:
            return invalid(f"resolution {res} min is not 1/5/15/30")
        if ch not in VALID_CHANNELS:
            return invalid(f"unknown channel {ch}")
        if ch == Channel.VOLTAGE and res not in VOLTAGE_RESOLUTIONS:
            return invalid(f"voltage at {res}-min resolution: voltage values are 5-min only")
        if first % res:
            return invalid(f"interval end not on a {res}-min boundary")
        if (res, ch) in seen:
            return invalid(f"block ({res} min, channel {ch}) repeated")
        seen.add((res, ch))
        size = _value_bytes(ch)
        if count:
            names.append(f"b{j}")
            formats.append((">u2" if size == 2 else ">u4", (count,)))
            offsets.append(offset)
            if size == 4:
                energy.append(f"b{j}")
        offset += count * size
    reg_channels = [ch for ch, _ in registers]
    for ch in reg_channels:
        if ch not in VALID_CHANNELS:
            return invalid(f"unknown register channel {ch}")
        if ch == Channel.VOLTAGE:
            return invalid("voltage has no register")
    if len(set(reg_channels)) != len(reg_channels):
        return invalid("register channel repeated")
    if n_regs:
        names.append("r")
        formats.append((">u4", (n_regs,)))
        offsets.append(offset)
        energy.append("r")
    offset += 4 * n_regs
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})
    return Layout(
        size=offset,
        dtype=dtype,
        blocks=tuple(blocks),
        registers=tuple(registers),
        energy_fields=tuple(energy),
        five_min_only=all(res == Resolution.MIN5 for res, *_ in blocks),
    )


def directory_size(n_blocks: int, n_regs: int) -> int:
    """Bytes of a directory of ``n_blocks`` interval blocks and ``n_regs`` registers."""
    return BODY_HEAD.size + n_blocks * BLOCK_DIR.size + n_regs * REG_DIR.size
