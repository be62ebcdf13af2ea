"""The A-route wire format: meter frames, collector envelopes, and a sans-I/O codec for both.

A **meter frame** travels end to end between a meter and the head-end; the collectors that
bundle frames into **envelopes** can neither read nor alter it (SPEC X2–X4)::

    header (14 bytes, big-endian, authenticated as AAD)
    ┌─────────┬──────┬───────────────┬────────────┐
    │ version │ type │ device_id u64 │ counter u32│ ‖ AES-128-GCM(body) ‖ tag (16)
    └─────────┴──────┴───────────────┴────────────┘
    nonce = device_id ‖ counter (12 bytes); key = the meter's own key for the frame's direction

The byte layouts of every body and of the envelope are in ``docs/protocols/aroute.md``.

Nothing here does I/O or reads a clock; the one side effect is logging of rejected frames
(rate-limited). Encoding is vectorized over meters (one numpy build of all plaintexts, then one
AES-GCM call per frame); decoding authenticates frame by frame and parses the plaintexts of all
frames with the same block layout with one ``np.frombuffer``.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag

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
from kenshin.aroute.keys import KeyRing
from kenshin.aroute.messages import IntervalBlock, RegisterBlock
from kenshin.aroute.registry import MeterRegistry
from kenshin.aroute.replay import ReplayGuard
from kenshin.core.channels import METERED_CHANNELS, Channel
from kenshin.core.timeslots import US_PER_MINUTE, Resolution
from kenshin.errors import FrameError

log = logging.getLogger("kenshin.aroute")

# ---------------------------------------------------------------------------------------------
# constants and fixed layouts

HEADER = struct.Struct(">BBQI")  # version, type, device_id, counter
HEADER_BYTES = HEADER.size  # 14
TAG_BYTES = 16
MIN_FRAME_BYTES = HEADER_BYTES + TAG_BYTES  # an empty body
MAX_FRAME_BYTES = 0xFFFF  # the envelope's u16 length
MAX_COUNTER = 0xFFFF_FFFF
INT32_MAX = 0x7FFF_FFFF

ENVELOPE_MAGIC = b"KSA"
ENVELOPE_VERSION = 1
_ENV_TAIL = struct.Struct(">qIH")  # sent_at_us, sequence, n_frames
_U16 = struct.Struct(">H")

# interval body: directory first, then values
_BODY_HEAD = struct.Struct(">BB")  # n_blocks, n_registers
_BLOCK_DIR = struct.Struct(
    ">BBIH"
)  # resolution [min], channel, first interval end [epoch min], count
_REG_DIR = struct.Struct(">BI")  # channel, read_at [epoch min]
MAX_BLOCKS = 0xFF
MAX_COUNT = 0xFFFF
MAX_EPOCH_MINUTES = 0xFFFF_FFFF

VOLTAGE_RESOLUTIONS = frozenset({Resolution.MIN5})  # A2/A3: voltage is a 5-min value
_FIVE_MIN_TYPES = frozenset({FrameType.PUSH_5MIN_HISTORICAL, FrameType.PUSH_5MIN_REALTIME})
_VALID_RESOLUTIONS = frozenset(int(r) for r in Resolution)
_VALID_CHANNELS = frozenset(int(c) for c in METERED_CHANNELS)  # not computed ones (S3)
_STATE_BITS = 0
for _flag in OperatingState:
    _STATE_BITS |= int(_flag)

_POLL_REQUEST = struct.Struct(">I")
# request_id, measured_at_us, state, ampere_limit_a, power_w, current_r_da, current_t_da,
# voltage_dv, forward_register, reverse_register
_POLL_RESPONSE = struct.Struct(">IqBHiIIHII")
_COMMAND = struct.Struct(">IBIII")  # command_id, kind, arg1, arg2, arg3
_COMMAND_ACK = struct.Struct(">IBI")  # command_id, status, detail
_EVENT = struct.Struct(">BqI")  # code, at_us, detail

_UPLINK_TYPES = frozenset(int(t) for t in FrameType if t.direction is Direction.UP)
_DOWNLINK_TYPES = frozenset(int(t) for t in FrameType if t.direction is Direction.DOWN)
_INTERVAL_TYPE_CODES = frozenset(int(t) for t in FrameType if t.carries_intervals)


def _lut(codes: Iterable[int]) -> npt.NDArray[np.bool_]:
    table = np.zeros(256, dtype=bool)
    table[list(codes)] = True
    return table


_UPLINK_LUT = _lut(_UPLINK_TYPES)
_DOWNLINK_LUT = _lut(_DOWNLINK_TYPES)
_INTERVAL_LUT = _lut(_INTERVAL_TYPE_CODES)

Body = PollRequest | PollResponse | Command | CommandAck | MeterEvent
UplinkMessageBody = PollResponse | CommandAck | MeterEvent

_BODY_TYPES: dict[FrameType, type] = {
    FrameType.POLL_REQUEST: PollRequest,
    FrameType.POLL_RESPONSE: PollResponse,
    FrameType.COMMAND: Command,
    FrameType.COMMAND_ACK: CommandAck,
    FrameType.EVENT: MeterEvent,
}


class _BadPayload(Exception):
    """Internal: an authentic plaintext that makes no sense (→ RejectReason.BAD_PAYLOAD)."""


class DownlinkRejected(FrameError):
    """A downlink frame the meter refuses; ``reason`` says why."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.label}: {detail}")
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# fixed bodies


