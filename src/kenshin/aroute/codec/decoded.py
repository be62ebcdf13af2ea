"""What decoding uplink frames yields: columns of accepted values, and the rejections.

:class:`DecodedFrames` holds the accepted interval values, register reads, frames and messages
of a batch (long numpy columns, what :func:`kenshin.hes.ingest.decoded_to_batch` turns into
Arrow) and why the other frames were refused; :class:`RejectionLog` logs those refusals,
aggregated and rate-limited.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from kenshin.aroute.codec.layout import UplinkMessageBody
from kenshin.aroute.frames import RejectReason

log = logging.getLogger("kenshin.aroute")


def empty_column(dtype: type) -> npt.NDArray[Any]:
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
            return np.concatenate(arrays) if arrays else empty_column(dtype)

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
                else empty_column(np.int64),
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
