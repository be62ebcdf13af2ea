"""VEE validation: the structure step (long rows → dense [meter, slot] arrays) and the rules.

Every function works on whole [N meters, S slots] arrays at once (STYLE 8: no loop over meters).
Registers sit at slot boundaries: ``registers[:, j]`` is the read at the start of slot ``j``, so
slot ``j`` spans reads ``j`` and ``j + 1`` and a window of S slots has S + 1 reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kenshin.core.quality import Rule
from kenshin.core.timeslots import Resolution

DENSIFY_BLOCK = 1 << 20  # rows per block

BoolArray = npt.NDArray[np.bool_]
Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
FlagArray = npt.NDArray[np.uint16]


@dataclass(frozen=True, slots=True)
class Densified:
    """Dense values of one channel and resolution, with what the structure step found.

    Counts are of rows except ``expected``/``received`` (cells) and the duplicate counts (cells
    that had more than one row).
    """

    values: npt.NDArray[np.signedinteger[Any]]  # [N, S] register units; 0 if not received
    present: BoolArray  # [N, S]
    flags: FlagArray  # [N, S] Rule.STRUCTURE_ALIGNMENT / DUPLICATE_EQUAL / DUPLICATE_CONFLICT
    rows: int
    expected: int
    received: int
    misaligned: int  # interval end off the slot grid: dropped
    out_of_window: int  # on the grid but outside the window or the meter range: dropped
    duplicate_equal: int
    duplicate_conflict: int
    row_cell: npt.NDArray[np.integer] | None = None  # [rows] cell of each row, -1: dropped


def densify(
    meter_index: npt.ArrayLike,
    interval_end_us: npt.ArrayLike,
    value: npt.ArrayLike,
    tx_time_us: npt.ArrayLike,
    *,
    window_start_us: int,
    resolution: Resolution,
    n_meters: int,
    n_slots: int | None = None,
    block_rows: int = DENSIFY_BLOCK,
    keep_row_cells: bool = False,
) -> Densified:
    """Long reading rows → dense [n_meters, n_slots] arrays (ARCHITECTURE "Storage").

    ``keep_row_cells``: also return the cell of every input row, so labels can be gathered back
    onto the rows (:func:`kenshin.mdms.sweep.validate_day_batch`).

    A row belongs to the slot ending at its ``interval_end`` (slot ``s`` ends at
    ``window_start + (s + 1) × resolution``). Rows off the slot grid are dropped and flag the slot
    they fall in. Of several rows for one cell the latest ``tx_time`` wins (input order breaks
    ties), as in the versioned store; the cell is flagged DUPLICATE_EQUAL or DUPLICATE_CONFLICT.
    """
    step = resolution.microseconds
    n_slots = resolution.slots_per_day if n_slots is None else n_slots
    meters, ends = np.asarray(meter_index), np.asarray(interval_end_us)
    vals, tx = np.asarray(value), np.asarray(tx_time_us)
    n_cells = n_meters * n_slots
    # the last row (input order) of each cell; int32 halves the memory first touched (rows and
    # cells of one window stay far below 2**31)
    index_type: type[np.signedinteger[Any]] = (
        np.int32 if max(n_cells, np.size(interval_end_us)) < 2**31 - 1 else np.int64
    )
    owner: npt.NDArray[np.signedinteger[Any]] = np.full(n_cells, -1, dtype=index_type)
    # values as they come when they are 32-bit (register counts per interval are): half the
    # fresh memory of int64; run_vee widens each block as it works on it
    value_type: type[np.signedinteger[Any]] = (
        np.int32 if np.asarray(value).dtype == np.int32 else np.int64
    )
    dense: npt.NDArray[np.signedinteger[Any]] = np.zeros(n_cells, dtype=value_type)
    flags = np.zeros(n_cells, dtype=np.uint16)

    def cells(rows: slice | Int64Array) -> tuple[Int64Array, BoolArray, BoolArray]:
        """(cell, on the grid, inside the window and meter range) of some rows."""
        m = np.asarray(meters[rows], dtype=np.int64)
        offset = np.asarray(ends[rows], dtype=np.int64) - window_start_us
        whole, rest = np.divmod(offset, step)
        aligned = rest == 0
        slot = whole - aligned  # the slot that ends at or contains the instant
        inside = (slot >= 0) & (slot < n_slots) & (m >= 0) & (m < n_meters)
        return m * n_slots + slot, aligned, inside

    # blocks of rows: whole-array temporaries of 50 M rows cost more than the arithmetic
    n_misaligned = n_out = n_kept = 0
    block_rows = max(1, block_rows)
    row_cell: npt.NDArray[np.signedinteger[Any]] | None = (
        np.empty(ends.size, dtype=index_type) if keep_row_cells else None
    )
    for lo in range(0, ends.size, block_rows):
        hi = min(ends.size, lo + block_rows)
        key, aligned, inside = cells(slice(lo, hi))
        ok = aligned & inside
        if ok.all():  # the usual block: every row on the grid and in the window
            # with repeated cells the last row (input order) wins
            owner[key] = np.arange(lo, hi, dtype=owner.dtype)
            dense[key] = vals[lo:hi]
            if row_cell is not None:
                row_cell[lo:hi] = key
            n_kept += hi - lo
            continue
        flags[key[~aligned & inside]] |= np.uint16(Rule.STRUCTURE_ALIGNMENT)
        kept = np.flatnonzero(ok)
        owner[key[kept]] = kept + lo
        dense[key[kept]] = np.asarray(vals[lo:hi])[kept]
        if row_cell is not None:
            row_cell[lo:hi] = np.where(ok, key, -1)
        n_kept += kept.size
        n_misaligned += int((~aligned).sum())
        n_out += int((aligned & ~inside).sum())
    present = owner >= 0
    involved = []
    if int(present.sum()) != n_kept:  # some cell was set more than once: find its rows
        for lo in range(0, ends.size, block_rows):
            hi = min(ends.size, lo + block_rows)
            if row_cell is not None:
                key = row_cell[lo:hi].astype(np.int64)
                kept = np.flatnonzero(key >= 0)
            else:
                key, aligned, inside = cells(slice(lo, hi))
                kept = np.flatnonzero(aligned & inside)
            lost = kept[owner[key[kept]] != kept + lo]
            if lost.size:
                involved += [lost + lo, owner[key[lost]].astype(np.int64)]
    dup_rows = np.unique(np.concatenate(involved)) if involved else np.zeros(0, np.int64)
    n_equal = n_conflict = 0
    if dup_rows.size:
        # duplicates are rare: sort only them, by (cell, tx_time, arrival)
        k2 = cells(dup_rows)[0]
        v2 = np.asarray(vals[dup_rows], dtype=np.int64)
        order = np.lexsort((dup_rows, np.asarray(tx[dup_rows], dtype=np.int64), k2))
        k2, v2 = k2[order], v2[order]
        first = np.flatnonzero(np.r_[True, k2[1:] != k2[:-1]])
        last = np.r_[first[1:] - 1, k2.size - 1]
        group = k2[first]
        dense[group] = v2[last]
        equal = np.minimum.reduceat(v2, first) == np.maximum.reduceat(v2, first)
        flags[group[equal]] |= np.uint16(Rule.DUPLICATE_EQUAL)
        flags[group[~equal]] |= np.uint16(Rule.DUPLICATE_CONFLICT)
        n_equal, n_conflict = int(equal.sum()), int((~equal).sum())
    return Densified(
        values=dense.reshape(n_meters, n_slots),
        present=present.reshape(n_meters, n_slots),
        flags=flags.reshape(n_meters, n_slots),
        rows=int(ends.size),
        expected=n_cells,
        received=int(present.sum()),
        misaligned=n_misaligned,
        out_of_window=n_out,
        duplicate_equal=n_equal,
        duplicate_conflict=n_conflict,
        row_cell=row_cell,
    )


def densify_registers(
    meter_index: npt.ArrayLike,
    read_at_us: npt.ArrayLike,
    register: npt.ArrayLike,
    tx_time_us: npt.ArrayLike,
    *,
    window_start_us: int,
    resolution: Resolution,
    n_meters: int,
    n_slots: int | None = None,
) -> Densified:
    """Register reads → dense [n_meters, n_slots + 1] boundary arrays (read 0 at window start)."""
    n_slots = resolution.slots_per_day if n_slots is None else n_slots
    # boundary j is "slot j" of a grid that starts one step earlier and has one more slot
    return densify(
        meter_index,
        read_at_us,
        register,
        tx_time_us,
        window_start_us=window_start_us - resolution.microseconds,
        resolution=resolution,
        n_meters=n_meters,
        n_slots=n_slots + 1,
    )


def runs(
    mask: BoolArray, split: BoolArray | None = None
) -> tuple[Int64Array, Int64Array, Int64Array]:
    """(row, start, length) of every run of True along axis 1 of a 2-D mask, row-major.

    Runs are maximal, except that a run also starts at every cell where ``split`` is True.
    """
    n, s = mask.shape
    before = np.zeros((n, s), dtype=bool)
    before[:, 1:] = mask[:, :-1]
    after = np.zeros((n, s), dtype=bool)
    after[:, :-1] = mask[:, 1:]
    if split is not None:
        before &= ~split
        after[:, :-1] &= ~split[:, 1:]
    row, start = np.nonzero(mask & ~before)
    _, last = np.nonzero(mask & ~after)
    return row.astype(np.int64), start.astype(np.int64), (last - start + 1).astype(np.int64)


def cover(
    shape: tuple[int, int], row: Int64Array, start: Int64Array, stop: Int64Array
) -> BoolArray:
    """Mask of the cells ``start <= col < stop`` of each ``row`` (ranges may touch or overlap)."""
    n, s = shape
    base = row * (s + 1)
    size = n * (s + 1) + 1
    depth = np.bincount(base + start, minlength=size) - np.bincount(base + stop, minlength=size)
    return np.cumsum(depth[:-1]).reshape(n, s + 1)[:, :s] > 0


def negative(values: Int64Array, checked: BoolArray) -> BoolArray:
    """NEGATIVE: negative energy on a forward-only channel."""
    return checked & (values < 0)


def spike(
    values: Int64Array, checked: BoolArray, recent_max: Int64Array, factor: float, floor: int
) -> BoolArray:
    """SPIKE: above ``factor`` × the meter's recent maximum over every slot of the look-back
    (never below ``floor``): the largest half hour it has shown, as MDMS maximum-demand checks
    take it. The slot's own maximum alone flagged ~0.2 % of clean household values with a day
    or two of history (a kettle at 07:00 today, not yesterday); a gross error (a register
    glitch, a wrong multiplier) is still far above (issue 13 item 7).

    ``recent_max`` < 0 means no usable history: not checked.
    """
    meter_max = recent_max.max(axis=-1, keepdims=True) if recent_max.ndim > 1 else recent_max
    limit = np.maximum(meter_max * factor, floor)
    flagged: BoolArray = checked & (recent_max >= 0) & (values > limit)
    return flagged


def high_low(
    values: Int64Array, checked: BoolArray, day_max: Int64Array, factor: float, floor: int
) -> BoolArray:
    """HIGH_LOW: the day's total of checked values above ``factor`` × the recent daily maximum.

    Flags every checked cell of the day; a missing slot can only raise the total, so the check
    holds on incomplete days too. ``day_max`` < 0 means no usable history.
    """
    total = np.where(checked, values, 0).sum(axis=1)
    high = (day_max >= 0) & (total > np.maximum(day_max * factor, floor))
    flagged: BoolArray = checked & high[:, None]
    return flagged


def zero_run(values: Int64Array, checked: BoolArray, min_slots: int) -> BoolArray:
    """ZERO_RUN: cells in a run of at least ``min_slots`` zero values.

    Runs are counted inside the window: a run that began in the previous window counts from the
    window's start (no carry-over yet).
    """
    row, start, length = runs(checked & (values == 0))
    long = length >= min_slots
    return cover(values.shape, row[long], start[long], start[long] + length[long])


def time_tolerance(
    present: BoolArray, clock_offset_s: npt.NDArray[np.floating] | None, tolerance_s: float
) -> BoolArray:
    """TIME_TOLERANCE: received while the meter's clock was off by more than the tolerance."""
    if clock_offset_s is None:
        return np.zeros_like(present)
    offset = np.abs(np.asarray(clock_offset_s, dtype=np.float64))
    if offset.ndim == 1:
        offset = offset[:, None]
    return present & (offset > tolerance_s)