def _pack_body(frame_type: FrameType, body: Body) -> bytes:
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
            return _COMMAND.pack(
                body.command_id, CommandKind(body.kind), body.arg1, body.arg2, body.arg3
            )
        if isinstance(body, CommandAck):
            return _COMMAND_ACK.pack(body.command_id, AckStatus(body.status), body.detail)
        return _EVENT.pack(EventCode(body.code), body.at_us, body.detail)
    except (struct.error, ValueError, OverflowError) as exc:
        raise FrameError(f"cannot encode {type(body).__name__}: {exc}") from None


def _unpack_body(frame_type: int, pt: bytes) -> Body:
    """Decode a fixed body; raises _BadPayload."""
    try:
        if frame_type == FrameType.POLL_RESPONSE:
            (rid, at, state, limit, power, cur_r, cur_t, volt, fwd, rev) = _POLL_RESPONSE.unpack(pt)
            if state & ~_STATE_BITS:
                raise _BadPayload(f"unknown operating state bits {state:#x}")
            if fwd > INT32_MAX or rev > INT32_MAX:
                raise _BadPayload("register above 2**31 - 1")
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
            cid, kind, a1, a2, a3 = _COMMAND.unpack(pt)
            return Command(cid, CommandKind(kind), a1, a2, a3)
    except struct.error:
        raise _BadPayload(f"body of {len(pt)} bytes does not fit the layout") from None
    except ValueError:
        raise _BadPayload("unknown code in the body") from None
    raise _BadPayload(f"frame type {frame_type:#04x} has no fixed body")


# ---------------------------------------------------------------------------------------------
# frames


def _header(frame_type: FrameType, device_id: int, counter: int) -> bytes:
    if not 0 <= device_id < 1 << 64:
        raise FrameError(f"device id {device_id} does not fit in 64 bits")
    if not 0 <= counter <= MAX_COUNTER:
        raise FrameError(f"frame counter {counter} outside 0 … 2**32 - 1 (rekey the meter)")
    return HEADER.pack(WIRE_VERSION, int(frame_type), device_id, counter)


def encode_frame(
    frame_type: FrameType, device_id: int, counter: int, body: Body, keys: KeyRing
) -> bytes:
    """One frame with a fixed body (poll, command, acknowledgement, event).

    Encrypted under the meter's key for ``frame_type.direction``: the meter encodes uplink
    frames, the head-end downlink frames.
    """
    frame_type = FrameType(frame_type)
    header = _header(frame_type, int(device_id), int(counter))
    plaintext = _pack_body(frame_type, body)
    aead = keys.aead(int(device_id), frame_type.direction)
    return header + aead.encrypt(header[2:], plaintext, header)


def open_downlink(
    frame: bytes | memoryview, keys: KeyRing
) -> tuple[int, int, PollRequest | Command]:
    """Meter side: ``(device_id, counter, body)`` of a downlink frame, or DownlinkRejected.

    The caller checks that ``device_id`` is its own and that ``counter`` is fresh (e.g. with
    :func:`kenshin.aroute.replay.window_admit`).
    """
    data = bytes(frame)
    if len(data) < MIN_FRAME_BYTES:
        raise DownlinkRejected(
            RejectReason.MALFORMED, f"frame of {len(data)} bytes, at least {MIN_FRAME_BYTES}"
        )
    version, frame_type, device_id, counter = HEADER.unpack_from(data)
    if version != WIRE_VERSION:
        raise DownlinkRejected(RejectReason.MALFORMED, f"wire version {version}")
    if frame_type in _UPLINK_TYPES:
        raise DownlinkRejected(RejectReason.WRONG_DIRECTION, f"uplink frame type {frame_type:#04x}")
    if frame_type not in _DOWNLINK_TYPES:
        raise DownlinkRejected(RejectReason.MALFORMED, f"unknown frame type {frame_type:#04x}")
    try:
        plaintext = keys.aead(device_id, Direction.DOWN).decrypt(
            data[2:HEADER_BYTES], data[HEADER_BYTES:], data[:HEADER_BYTES]
        )
    except InvalidTag:
        raise DownlinkRejected(RejectReason.AUTH_FAILED, "tag did not verify") from None
    try:
        body = _unpack_body(frame_type, plaintext)
    except _BadPayload as exc:
        raise DownlinkRejected(RejectReason.BAD_PAYLOAD, str(exc)) from None
    assert isinstance(body, PollRequest | Command)
    return device_id, counter, body


# ---------------------------------------------------------------------------------------------
# interval bodies


@dataclass(frozen=True, slots=True)
class _Layout:
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


