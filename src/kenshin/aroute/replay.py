"""Replay protection: an anti-replay sliding window per meter, as in IPsec (RFC 4303 §3.4.3).

Every frame carries a counter that its meter increases strictly for each frame it sends in one
direction. The head-end keeps, per meter, the highest counter it has accepted (``last``) and a
64-bit ``bitmap`` of which of the 64 counters ``last, last-1, …, last-63`` it has accepted (bit
``i`` ↔ counter ``last - i``; bit 0 is ``last`` itself). A frame is admitted when its counter

* is above ``last`` (the window slides up, the bitmap shifts), or
* lies in the window (``last - 63 ≤ counter ≤ last``) and its bit is not set yet;

anything older than the window, or already seen, is refused. Frames that arrive a little out of
order (a collector re-sends, two collectors hear the same meter) are admitted exactly once.
``last = -1`` means nothing has been seen from the meter yet.

A frame older than the window is not necessarily a replay: when a head-end worker is down, the
broker keeps its share while another worker takes the meters' newer frames, and a real-time
meter sends ~290 a day. ``admit(..., late=out)`` marks those frames, refused only for their age,
so the head-end can store their values where the store holds none yet (issue 12).

The check runs only on frames that authenticated: an attacker cannot advance a meter's window
with forged counters.

The state is two flat arrays indexed by whatever the caller likes (meter key, or a row of a
fetched subset), so a store can persist it: :class:`MemoryReplayGuard` keeps it in memory, and a
database guard fetches ``(last, bitmap)`` for the meters of a batch, runs :func:`admit_batch`
and writes back the changed rows. ``bitmap`` is a uint64; a store without unsigned 64-bit
integers can keep ``bitmap.view(np.int64)``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from kenshin.core.batches import CounterState
from kenshin.errors import InvalidSetting, UnknownMeter

WINDOW = 64
NOTHING_SEEN = -1
_MASK64 = (1 << 64) - 1
_SCALAR_BELOW = 16  # rounds smaller than this run as a plain loop (cheaper than numpy calls)

BoolArray = npt.NDArray[np.bool_]
Int64Array = npt.NDArray[np.int64]
UInt64Array = npt.NDArray[np.uint64]


class ReplayGuard(Protocol):
    """Admits frames, and makes admissions final only together with the values they let in.

    A head-end worker (``kenshin.hes.worker``) admits a batch, stores its values with
    :meth:`staged` in the same transaction, then calls :meth:`stored`; if it fails before the
    values are stored it calls :meth:`abandon`. So a frame redelivered after a crash is admitted
    again exactly when its value was not stored.
    """

    def admit(
        self,
        meter_keys: npt.NDArray[np.int32],
        counters: Int64Array,
        *,
        late: BoolArray | None = None,
    ) -> BoolArray:
        """Admit each frame (in arrival order) at most once; record the admitted ones. ``late``
        (an output, like numpy's ``out``): set True for frames refused only because they are
        older than the window."""
        ...

    def staged(self) -> CounterState | None:
        """Windows changed since the last call, for the store to commit with the values; None
        when the guard keeps its state elsewhere."""
        ...

    def stored(self) -> None:
        """The values of what was admitted are stored: admissions are final."""
        ...

    def abandon(self) -> None:
        """Nothing was stored: admissions not final are forgotten where the guard can."""
        ...


def window_admit(
    last: Int64Array, bitmap: UInt64Array, counters: Int64Array
) -> tuple[BoolArray, Int64Array, UInt64Array]:
    """One frame per meter: ``(admitted, new_last, new_bitmap)``; the inputs are not modified.

    All three arrays are aligned (element ``i`` is one meter and its one frame); the meters must
    be distinct, else use :func:`admit_batch`. Pure and vectorized: a store can call it on the
    rows it fetched.
    """
    last = np.asarray(last, dtype=np.int64)
    bitmap = np.asarray(bitmap, dtype=np.uint64)
    counters = np.asarray(counters, dtype=np.int64)
    ahead = counters > last
    offset = last - counters  # ≥ 0 when not ahead
    in_window = ~ahead & (offset < WINDOW) & (counters >= 0)
    off_c = np.clip(offset, 0, WINDOW - 1).astype(np.uint64)
    # ``last`` itself always counts as seen, even if a store kept ``last`` but lost its bit
    seen = ((bitmap >> off_c) & np.uint64(1)).astype(bool) | (offset == 0)
    late_ok = in_window & ~seen
    admitted = ahead | late_ok

    shift = np.clip(counters - last, 0, WINDOW).astype(np.uint64)
    shifted = np.where(
        shift >= WINDOW, np.uint64(0), bitmap << np.minimum(shift, np.uint64(WINDOW - 1))
    )
    new_bitmap = np.where(ahead, shifted | np.uint64(1), bitmap)
    new_bitmap = np.where(late_ok, bitmap | (np.uint64(1) << off_c), new_bitmap)
    new_last = np.where(ahead, counters, last)
    return admitted, new_last, new_bitmap


def _below(last: Int64Array, counters: Int64Array) -> BoolArray:
    """Frames older than their meter's window (refused for their age alone)."""
    return (counters >= 0) & (counters <= last - WINDOW)


def _admit_scalar(
    last: Int64Array, bitmap: UInt64Array, slots: list[int], counters: list[int]
) -> tuple[list[bool], list[bool]]:
    """The same rule frame by frame, in order (for the small tail rounds of a batch); also
    which frames were below the window."""
    out = []
    below = []
    for slot, counter in zip(slots, counters, strict=True):
        lst = int(last[slot])
        bits = int(bitmap[slot])
        below.append(0 <= counter <= lst - WINDOW)
        if counter > lst:
            shift = counter - lst
            bits = ((bits << shift) & _MASK64 if shift < WINDOW else 0) | 1
            last[slot] = counter
            bitmap[slot] = bits
            out.append(True)
        elif counter >= 0 and 0 < lst - counter < WINDOW and not (bits >> (lst - counter)) & 1:
            bitmap[slot] = bits | (1 << (lst - counter))
            out.append(True)
        else:
            out.append(False)
    return out, below


def admit_batch(
    last: Int64Array,
    bitmap: UInt64Array,
    slots: npt.ArrayLike,
    counters: npt.ArrayLike,
    late: BoolArray | None = None,
) -> BoolArray:
    """Admit frames of any meters, several per meter allowed, in arrival order.

    ``last`` and ``bitmap`` are state arrays, **updated in place**; ``slots[i]`` is the index in
    them of frame ``i``'s meter. Frames of one meter are judged in their order in the batch:
    the batch runs in rounds, each taking the next frame of every meter that has one, so an
    exact duplicate later in the batch is refused because the first copy set its bit.
    ``late`` (output, one per frame): True where a frame was older than its window.
    """
    slots_a = np.asarray(slots, dtype=np.int64).reshape(-1)
    counters_a = np.asarray(counters, dtype=np.int64).reshape(-1)
    if slots_a.shape != counters_a.shape:
        raise ValueError(f"{len(slots_a)} slots but {len(counters_a)} counters")
    n = len(slots_a)
    admitted = np.zeros(n, dtype=bool)
    if late is not None:
        if late.shape != (n,):
            raise ValueError(f"late has shape {late.shape}, expected ({n},)")
        late[:] = False
    if n == 0:
        return admitted
    by_slot = np.argsort(slots_a, kind="stable")
    sorted_slots = slots_a[by_slot]
    starts = np.flatnonzero(np.r_[True, sorted_slots[1:] != sorted_slots[:-1]])
    if len(starts) == n:  # one frame per meter: a single round
        if late is not None:
            late[:] = _below(last[slots_a], counters_a)
        ok, new_last, new_bitmap = window_admit(last[slots_a], bitmap[slots_a], counters_a)
        last[slots_a] = new_last
        bitmap[slots_a] = new_bitmap
        return ok
    run_lengths = np.diff(np.r_[starts, n])
    rank_sorted = np.arange(n) - np.repeat(starts, run_lengths)
    rank = np.empty(n, dtype=np.int64)
    rank[by_slot] = rank_sorted
    by_rank = np.argsort(rank, kind="stable")  # round r = frames of rank r, in arrival order
    bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max()) + 2))
    for r in range(len(bounds) - 1):
        lo, hi = int(bounds[r]), int(bounds[r + 1])
        if hi - lo < _SCALAR_BELOW:
            rest = by_rank[lo:]
            ok_rest, below_rest = _admit_scalar(
                last, bitmap, slots_a[rest].tolist(), counters_a[rest].tolist()
            )
            admitted[rest] = ok_rest
            if late is not None:
                late[rest] = below_rest
            break
        idx = by_rank[lo:hi]
        s = slots_a[idx]
        if late is not None:
            late[idx] = _below(last[s], counters_a[idx])
        ok, new_last, new_bitmap = window_admit(last[s], bitmap[s], counters_a[idx])
        last[s] = new_last
        bitmap[s] = new_bitmap
        admitted[idx] = ok
    return admitted


