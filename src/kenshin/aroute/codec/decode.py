"""A-route decoding: uplink frames to columns (head-end), downlink frames to bodies (meter).

:class:`FrameDecoder` authenticates uplink frames frame by frame and parses the plaintexts of all
frames with the same block layout with one ``np.frombuffer``; between the two steps its caller
asks its replay guard which authentic frames are fresh. :func:`open_downlink` opens one poll or
command on the meter side, and leaves the freshness of its counter to the meter. No I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag

from kenshin.aroute.codec.decoded import (
    DecodedFrames,
    FrameColumns,
    IntervalColumns,
    RegisterColumns,
    Rejection,
    RejectionLog,
    empty_column,
)
from kenshin.aroute.codec.layout import (
    BLOCK_DIR,
    BODY_HEAD,
    DOWNLINK_TYPES,
    FIVE_MIN_TYPES,
    HEADER,
    HEADER_BYTES,
    INT32_MAX,
    INTERVAL_TYPE_CODES,
    MAX_FRAME_BYTES,
    MIN_FRAME_BYTES,
    REG_DIR,
    UPLINK_TYPES,
    BadPayload,
    Layout,
    UplinkMessageBody,
    directory_size,
    parse_layout,
    unpack_body,
)
from kenshin.aroute.frames import (
    WIRE_VERSION,
    Command,
    CommandAck,
    Direction,
    FrameType,
    MeterEvent,
    PollRequest,
    PollResponse,
    RejectReason,
)
from kenshin.aroute.keys import KeyRing
from kenshin.aroute.registry import MeterRegistry
from kenshin.core.timeslots import US_PER_MINUTE
from kenshin.errors import FrameError


class DownlinkRejected(FrameError):
    """A downlink frame the meter refuses; ``reason`` says why."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.label}: {detail}")
        self.reason = reason
        self.detail = detail


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
    if frame_type in UPLINK_TYPES:
        raise DownlinkRejected(RejectReason.WRONG_DIRECTION, f"uplink frame type {frame_type:#04x}")
    if frame_type not in DOWNLINK_TYPES:
        raise DownlinkRejected(RejectReason.MALFORMED, f"unknown frame type {frame_type:#04x}")
    try:
        plaintext = keys.aead(device_id, Direction.DOWN).decrypt(
            data[2:HEADER_BYTES], data[HEADER_BYTES:], data[:HEADER_BYTES]
        )
    except InvalidTag:
        raise DownlinkRejected(RejectReason.AUTH_FAILED, "tag did not verify") from None
    try:
        body = unpack_body(frame_type, plaintext)
    except BadPayload as exc:
        raise DownlinkRejected(RejectReason.BAD_PAYLOAD, str(exc)) from None
    assert isinstance(body, PollRequest | Command)
    return device_id, counter, body


# ---------------------------------------------------------------------------------------------
# uplink (head-end)


def _lut(codes: Iterable[int]) -> npt.NDArray[np.bool_]:
    table = np.zeros(256, dtype=bool)
    table[list(codes)] = True
    return table


_UPLINK_LUT = _lut(UPLINK_TYPES)
_DOWNLINK_LUT = _lut(DOWNLINK_TYPES)
_INTERVAL_LUT = _lut(INTERVAL_TYPE_CODES)


@dataclass(slots=True)
class _Parts:
    """Accumulates columns while decoding one batch."""

    iv: list[list[npt.NDArray[Any]]] = field(default_factory=lambda: [[] for _ in range(6)])
    rg: list[list[npt.NDArray[Any]]] = field(default_factory=lambda: [[] for _ in range(5)])