def _parse_layout(directory: bytes) -> _Layout:
    n_blocks, n_regs = _BODY_HEAD.unpack_from(directory)
    blocks = []
    offset = _BODY_HEAD.size
    for _ in range(n_blocks):
        blocks.append(_BLOCK_DIR.unpack_from(directory, offset))
        offset += _BLOCK_DIR.size
    registers = []
    for _ in range(n_regs):
        registers.append(_REG_DIR.unpack_from(directory, offset))
        offset += _REG_DIR.size

    def invalid(reason: str) -> _Layout:
        return _Layout(0, np.dtype(np.uint8), (), (), (), False, error=reason)

    seen: set[tuple[int, int]] = set()
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    energy: list[str] = []
    for j, (res, ch, first, count) in enumerate(blocks):
        if res not in _VALID_RESOLUTIONS:
            return invalid(f"resolution {res} min is not 1/5/15/30")
        if ch not in _VALID_CHANNELS:
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
        if ch not in _VALID_CHANNELS:
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
    return _Layout(
        size=offset,
        dtype=dtype,
        blocks=tuple(blocks),
        registers=tuple(registers),
        energy_fields=tuple(energy),
        five_min_only=all(res == Resolution.MIN5 for res, *_ in blocks),
    )


def _directory_size(n_blocks: int, n_regs: int) -> int:
    return _BODY_HEAD.size + n_blocks * _BLOCK_DIR.size + n_regs * _REG_DIR.size


def _check_interval_type(frame_type: FrameType) -> FrameType:
    frame_type = FrameType(frame_type)
    if not frame_type.carries_intervals:
        raise FrameError(f"{frame_type.name} frames do not carry interval blocks")
    return frame_type


def _block_directory(
    frame_type: FrameType, block: IntervalBlock
) -> tuple[bytes, npt.NDArray[np.uint8] | None]:
    res = int(block.resolution)
    ch = int(block.channel)
    ends = np.asarray(block.interval_ends_us, dtype=np.int64)
    k = len(ends)
    if res not in _VALID_RESOLUTIONS:
        raise FrameError(f"resolution {res} min is not 1/5/15/30")
    if ch == Channel.VOLTAGE and res not in VOLTAGE_RESOLUTIONS:
        raise FrameError(f"voltage at {res}-min resolution: voltage values are 5-min only")
    if frame_type in _FIVE_MIN_TYPES and res != Resolution.MIN5:
        raise FrameError(f"{frame_type.name} frames carry 5-min values only, got {res}-min")
    if k > MAX_COUNT:
        raise FrameError(f"{k} intervals in one block, at most {MAX_COUNT}")
    step = res * US_PER_MINUTE
    if k and (int(ends[0]) % step or (k > 1 and bool((np.diff(ends) != step).any()))):
        raise FrameError(f"interval ends must be consecutive {res}-min slot ends")
    first = int(ends[0]) // US_PER_MINUTE if k else 0
    if not 0 <= first <= MAX_EPOCH_MINUTES:
        raise FrameError("interval end outside the wire's epoch-minute range")
    values = np.asarray(block.values)
    if values.size:
        lo, hi = int(values.min()), int(values.max())
        top = 0xFFFF if ch == Channel.VOLTAGE else INT32_MAX
        if lo < 0 or hi > top:
            raise FrameError(f"channel {Channel(ch).name} values must be within 0 … {top}")
    wire = np.dtype(">u2") if ch == Channel.VOLTAGE else np.dtype(">u4")
    m = values.shape[1]
    payload = (
        np.ascontiguousarray(values.T).astype(wire).view(np.uint8).reshape(m, k * wire.itemsize)
        if k
        else None
    )
    return _BLOCK_DIR.pack(res, ch, first, k), payload