class MemoryReplayGuard:
    """Replay windows of ``n_meters`` meters (keys 0 … n-1) in two arrays (16 bytes a meter)."""

    def __init__(self, n_meters: int) -> None:
        if n_meters < 0:
            raise InvalidSetting(f"number of meters must be ≥ 0, got {n_meters}")
        self._last = np.full(n_meters, NOTHING_SEEN, dtype=np.int64)
        self._bitmap = np.zeros(n_meters, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self._last)

    # one process holds the state: nothing to commit elsewhere (see ReplayGuard)
    def staged(self) -> CounterState | None:
        return None

    def stored(self) -> None:
        pass

    def abandon(self) -> None:
        pass

    def admit(
        self,
        meter_keys: npt.NDArray[np.int32],
        counters: Int64Array,
        *,
        late: BoolArray | None = None,
    ) -> BoolArray:
        keys = np.asarray(meter_keys, dtype=np.int64).reshape(-1)
        if keys.size and (int(keys.min()) < 0 or int(keys.max()) >= len(self._last)):
            bad = keys[(keys < 0) | (keys >= len(self._last))][0]
            raise UnknownMeter(f"meter key {int(bad)} is outside this replay guard")
        return admit_batch(self._last, self._bitmap, keys, counters, late)

    def state(self) -> tuple[Int64Array, UInt64Array]:
        """Copies of ``(last, bitmap)``, indexed by meter key, for persisting."""
        return self._last.copy(), self._bitmap.copy()

    def load(self, last: npt.ArrayLike, bitmap: npt.ArrayLike) -> None:
        """Restore a persisted state (sizes may differ from ``n_meters``: the guard resizes)."""
        last_a = np.asarray(last, dtype=np.int64).reshape(-1)
        bitmap_a = np.asarray(bitmap).reshape(-1)
        if bitmap_a.dtype == np.int64:
            bitmap_a = bitmap_a.view(np.uint64)
        bitmap_a = bitmap_a.astype(np.uint64, copy=False)
        if last_a.shape != bitmap_a.shape:
            raise InvalidSetting(f"replay state: {len(last_a)} counters but {len(bitmap_a)} maps")
        if last_a.size and int(last_a.min()) < NOTHING_SEEN:
            raise InvalidSetting("replay state: a last counter is below -1")
        self._last = last_a.copy()
        self._bitmap = bitmap_a.copy()