def sum_check(
    values: Int64Array,
    present: BoolArray,
    registers: Int64Array,
    register_present: BoolArray,
    modulus: int,
) -> tuple[BoolArray, BoolArray]:
    """(SUM_CHECK mismatch, ROLLOVER) per cell (SPEC M5).

    Between each two consecutive reads of a row, the intervals — when all were received — must add
    up to the register difference modulo ``modulus``. A segment whose later read is smaller than
    the earlier by less than half a turn wrapped: flagged ROLLOVER, which is not an error.
    """
    n, s = values.shape
    width = s + 1
    summed = np.zeros((n, width), dtype=np.int64)
    np.cumsum(np.where(present, values, 0), axis=1, out=summed[:, 1:])
    holes = np.zeros((n, width), dtype=np.int32)
    np.cumsum(~present, axis=1, out=holes[:, 1:], dtype=np.int32)

    reads = np.flatnonzero(register_present)
    same_row = reads[1:] // width == reads[:-1] // width
    lo, hi = reads[:-1][same_row], reads[1:][same_row]
    regs, sums, gaps = registers.ravel(), summed.ravel(), holes.ravel()
    step = (regs[hi] - regs[lo]) % modulus
    complete = gaps[hi] == gaps[lo]
    bad = complete & ((sums[hi] - sums[lo]) % modulus != step)
    wrapped = (regs[hi] < regs[lo]) & (step <= modulus // 2)
    row = lo // width
    col_lo, col_hi = lo - row * width, hi - row * width
    mismatch = cover((n, s), row[bad], col_lo[bad], col_hi[bad])
    rollover = cover((n, s), row[wrapped], col_lo[wrapped], col_hi[wrapped])
    return mismatch, rollover