def _cat(parts: list[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
    if not parts:
        return empty_column(dtype)
    if len(parts) == 1:
        return parts[0].astype(dtype, copy=False)
    return np.concatenate(parts).astype(dtype, copy=False)


_LAYOUT_CACHE_MAX = 4096


class _Refusals:
    """Counts refused frames by reason and keeps the first ``max_details`` of them described."""

    __slots__ = ("details", "max_details", "rejected")

    def __init__(
        self,
        max_details: int,
        rejected: Counter[RejectReason] | None = None,
        details: list[Rejection] | None = None,
    ) -> None:
        self.max_details = max_details
        self.rejected: Counter[RejectReason] = rejected if rejected is not None else Counter()
        self.details: list[Rejection] = details if details is not None else []

    def __call__(self, device_id: int | None, reason: RejectReason, detail: str) -> None:
        self.rejected[reason] += 1
        if len(self.details) < self.max_details:
            self.details.append(Rejection(device_id, reason, detail))


def _subset(keep: npt.NDArray[np.bool_], *columns: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
    return [column[keep] for column in columns]


@dataclass(frozen=True, slots=True)
class AuthenticFrames:
    """The frames of a batch whose tag verified, in input order, not yet checked for replay.

    Hand ``meter_key`` and ``counter`` to the replay guard, and its answer with this object to
    :meth:`FrameDecoder.parse`. ``rejected`` and ``rejections`` so far hold the frames refused
    before that (MALFORMED, WRONG_DIRECTION, UNKNOWN_METER, AUTH_FAILED).
    """

    meter_key: npt.NDArray[np.int32]
    counter: npt.NDArray[np.int64]
    frame_type: npt.NDArray[np.uint8]
    device_id: npt.NDArray[np.uint64]
    index: npt.NDArray[np.intp]  # position of the frame in the batch
    plaintexts: list[bytes]
    rejected: Counter[RejectReason]
    rejections: list[Rejection]
    n_input: int

    def __len__(self) -> int:
        return len(self.meter_key)

    def subset(self, keep: npt.NDArray[np.bool_], *, refusals: bool = True) -> AuthenticFrames:
        """The frames where ``keep``; with ``refusals=False`` without the earlier refusals
        (a second parse of some frames then counts each refusal once)."""
        keys, counter, ftype, device, index = _subset(
            keep, self.meter_key, self.counter, self.frame_type, self.device_id, self.index
        )
        return AuthenticFrames(
            keys,
            counter,
            ftype,
            device,
            index,
            [p for p, k in zip(self.plaintexts, keep.tolist(), strict=True) if k],
            self.rejected.copy() if refusals else Counter(),
            list(self.rejections) if refusals else [],
            self.n_input,
        )


class FrameDecoder:
    """Head-end side: authenticates and parses uplink frames in batches, and does no I/O.

    Two steps, with the replay check between them left to the caller (its guard may keep the
    windows in a database)::

        authentic = decoder.authenticate(frames)
        admitted = replay_guard.admit(authentic.meter_key, authentic.counter)
        decoded = decoder.parse(authentic, admitted)

    Order of checks per frame: header (MALFORMED, WRONG_DIRECTION), registry (UNKNOWN_METER),
    AES-GCM tag (AUTH_FAILED), the replay guard on authentic frames only (REPLAYED: what it did
    not admit), plaintext (BAD_PAYLOAD). Rejected frames are counted, reported through
    :class:`RejectionLog` (once per batch, by :meth:`parse`) and their content is dropped.
    Random input never raises.
    """

    def __init__(
        self,
        registry: MeterRegistry,
        keys: KeyRing,
        *,
        max_details: int = 100,
        rejection_log: RejectionLog | None = None,
    ) -> None:
        self.registry = registry
        self.keys = keys
        self.max_details = max_details
        self.rejection_log = rejection_log if rejection_log is not None else RejectionLog()
        self._layouts: dict[bytes, Layout] = {}

    # -- helpers

    def _layout(self, directory: bytes) -> Layout:
        layout = self._layouts.get(directory)
        if layout is None:
            if len(self._layouts) >= _LAYOUT_CACHE_MAX:
                self._layouts.clear()
            layout = parse_layout(directory)
            self._layouts[directory] = layout
        return layout

    # -- the batch

    def authenticate(self, frames: Sequence[bytes | bytearray | memoryview]) -> AuthenticFrames:
        """Step one: headers, registry and AES-GCM tags; the frames that passed, decrypted."""
        n = len(frames)
        data = [f if type(f) is bytes else bytes(f) for f in frames]
        reject = _Refusals(self.max_details)

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
            version = ftype = empty_column(np.uint8)
            device = empty_column(np.uint64)
            counter = empty_column(np.int64)
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
            idx, ftype, device, counter = _subset(good, idx, ftype, device, counter)

        # 2. registry
        meter_key = self.registry.lookup(device)
        known = meter_key >= 0
        if not known.all():
            for dev_j in device[~known].tolist():
                reject(dev_j, RejectReason.UNKNOWN_METER, "device id not registered")
            idx, ftype, device, counter, meter_key = _subset(
                known, idx, ftype, device, counter, meter_key
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
            idx, ftype, device, counter, meter_key = _subset(
                authentic, idx, ftype, device, counter, meter_key
            )
        return AuthenticFrames(
            meter_key, counter, ftype, device, idx, plaintexts, reject.rejected, reject.details, n
        )

    def parse(self, authentic: AuthenticFrames, admitted: npt.ArrayLike) -> DecodedFrames:
        """Step two: refuse the authentic frames not ``admitted`` by the replay guard (REPLAYED),
        parse the plaintexts of the others, and log the batch's rejections.

        ``admitted[i]`` is the guard's answer for frame ``i`` of ``authentic``. An admitted frame
        that fails as BAD_PAYLOAD has spent its counter all the same.
        """
        fresh = np.asarray(admitted, dtype=bool).reshape(-1)
        if len(fresh) != len(authentic):
            raise ValueError(f"{len(fresh)} admissions for {len(authentic)} authentic frames")
        reject = _Refusals(self.max_details, authentic.rejected.copy(), list(authentic.rejections))
        idx, ftype, device = authentic.index, authentic.frame_type, authentic.device_id
        counter, meter_key = authentic.counter, authentic.meter_key
        plaintexts = authentic.plaintexts

        # 4. what the replay guard did not admit (authentic frames only)
        if not fresh.all():
            for j in np.flatnonzero(~fresh).tolist():
                reject(int(device[j]), RejectReason.REPLAYED, f"counter {int(counter[j])}")
            plaintexts = [plaintexts[j] for j in np.flatnonzero(fresh).tolist()]
            idx, ftype, device, counter, meter_key = _subset(
                fresh, idx, ftype, device, counter, meter_key
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
                    body = unpack_body(int(ftype[j]), plaintexts[j])
                except BadPayload as exc:
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
            rejected=reject.rejected,
            rejections=reject.details,
            n_input=authentic.n_input,
        )
        if reject.rejected:
            self.rejection_log.report(reject.rejected, reject.details)
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
        short = size < BODY_HEAD.size
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
            BODY_HEAD.size
            + BLOCK_DIR.size * buf[starts].astype(np.int64)
            + REG_DIR.size * buf[starts + 1].astype(np.int64)
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
        directory = mat[0, : directory_size(int(mat[0, 0]), int(mat[0, 1]))].tobytes()
        layout = self._layout(directory)
        if layout.error is not None:
            refuse(rows.tolist(), layout.error)
            return
        if frame_type in FIVE_MIN_TYPES and not layout.five_min_only:
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