class StagedReplayGuard(MemoryReplayGuard):
    """A memory guard whose changes are committed together with the values they let in.

    A head-end worker admits frames here, then stores the values and the changed windows in one
    transaction (:meth:`take_changes`), and only then acknowledges the transport message. Killed
    before that commit, it lost neither (the broker redelivers and the frames are admitted
    afresh); killed after it, the redelivered frames are recognised as already seen. Either way
    nothing is stored twice and nothing is lost.
    """

    def __init__(self, n_meters: int) -> None:
        super().__init__(n_meters)
        self._touched = np.zeros(n_meters, dtype=bool)

    def admit(
        self,
        meter_keys: npt.NDArray[np.int32],
        counters: Int64Array,
        *,
        late: BoolArray | None = None,
    ) -> BoolArray:
        admitted = super().admit(meter_keys, counters, late=late)
        self._touched[np.asarray(meter_keys, dtype=np.int64)[admitted]] = True
        return admitted

    def load(self, last: npt.ArrayLike, bitmap: npt.ArrayLike) -> None:
        super().load(last, bitmap)
        self._touched = np.zeros(len(self._last), dtype=bool)

    def staged(self) -> CounterState:
        """The changed windows; a worker that abandons a batch is discarded and a new one loads
        what the store committed (``kenshin.hes.worker``)."""
        return self.take_changes()

    def take_changes(self) -> tuple[Int64Array, Int64Array, UInt64Array]:
        """(meter keys, last, bitmap) of the windows changed since the last call."""
        keys = np.flatnonzero(self._touched).astype(np.int64)
        self._touched[keys] = False
        return keys, self._last[keys].copy(), self._bitmap[keys].copy()
