"""A-route encoding: values and bodies to authenticated frames.

:func:`encode_interval_frames` is the meter side of the uplink, vectorized over meters (one numpy
build of all plaintexts, then one AES-GCM call per frame); :func:`group_by_meters` prepares its
input. :func:`encode_frame` builds one frame with a fixed body: polls and commands from the
head-end, poll responses, acknowledgements and events from a meter. No I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from kenshin.aroute.codec.layout import (
    BLOCK_DIR,
    BODY_HEAD,
    FIVE_MIN_TYPES,
    HEADER,
    HEADER_BYTES,
    INT32_MAX,
    MAX_BLOCKS,
    MAX_COUNT,
    MAX_COUNTER,
    MAX_EPOCH_MINUTES,
    MAX_FRAME_BYTES,
    REG_DIR,
    TAG_BYTES,
    VALID_RESOLUTIONS,
    VOLTAGE_RESOLUTIONS,
    Body,
    pack_body,
)
from kenshin.aroute.frames import WIRE_VERSION, Direction, FrameType
from kenshin.aroute.keys import KeyRing
from kenshin.aroute.messages import IntervalBlock, RegisterBlock
from kenshin.core.channels import Channel
from kenshin.core.timeslots import US_PER_MINUTE, Resolution
from kenshin.errors import FrameError

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
    plaintext = pack_body(frame_type, body)
    aead = keys.aead(int(device_id), frame_type.direction)
    return header + aead.encrypt(header[2:], plaintext, header)


# ---------------------------------------------------------------------------------------------
# interval bodies


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
    if res not in VALID_RESOLUTIONS:
        raise FrameError(f"resolution {res} min is not 1/5/15/30")
    if ch == Channel.VOLTAGE and res not in VOLTAGE_RESOLUTIONS:
        raise FrameError(f"voltage at {res}-min resolution: voltage values are 5-min only")
    if frame_type in FIVE_MIN_TYPES and res != Resolution.MIN5:
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
    return BLOCK_DIR.pack(res, ch, first, k), payload


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
    directory = [BODY_HEAD.pack(len(blocks), len(registers))]
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
        directory.append(REG_DIR.pack(ch, minute))
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