def encode_interval_frames(
    frame_type: FrameType,
    device_ids: npt.ArrayLike,
    counters: npt.ArrayLike,
    intervals: Sequence[IntervalBlock],
    registers: Sequence[RegisterBlock],
    keys: KeyRing,
) -> list[bytes]:
    """One uplink frame per meter carrying its values of every block (meter side, vectorized).

    ``device_ids[i]`` and ``counters[i]`` belong to column ``i`` of every block: all blocks
    cover the same ``m`` meters in the same order (:func:`group_by_meters` splits a message
    whose blocks cover different meters). Blocks without intervals are left out.
    """
    frame_type = _check_interval_type(frame_type)
    dev = np.asarray(device_ids).reshape(-1)
    ctr = np.asarray(counters).reshape(-1).astype(np.int64)
    m = len(dev)
    if len(ctr) != m:
        raise FrameError(f"{m} device ids but {len(ctr)} counters")
    if m == 0:
        return []
    if dev.dtype != np.uint64 and int(dev.min()) < 0:
        raise FrameError("device ids must not be negative")
    if int(ctr.min()) < 0 or int(ctr.max()) > MAX_COUNTER:
        raise FrameError("frame counters must be within 0 … 2**32 - 1 (rekey the meter)")
    covered = [b.meter_keys for b in intervals] + [r.meter_keys for r in registers]
    for meter_keys in covered:
        if len(meter_keys) != m:
            raise FrameError(f"a block covers {len(meter_keys)} meters, expected {m}")
        if meter_keys is not covered[0] and not np.array_equal(meter_keys, covered[0]):
            raise FrameError("all blocks must cover the same meters in the same order")
    blocks = [b for b in intervals if len(b.interval_ends_us)]
    if len(blocks) > MAX_BLOCKS or len(registers) > MAX_BLOCKS:
        raise FrameError(f"at most {MAX_BLOCKS} interval blocks and {MAX_BLOCKS} registers")
    seen: set[tuple[int, int]] = set()
    directory = [_BODY_HEAD.pack(len(blocks), len(registers))]
    payloads: list[npt.NDArray[np.uint8]] = []
    for block in blocks:
        key = (int(block.resolution), int(block.channel))
        if key in seen:
            raise FrameError(f"block ({key[0]} min, channel {key[1]}) given twice")
        seen.add(key)
        entry, payload = _block_directory(frame_type, block)
        directory.append(entry)
        if payload is not None:
            payloads.append(payload)
    reg_channels = set()
    reg_values = []
    for reg in registers:
        ch = int(reg.channel)
        if ch == Channel.VOLTAGE:
            raise FrameError("voltage has no register")
        if ch in reg_channels:
            raise FrameError(f"register channel {ch} given twice")
        reg_channels.add(ch)
        if reg.read_at_us % US_PER_MINUTE:
            raise FrameError("register reads are stamped on whole minutes")
        minute = int(reg.read_at_us) // US_PER_MINUTE
        if not 0 <= minute <= MAX_EPOCH_MINUTES:
            raise FrameError("register read time outside the wire's epoch-minute range")
        directory.append(_REG_DIR.pack(ch, minute))
        values = np.asarray(reg.registers).reshape(-1)
        if values.size and (int(values.min()) < 0 or int(values.max()) > INT32_MAX):
            raise FrameError("registers must be within 0 … 2**31 - 1")
        reg_values.append(values)
    if reg_values:
        payloads.append(
            np.ascontiguousarray(np.stack(reg_values, axis=1).astype(">u4"))
            .view(np.uint8)
            .reshape(m, 4 * len(reg_values))
        )
    head = b"".join(directory)
    head_rows = np.broadcast_to(np.frombuffer(head, dtype=np.uint8), (m, len(head)))
    plain = np.concatenate([head_rows, *payloads], axis=1) if payloads else head_rows
    size = plain.shape[1]
    if HEADER_BYTES + size + TAG_BYTES > MAX_FRAME_BYTES:
        raise FrameError(f"a frame of {size} body bytes exceeds {MAX_FRAME_BYTES} bytes")
    plain_bytes = np.ascontiguousarray(plain).tobytes()

    headers = np.empty(
        m,
        dtype=np.dtype(
            {
                "names": ["v", "t", "d", "c"],
                "formats": ["u1", "u1", ">u8", ">u4"],
                "offsets": [0, 1, 2, 10],
                "itemsize": HEADER_BYTES,
            }
        ),
    )
    headers["v"] = WIRE_VERSION
    headers["t"] = int(frame_type)
    headers["d"] = dev.astype(np.uint64)
    headers["c"] = ctr.astype(np.uint32)
    header_bytes = headers.tobytes()

    ciphers = keys.aeads(dev.astype(np.uint64).tolist(), Direction.UP)
    out = []
    h = HEADER_BYTES
    for i, cipher in enumerate(ciphers):
        header = header_bytes[h * i : h * i + h]
        out.append(
            header + cipher.encrypt(header[2:], plain_bytes[size * i : size * i + size], header)
        )
    return out


def group_by_meters(
    intervals: Sequence[IntervalBlock], registers: Sequence[RegisterBlock] = ()
) -> list[tuple[npt.NDArray[np.int32], list[IntervalBlock], list[RegisterBlock]]]:
    """Split blocks that cover different meters into groups of meters that share their blocks.

    Returns ``(meter_keys, intervals, registers)`` per group, every block restricted to those
    meters in that order: the input :func:`encode_interval_frames` wants. A message of
    :func:`kenshin.fleet.uplink.build_slot_message` (30-min for all, reactive for HV, 15-min for
    next-generation meters, 5-min for the sample) becomes a few groups.
    """
    all_blocks: list[IntervalBlock | RegisterBlock] = [*intervals, *registers]
    if not all_blocks:
        return []
    if len(all_blocks) > 63:
        raise FrameError("at most 63 blocks can be grouped at once")
    keys = np.unique(np.concatenate([np.asarray(b.meter_keys, dtype=np.int64) for b in all_blocks]))
    membership = np.zeros(len(keys), dtype=np.int64)
    positions = []
    for j, block in enumerate(all_blocks):
        mk = np.asarray(block.meter_keys, dtype=np.int64)
        pos = np.searchsorted(keys, mk)
        if len(np.unique(mk)) != len(mk):
            raise FrameError("a block lists a meter twice")
        membership[pos] |= 1 << j
        inverse = np.full(len(keys), -1, dtype=np.int64)
        inverse[pos] = np.arange(len(mk))
        positions.append(inverse)
    groups = []
    for mask in np.unique(membership).tolist():
        members = np.flatnonzero(membership == mask)
        group_keys = keys[members].astype(np.int32)
        group_intervals: list[IntervalBlock] = []
        group_registers: list[RegisterBlock] = []
        for j, block in enumerate(all_blocks):
            if not mask >> j & 1:
                continue
            cols = positions[j][members]
            if isinstance(block, IntervalBlock):
                group_intervals.append(
                    IntervalBlock(
                        block.resolution,
                        block.channel,
                        group_keys,
                        block.interval_ends_us,
                        block.values[:, cols],
                    )
                )
            else:
                group_registers.append(
                    RegisterBlock(
                        block.channel, group_keys, block.read_at_us, block.registers[cols]
                    )
                )
        groups.append((group_keys, group_intervals, group_registers))
    return groups


