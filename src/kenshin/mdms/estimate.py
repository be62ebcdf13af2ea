"""VEE estimation: history statistics and filling gaps (missing or failed slots).

Per gap (a run of slots to fill in one meter's row, split at every register read inside it),
first match wins:

1. both end registers known and the gap at most the interpolation limit → LINEAR: the register
   difference spread evenly, as integers that sum exactly to it;
2. both ends known and like days available → LIKE_DAY_SCALED: the like-day profile scaled so the
   gap sums exactly to the register difference (mandatory in Norway's Elhub, a good default);
3. like days available → LIKE_DAY: the mean of the same slot over the like days;
4. both ends known, no like days (or a like-day profile of zeros) → LINEAR, flat as in 1;
5. several gaps between the same two register reads (e.g. two lost 5-min values between 30-min
   reads: neither gap has both ends) → LINEAR over the segment: what the reads' difference
   leaves after the known intervals, spread evenly over the segment's unfilled slots;
6. otherwise the gap stays unfilled (MISSING, and on the re-read list).

A gap's end reads are the reads at its boundaries, or carried there from the nearest read over
good intervals (:func:`chained_reads`). An end is unknown without such a read, when the slot
beyond it is in an outage or disconnect (outage intervals are never endpoints), or when the
difference exceeds half a register turn (the register went backwards: not a rollover).

All of it is vectorized: runs are expanded to cells with ``np.repeat`` and per-run sums come
from one cumulative sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kenshin.core.quality import EstimationMethod
from kenshin.mdms.vee_rules import BoolArray, FloatArray, Int64Array, runs


@dataclass(frozen=True, slots=True)
class HistoryStats:
    """What VEE needs from a channel's history, per meter (all in register counts).

    The caller may compute these in the store (SQL over the last weeks) instead of passing raw
    history: 1 M meters × 28 days × 48 slots would be ~10 GB as int64.
    """

    recent_max: Int64Array  # [N, S] max of the slot over usable days in the look-back; -1: none
    like_day: FloatArray  # [N, S] mean of the slot over the selected like days; 0 where none
    like_days_used: Int64Array  # [N] how many like days went into ``like_day``
    day_max: Int64Array  # [N] max daily total over usable days in the look-back; -1: none

    @classmethod
    def empty(cls, n_meters: int, n_slots: int) -> HistoryStats:
        """No history: spike and high/low checks are off, no like-day estimates."""
        return cls(
            recent_max=np.full((n_meters, n_slots), -1, dtype=np.int64),
            like_day=np.zeros((n_meters, n_slots), dtype=np.float64),
            like_days_used=np.zeros(n_meters, dtype=np.int64),
            day_max=np.full(n_meters, -1, dtype=np.int64),
        )


def history_stats(
    history: npt.NDArray[np.integer],
    usable: BoolArray,
    history_day_class: npt.NDArray[np.integer],
    day_class: int,
    *,
    like_days: int = 4,
    lookback_days: int = 28,
) -> HistoryStats:
    """Statistics from raw history ``[N, D, S]`` (days oldest first, the last is yesterday).

    ``usable`` [N, D] is False for days that were estimated or had outages: they count neither
    as like days nor for the maxima. Like days are the ``like_days`` most recent usable days of
    the target's ``day_class`` within the look-back.
    """
    n, d, s = history.shape
    recent = np.zeros(d, dtype=bool)
    recent[max(0, d - lookback_days) :] = True
    use = np.asarray(usable, dtype=bool) & recent[None, :]
    if d == 0:
        return HistoryStats.empty(n, s)
    recent_max = np.where(use[:, :, None], history, -1).max(axis=1).astype(np.int64)
    totals = history.sum(axis=2, dtype=np.int64)
    day_max = np.where(use, totals, -1).max(axis=1)
    like = use & (np.asarray(history_day_class) == day_class)[None, :]
    rank_from_newest = np.cumsum(like[:, ::-1], axis=1)[:, ::-1]
    selected = like & (rank_from_newest <= like_days)
    used = selected.sum(axis=1).astype(np.int64)
    sums = np.einsum("nds,nd->ns", history.astype(np.float64), selected.astype(np.float64))
    like_day = sums / np.maximum(used, 1)[:, None]
    return HistoryStats(recent_max, like_day, used, day_max)


@dataclass(frozen=True, slots=True)
class GapFill:
    """Every cell of every gap: where it is, its estimate and the method (NONE: not filled)."""

    row: Int64Array
    col: Int64Array
    value: Int64Array
    method: npt.NDArray[np.uint8]


def _even_split(total: Int64Array, pos: Int64Array, length: Int64Array) -> Int64Array:
    """Integer shares of ``total`` over ``length`` cells that sum exactly to it.

    Cell ``pos`` gets ``⌊(pos+1)·total/length⌋ − ⌊pos·total/length⌋``: the remainder lands on
    evenly spaced cells, the same ones every time.
    """
    return (pos + 1) * total // length - pos * total // length


def chained_reads(
    values: Int64Array,
    good: BoolArray,
    registers: Int64Array,
    register_present: BoolArray,
    modulus: int,
) -> tuple[BoolArray, Int64Array, BoolArray, Int64Array]:
    """Register reads at every boundary, carried from the nearest read over good intervals.

    (known from the left, read from the left, known from the right, read from the right), each
    [N, S+1]. A read at boundary ``i`` plus the good intervals ``i..j-1`` gives the read at ``j``;
    a lost delivery loses the interval and the read at its end, so without this the gap's far end
    would have no read. A bad interval (missing, failed, outage, sum-check mismatch) breaks it.
    """
    n, s = values.shape
    bound = np.arange(s + 1, dtype=np.int64)
    summed = np.zeros((n, s + 1), dtype=np.int64)
    np.cumsum(np.where(good, values, 0), axis=1, out=summed[:, 1:])

    last_read = np.maximum.accumulate(np.where(register_present, bound, -1), axis=1)
    breaks = np.zeros((n, s + 1), dtype=bool)
    breaks[:, 1:] = ~good  # a bad interval k stops chains from crossing into boundary k + 1
    last_break = np.maximum.accumulate(np.where(breaks, bound, -1), axis=1)
    from_left = (last_read >= 0) & (last_read >= last_break)
    base = np.arange(n, dtype=np.int64)[:, None] * (s + 1)
    i = base + np.maximum(last_read, 0)  # flat index of the read the chain starts from
    left = (registers.ravel()[i] + summed - summed.ravel()[i]) % modulus

    flip = np.s_[:, ::-1]
    next_read = np.minimum.accumulate(np.where(register_present, bound, s + 1)[flip], axis=1)[flip]
    breaks[:, 1:] = False
    breaks[:, :s] = ~good  # ... and from boundary k back to k + 1
    next_break = np.minimum.accumulate(np.where(breaks, bound, s + 1)[flip], axis=1)[flip]
    from_right = (next_read <= s) & (next_read <= next_break)
    i = base + np.minimum(next_read, s)
    right = (registers.ravel()[i] - (summed.ravel()[i] - summed)) % modulus
    return from_left, left, from_right, right


def estimate_gaps(
    bad: BoolArray,
    good: BoolArray,
    blocked: BoolArray,
    values: Int64Array,
    registers: Int64Array,
    register_present: BoolArray,
    like_day: FloatArray,
    like_ok: BoolArray,
    *,
    max_gap_slots: int,
    modulus: int,
) -> GapFill:
    """Estimates for every cell of ``bad`` [N, S] (see the module docstring for the methods).

    ``good`` [N, S] marks intervals that may carry a read to a gap's end (:func:`chained_reads`),
    ``blocked`` outage/disconnect slots, ``like_ok`` [N] meters with like days.
    """
    s = bad.shape[1]
    row, start, length = runs(bad, split=register_present[:, :-1])  # split at reads inside
    stop = start + length
    # a read right at a gap's end is its end; only rows with a gap lacking one need reads
    # carried over good intervals (chained_reads gives the same answer where a read is present)
    has_left = register_present[row, start]
    has_right = register_present[row, stop]
    left_value = registers[row, start].copy()
    right_value = registers[row, stop].copy()
    need = ~(has_left & has_right)
    if need.any():
        chained_rows = np.unique(row[need])
        at = np.searchsorted(chained_rows, row[need])
        from_left, left_read, from_right, right_read = chained_reads(
            values[chained_rows],
            good[chained_rows],
            registers[chained_rows],
            register_present[chained_rows],
            modulus,
        )
        has_left[need] = from_left[at, start[need]]
        has_right[need] = from_right[at, stop[need]]
        left_value[need] = left_read[at, start[need]]
        right_value[need] = right_read[at, stop[need]]
    left = has_left & ~((start > 0) & blocked[row, np.maximum(start - 1, 0)])
    right = has_right & ~((stop < s) & blocked[row, np.minimum(stop, s - 1)])
    delta = (right_value - left_value) % modulus
    both = left & right & (delta <= modulus // 2)
    like = like_ok[row]
    short = both & (length <= max_gap_slots)

    run = np.repeat(np.arange(row.size), length)
    first = np.cumsum(length) - length  # index of each run's first cell
    pos = np.arange(run.size, dtype=np.int64) - first[run]
    cell_row, cell_col = row[run], start[run] + pos

    weight = np.rint(like_day[cell_row, cell_col]).astype(np.int64)
    csum = np.cumsum(weight)
    before = csum[first] - weight[first] if run.size else np.zeros(0, dtype=np.int64)
    weight_total = csum[first + length - 1] - before if run.size else before
    scaled = both & ~short & like & (weight_total > 0)
    flat = both & ~scaled
    like_only = ~both & like

    method_of_run = np.zeros(row.size, dtype=np.uint8)
    method_of_run[flat] = EstimationMethod.LINEAR
    method_of_run[scaled] = EstimationMethod.LIKE_DAY_SCALED
    method_of_run[like_only] = EstimationMethod.LIKE_DAY
    method = method_of_run[run]

    value = np.zeros(run.size, dtype=np.int64)
    cell_delta, cell_len = delta[run], length[run]
    m = method == EstimationMethod.LINEAR
    value[m] = _even_split(cell_delta[m], pos[m], cell_len[m])
    m = method == EstimationMethod.LIKE_DAY
    value[m] = weight[m]
    m = method == EstimationMethod.LIKE_DAY_SCALED
    upto = csum[m] - before[run[m]]  # like-day sum of the run up to and including the cell
    total, gap_delta = weight_total[run[m]], cell_delta[m]
    # cumulative rounding: telescopes to exactly delta over the run, never negative
    value[m] = gap_delta * upto // total - gap_delta * (upto - weight[m]) // total
    fill = GapFill(cell_row, cell_col, value, method)
    return _segments(fill, good, blocked, values, registers, register_present, modulus)


def _segments(
    fill: GapFill,
    good: BoolArray,
    blocked: BoolArray,
    values: Int64Array,
    registers: Int64Array,
    register_present: BoolArray,
    modulus: int,
) -> GapFill:
    """Method 5: slots still unfilled between two register reads share what the reads'
    difference leaves after every known interval of the segment (received or estimated)."""
    open_cells = fill.method == EstimationMethod.NONE
    if not open_cells.any():
        return fill
    n, s = good.shape
    unknown = np.zeros((n, s), dtype=bool)
    unknown[fill.row[open_cells], fill.col[open_cells]] = True
    known = np.where(good, values, 0)
    done = ~open_cells
    known[fill.row[done], fill.col[done]] = fill.value[done]
    is_known = good.copy()
    is_known[fill.row[done], fill.col[done]] = True

    bound = np.arange(s + 1, dtype=np.int64)
    last = np.maximum.accumulate(np.where(register_present, bound, -1), axis=1)[:, :s]
    flip = np.s_[:, ::-1]
    nxt = np.minimum.accumulate(np.where(register_present, bound, s + 1)[flip], axis=1)[flip]
    nxt = nxt[:, 1:]  # the first read at a boundary after each slot
    closed = (last >= 0) & (nxt <= s)
    rows = np.arange(n, dtype=np.int64)[:, None]
    key = np.where(closed, rows * (s + 1) + last, -1).ravel()  # segment of each slot
    inside = key >= 0
    size = n * (s + 1)
    k = key[inside]
    sum_known = np.bincount(k, weights=known.ravel()[inside], minlength=size).astype(np.int64)
    n_unknown = np.bincount(k, weights=unknown.ravel()[inside], minlength=size).astype(np.int64)
    # a segment with an outage, or a slot that is neither known nor to be filled, is left alone
    other = (blocked | (~is_known & ~unknown)).ravel()[inside]
    n_other = np.bincount(k, weights=other, minlength=size)

    cell_row, cell_col = fill.row[open_cells], fill.col[open_cells]
    seg = key.reshape(n, s)[cell_row, cell_col]
    usable = seg >= 0
    lo = np.maximum(last[cell_row, cell_col], 0)  # clipped: unusable slots are masked below
    hi = np.minimum(nxt[cell_row, cell_col], s)
    delta = (registers[cell_row, hi] - registers[cell_row, lo]) % modulus
    seg_safe = np.where(usable, seg, 0)
    residual = delta - sum_known[seg_safe]
    # as for gaps, a read next to an outage slot is no endpoint
    beside = ((lo > 0) & blocked[cell_row, np.maximum(lo - 1, 0)]) | (
        (hi < s) & blocked[cell_row, np.minimum(hi, s - 1)]
    )
    ok = (
        usable
        & ~beside
        & (n_other[seg_safe] == 0)
        & (n_unknown[seg_safe] > 0)
        & (delta <= modulus // 2)
        & (residual >= 0)
    )
    # rank of each unfilled slot within its segment (slots of a segment are contiguous)
    flat_unknown = unknown.ravel()
    running = np.cumsum(flat_unknown)
    first = cell_row * s + np.minimum(lo, s - 1)  # the segment's first slot
    rank = running[cell_row * s + cell_col] - 1 - (running[first] - flat_unknown[first])
    share = _even_split(residual, rank, np.maximum(n_unknown[seg_safe], 1))
    value, method = fill.value.copy(), fill.method.copy()
    target = np.flatnonzero(open_cells)[ok]
    value[target] = share[ok]
    method[target] = EstimationMethod.LINEAR
    return GapFill(fill.row, fill.col, value, method)