# ---------------------------------------------------------------------------------------------
# decoding (head-end)


def _empty(dtype: type) -> npt.NDArray[Any]:
    return np.empty(0, dtype=dtype)


@dataclass(frozen=True, slots=True)
class IntervalColumns:
    """Accepted interval values, one row per value (long form)."""

    meter_key: npt.NDArray[np.int32]
    channel: npt.NDArray[np.uint8]
    resolution: npt.NDArray[np.uint8]
    interval_end_us: npt.NDArray[np.int64]
    value: npt.NDArray[np.int32]
    frame_type: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.meter_key)


@dataclass(frozen=True, slots=True)
class RegisterColumns:
    """Accepted register reads, one row per read."""

    meter_key: npt.NDArray[np.int32]
    channel: npt.NDArray[np.uint8]
    read_at_us: npt.NDArray[np.int64]
    register: npt.NDArray[np.int32]
    frame_type: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.meter_key)


@dataclass(frozen=True, slots=True)
class FrameColumns:
    """One row per accepted frame."""

    meter_key: npt.NDArray[np.int32]
    frame_type: npt.NDArray[np.uint8]
    counter: npt.NDArray[np.int64]
    index: npt.NDArray[np.int64]  # position of the frame in the decoded input

    def __len__(self) -> int:
        return len(self.meter_key)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one frame was refused; never its content. ``device_id`` is None when unparseable."""

    device_id: int | None
    reason: RejectReason
    detail: str


@dataclass(frozen=True, slots=True)
class DecodedFrames:
    """What a batch of uplink frames carried, as columns, and what was refused."""

    intervals: IntervalColumns
    registers: RegisterColumns
    frames: FrameColumns
    messages: list[tuple[int, UplinkMessageBody]]  # (meter_key, body) of non-interval frames
    rejected: Counter[RejectReason] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)  # capped, for logging
    n_input: int = 0

    @property
    def accepted(self) -> int:
        return len(self.frames)

    @classmethod
    def concat(cls, parts: Iterable[DecodedFrames]) -> DecodedFrames:
        parts = list(parts)

        def cat(getter: Callable[[DecodedFrames], npt.NDArray[Any]], dtype: type) -> Any:
            arrays = [getter(p) for p in parts]
            return np.concatenate(arrays) if arrays else _empty(dtype)

        rejected: Counter[RejectReason] = Counter()
        for p in parts:
            rejected.update(p.rejected)
        offsets = np.cumsum([0] + [p.n_input for p in parts[:-1]]).tolist()
        return cls(
            intervals=IntervalColumns(
                cat(lambda p: p.intervals.meter_key, np.int32),
                cat(lambda p: p.intervals.channel, np.uint8),
                cat(lambda p: p.intervals.resolution, np.uint8),
                cat(lambda p: p.intervals.interval_end_us, np.int64),
                cat(lambda p: p.intervals.value, np.int32),
                cat(lambda p: p.intervals.frame_type, np.uint8),
            ),
            registers=RegisterColumns(
                cat(lambda p: p.registers.meter_key, np.int32),
                cat(lambda p: p.registers.channel, np.uint8),
                cat(lambda p: p.registers.read_at_us, np.int64),
                cat(lambda p: p.registers.register, np.int32),
                cat(lambda p: p.registers.frame_type, np.uint8),
            ),
            frames=FrameColumns(
                cat(lambda p: p.frames.meter_key, np.int32),
                cat(lambda p: p.frames.frame_type, np.uint8),
                cat(lambda p: p.frames.counter, np.int64),
                np.concatenate(
                    [p.frames.index + off for p, off in zip(parts, offsets, strict=True)]
                )
                if parts
                else _empty(np.int64),
            ),
            messages=[m for p in parts for m in p.messages],
            rejected=rejected,
            rejections=[r for p in parts for r in p.rejections],
            n_input=sum(p.n_input for p in parts),
        )


class RejectionLog:
    """Logs rejected frames as aggregated warnings, at most ``max_lines`` per ``period_s``.

    One line per decoded batch that had rejections (counts per reason and a few examples);
    beyond the budget, counts accumulate and the next line that gets through reports them, so a
    flood of bad frames costs a few log lines, not one per frame.
    """

    def __init__(
        self,
        max_lines: int = 20,
        period_s: float = 60.0,
        examples: int = 3,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self.max_lines = max_lines
        self.period_s = period_s
        self.examples = examples
        self._clock = clock
        self._logger = logger
        self._window_start = -float("inf")
        self._lines = 0
        self._suppressed: Counter[RejectReason] = Counter()
        self._suppressed_batches = 0

    def report(self, rejected: Counter[RejectReason], details: Sequence[Rejection]) -> None:
        if not rejected:
            return
        now = self._clock()
        if now - self._window_start >= self.period_s:
            self._window_start = now
            self._lines = 0
        if self._lines >= self.max_lines:
            self._suppressed.update(rejected)
            self._suppressed_batches += 1
            return
        self._lines += 1
        counts = ", ".join(f"{r.label}={n}" for r, n in sorted(rejected.items()))
        examples = "; ".join(
            f"device {d.device_id if d.device_id is not None else '?'} {d.reason.label} "
            f"({d.detail})"
            for d in details[: self.examples]
        )
        extra = ""
        if self._suppressed:
            held = ", ".join(f"{r.label}={n}" for r, n in sorted(self._suppressed.items()))
            extra = f" [+ {self._suppressed_batches} batches not logged: {held}]"
            self._suppressed.clear()
            self._suppressed_batches = 0
        self._logger.warning(
            "A-route: rejected %d frame(s): %s; e.g. %s%s",
            sum(rejected.values()),
            counts,
            examples,
            extra,
        )


@dataclass(slots=True)
class _Parts:
    """Accumulates columns while decoding one batch."""

    iv: list[list[npt.NDArray[Any]]] = field(default_factory=lambda: [[] for _ in range(6)])
    rg: list[list[npt.NDArray[Any]]] = field(default_factory=lambda: [[] for _ in range(5)])


def _cat(parts: list[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
    if not parts:
        return _empty(dtype)
    if len(parts) == 1:
        return parts[0].astype(dtype, copy=False)
    return np.concatenate(parts).astype(dtype, copy=False)


_LAYOUT_CACHE_MAX = 4096


class FrameDecoder:
    """Head-end side: authenticates, de-duplicates and parses uplink frames in batches.

    Order of checks per frame: header (MALFORMED, WRONG_DIRECTION), registry (UNKNOWN_METER),
    AES-GCM tag (AUTH_FAILED), replay window on authentic frames only (REPLAYED), plaintext
    (BAD_PAYLOAD). Rejected frames are counted, reported through :class:`RejectionLog` and
    their content is dropped. Random input never raises.
    """

    def __init__(
        self,
        registry: MeterRegistry,
        keys: KeyRing,
        replay: ReplayGuard,
        *,
        max_details: int = 100,
        rejection_log: RejectionLog | None = None,
    ) -> None:
        self.registry = registry
        self.keys = keys
        self.replay = replay
        self.max_details = max_details
        self.rejection_log = rejection_log if rejection_log is not None else RejectionLog()
        self._layouts: dict[bytes, _Layout] = {}

    # -- helpers

    def _layout(self, directory: bytes) -> _Layout:
        layout = self._layouts.get(directory)
        if layout is None:
            if len(self._layouts) >= _LAYOUT_CACHE_MAX:
                self._layouts.clear()
            layout = _parse_layout(directory)
            self._layouts[directory] = layout
        return layout

    # -- the batch

    def decode(self, frames: Sequence[bytes | bytearray | memoryview]) -> DecodedFrames:
        n = len(frames)
        data = [f if type(f) is bytes else bytes(f) for f in frames]
        rejected: Counter[RejectReason] = Counter()
        details: list[Rejection] = []
        max_details = self.max_details

        def reject(device_id: int | None, reason: RejectReason, detail: str) -> None:
            rejected[reason] += 1
            if len(details) < max_details:
                details.append(Rejection(device_id, reason, detail))

        # 1. headers, vectorized
        lengths = np.fromiter(map(len, data), dtype=np.int64, count=n)
        ok_len = (lengths >= MIN_FRAME_BYTES) & (lengths <= MAX_FRAME_BYTES)
        for i in np.flatnonzero(~ok_len).tolist():
            reject(None, RejectReason.MALFORMED, f"frame of {len(data[i])} bytes")
        idx = np.flatnonzero(ok_len)
        if len(idx):
            starts = (np.cumsum(lengths) - lengths)[idx]
            buf = np.frombuffer(b"".join(data), dtype=np.uint8)
            head = buf[starts[:, None] + np.arange(HEADER_BYTES)]
            version = head[:, 0]
            ftype = head[:, 1]
            device = np.ascontiguousarray(head[:, 2:10]).view(">u8").reshape(-1).astype(np.uint64)
            counter = np.ascontiguousarray(head[:, 10:14]).view(">u4").reshape(-1).astype(np.int64)
        else:
            version = ftype = _empty(np.uint8)
            device = _empty(np.uint64)
            counter = _empty(np.int64)
        bad_version = version != WIRE_VERSION
        uplink = _UPLINK_LUT[ftype]
        good = ~bad_version & uplink
        if not good.all():
            for j in np.flatnonzero(~good).tolist():
                dev_j = int(device[j])
                if bad_version[j]:
                    reject(dev_j, RejectReason.MALFORMED, f"wire version {int(version[j])}")
                elif _DOWNLINK_LUT[ftype[j]]:
                    reject(dev_j, RejectReason.WRONG_DIRECTION, f"type {int(ftype[j]):#04x}")
                else:
                    reject(dev_j, RejectReason.MALFORMED, f"unknown type {int(ftype[j]):#04x}")
            idx, ftype, device, counter = idx[good], ftype[good], device[good], counter[good]

        # 2. registry
        meter_key = self.registry.lookup(device)
        known = meter_key >= 0
        if not known.all():
            for dev_j in device[~known].tolist():
                reject(dev_j, RejectReason.UNKNOWN_METER, "device id not registered")
            idx, ftype, device, counter, meter_key = (
                idx[known],
                ftype[known],
                device[known],
                counter[known],
                meter_key[known],
            )

        # 3. authenticate and decrypt: the one loop per frame
        ciphers = self.keys.aeads(device.tolist(), Direction.UP)
        h = HEADER_BYTES
        plaintexts: list[bytes] = []
        failed: list[int] = []
        append = plaintexts.append
        for j, (frame, cipher) in enumerate(
            zip([data[i] for i in idx.tolist()], ciphers, strict=True)
        ):
            try:
                append(cipher.decrypt(frame[2:h], frame[h:], frame[:h]))
            except InvalidTag:
                failed.append(j)
        if failed:
            for j in failed:
                reject(int(device[j]), RejectReason.AUTH_FAILED, "tag did not verify")
            authentic = np.ones(len(idx), dtype=bool)
            authentic[failed] = False
            idx, ftype, device, counter, meter_key = (
                idx[authentic],
                ftype[authentic],
                device[authentic],
                counter[authentic],
                meter_key[authentic],
            )

        # 4. replay window, authentic frames only
        fresh = np.asarray(self.replay.admit(meter_key, counter), dtype=bool)
        if not fresh.all():
            for j in np.flatnonzero(~fresh).tolist():
                reject(int(device[j]), RejectReason.REPLAYED, f"counter {int(counter[j])}")
            plaintexts = [plaintexts[j] for j in np.flatnonzero(fresh).tolist()]
            idx, ftype, device, counter, meter_key = (
                idx[fresh],
                ftype[fresh],
                device[fresh],
                counter[fresh],
                meter_key[fresh],
            )

        # 5. plaintexts: interval bodies by layout, the rest one by one
        accepted = np.ones(len(plaintexts), dtype=bool)
        messages: list[tuple[int, UplinkMessageBody]] = []
        carries_intervals = _INTERVAL_LUT[ftype]
        parts = _Parts()

        def refuse(rows: Iterable[int], why: str) -> None:
            for j in rows:
                accepted[j] = False
                reject(int(device[j]), RejectReason.BAD_PAYLOAD, why)

        if carries_intervals.all():
            interval_rows = np.arange(len(plaintexts))
        else:
            interval_rows = np.flatnonzero(carries_intervals)
            for j in np.flatnonzero(~carries_intervals).tolist():
                try:
                    body = _unpack_body(int(ftype[j]), plaintexts[j])
                except _BadPayload as exc:
                    refuse((j,), str(exc))
                    continue
                assert isinstance(body, PollResponse | CommandAck | MeterEvent)
                messages.append((int(meter_key[j]), body))
        if len(interval_rows):
            self._decode_intervals(
                interval_rows, plaintexts, ftype, meter_key, accepted, parts, refuse
            )

        iv, rg = parts.iv, parts.rg
        decoded = DecodedFrames(
            intervals=IntervalColumns(
                _cat(iv[0], np.int32),
                _cat(iv[1], np.uint8),
                _cat(iv[2], np.uint8),
                _cat(iv[3], np.int64),
                _cat(iv[4], np.int32),
                _cat(iv[5], np.uint8),
            ),
            registers=RegisterColumns(
                _cat(rg[0], np.int32),
                _cat(rg[1], np.uint8),
                _cat(rg[2], np.int64),
                _cat(rg[3], np.int32),
                _cat(rg[4], np.uint8),
            ),
            frames=FrameColumns(
                meter_key[accepted],
                ftype[accepted].astype(np.uint8),
                counter[accepted],
                idx[accepted].astype(np.int64),
            ),
            messages=messages,
            rejected=rejected,
            rejections=details,
            n_input=n,
        )
        if rejected:
            self.rejection_log.report(rejected, details)
        return decoded

    def _decode_intervals(
        self,
        rows: npt.NDArray[np.intp],
        plaintexts: list[bytes],
        ftype: npt.NDArray[np.uint8],
        meter_key: npt.NDArray[np.int32],
        accepted: npt.NDArray[np.bool_],
        parts: _Parts,
        refuse: Callable[[Iterable[int], str], None],
    ) -> None:
        """Group interval bodies by (type, length, directory) with numpy, then parse each group
        with one ``np.frombuffer``."""
        pts = plaintexts if len(rows) == len(plaintexts) else [plaintexts[j] for j in rows]
        size = np.fromiter(map(len, pts), dtype=np.int64, count=len(pts))
        short = size < _BODY_HEAD.size
        if short.any():
            refuse(rows[short].tolist(), "body shorter than 2 bytes")
            keep = np.flatnonzero(~short)
            rows, size = rows[keep], size[keep]
            pts = [pts[k] for k in keep.tolist()]
            if not len(rows):
                return
        buf = np.frombuffer(b"".join(pts), dtype=np.uint8)
        starts = np.cumsum(size) - size
        dir_size = (
            _BODY_HEAD.size
            + _BLOCK_DIR.size * buf[starts].astype(np.int64)
            + _REG_DIR.size * buf[starts + 1].astype(np.int64)
        )
        truncated = size < dir_size
        if truncated.any():
            refuse(rows[truncated].tolist(), "body shorter than its directory")
        # one key per (type, length, directory size); directories are compared below
        shape_key = (ftype[rows].astype(np.int64) << 40) | (size << 20) | dir_size
        shape_key[truncated] = -1
        keys_u, inverse = np.unique(shape_key, return_inverse=True)
        for g, key in enumerate(keys_u.tolist()):
            if key < 0:
                continue
            members = np.flatnonzero(inverse == g)
            frame_type = key >> 40
            length = (key >> 20) & 0xFFFFF
            d_size = key & 0xFFFFF
            mat = np.frombuffer(b"".join([pts[k] for k in members.tolist()]), dtype=np.uint8)
            mat = mat.reshape(len(members), length)
            directories = np.ascontiguousarray(mat[:, :d_size])
            if len(members) > 1 and not (directories == directories[0]).all():
                dirs_u, dir_inverse = np.unique(
                    directories.view(f"V{d_size}").reshape(-1), return_inverse=True
                )
                for d in range(len(dirs_u)):
                    sub = np.flatnonzero(dir_inverse == d)
                    self._decode_layout(
                        frame_type, mat[sub], rows[members[sub]], meter_key, parts, refuse
                    )
            else:
                self._decode_layout(frame_type, mat, rows[members], meter_key, parts, refuse)

    def _decode_layout(
        self,
        frame_type: int,
        mat: npt.NDArray[np.uint8],
        rows: npt.NDArray[np.intp],
        meter_key: npt.NDArray[np.int32],
        parts: _Parts,
        refuse: Callable[[Iterable[int], str], None],
    ) -> None:
        """Frames of one type and one exact directory: ``mat`` is (frames × body bytes)."""
        directory = mat[0, : _directory_size(int(mat[0, 0]), int(mat[0, 1]))].tobytes()
        layout = self._layout(directory)
        if layout.error is not None:
            refuse(rows.tolist(), layout.error)
            return
        if frame_type in _FIVE_MIN_TYPES and not layout.five_min_only:
            refuse(rows.tolist(), f"{FrameType(frame_type).name} carries values other than 5-min")
            return
        if layout.size != mat.shape[1]:
            refuse(rows.tolist(), "body length does not match its directory")
            return
        rec = np.ascontiguousarray(mat).view(layout.dtype).reshape(-1)
        if layout.energy_fields:
            too_big = np.zeros(len(rows), dtype=bool)
            for name in layout.energy_fields:
                too_big |= (rec[name] > INT32_MAX).any(axis=1)
            if too_big.any():
                refuse(rows[too_big].tolist(), "value above 2**31 - 1")
                rec, rows = rec[~too_big], rows[~too_big]
        g = len(rows)
        if not g:
            return
        keys = meter_key[rows]
        ft = np.uint8(frame_type)
        iv, rg = parts.iv, parts.rg
        for j, (res, ch, first, count) in enumerate(layout.blocks):
            if not count:
                continue
            ends = (first + res * np.arange(count, dtype=np.int64)) * US_PER_MINUTE
            n_values = g * count
            iv[0].append(np.repeat(keys, count))
            iv[1].append(np.full(n_values, ch, dtype=np.uint8))
            iv[2].append(np.full(n_values, res, dtype=np.uint8))
            iv[3].append(np.tile(ends, g))
            iv[4].append(rec[f"b{j}"].reshape(-1).astype(np.int32))
            iv[5].append(np.full(n_values, ft, dtype=np.uint8))
        if layout.registers:
            nr = len(layout.registers)
            channels = np.array([ch for ch, _ in layout.registers], dtype=np.uint8)
            read_at = np.array([at for _, at in layout.registers], dtype=np.int64) * US_PER_MINUTE
            rg[0].append(np.repeat(keys, nr))
            rg[1].append(np.tile(channels, g))
            rg[2].append(np.tile(read_at, g))
            rg[3].append(rec["r"].reshape(-1).astype(np.int32))
            rg[4].append(np.full(g * nr, ft, dtype=np.uint8))


# ---------------------------------------------------------------------------------------------
# collector envelopes


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a collector sends (or receives) in one transport message: many meters' frames."""

    collector: str
    sent_at_us: int  # collector clock, epoch µs
    sequence: int  # u32, per collector and direction
    frames: list[bytes]


def encode_envelope(
    collector: str, sent_at_us: int, sequence: int, frames: Sequence[bytes | memoryview]
) -> bytes:
    name = collector.encode("utf-8")
    if len(name) > 0xFF:
        raise FrameError(f"collector id of {len(name)} bytes, at most 255")
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
    sent_at_us, sequence, n_frames = _ENV_TAIL.unpack_from(buf, pos)
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
