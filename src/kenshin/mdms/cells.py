"""Rows of many meters → dense cells over a sorted roster: row ``meter`` × column ``slot``,
flattened. The sweep compares its outcome with the current versions this way, and the history
planes are made from them."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.core.timeslots import Resolution

# what a cell holds where no row is: a value no meter sends, quality 255 (none of Quality)
_ABSENT: dict[str, tuple[Any, int]] = {
    "value": (np.int64, np.iinfo(np.int64).min),
    "quality": (np.int16, 255),
    "source": (np.int16, 0),
    "method": (np.int16, 0),
    "failed_rule": (np.int32, 0),
    "tx_time": (np.int64, -1),
}


_TABLE_MAX = 1 << 22  # keys a lookup table may span whatever the roster (32 MiB)


def roster_index(
    keys: npt.NDArray[np.int64], meter_keys: pa.ChunkedArray | pa.Array | npt.NDArray[Any]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Row of each meter key in the sorted roster, and whether it is on the roster at all.

    kenshin's rosters number meters 0 … n-1, so the row is usually the key less the first (no
    search); a subset of the roster (the meters that send 15-min values) is looked up in a
    table; only sparse keys are searched.
    """
    wanted = np.asarray(
        meter_keys if isinstance(meter_keys, np.ndarray) else meter_keys.to_numpy(),
        dtype=np.int64,
    )
    n = len(keys)
    if n == 0:
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    first, last = int(keys[0]), int(keys[-1])
    if last - first == n - 1:  # sorted and unique, so exactly first … last: a block of keys
        known = (wanted >= first) & (wanted <= last)
        return np.where(known, wanted - first, 0), known
    if last - first <= max(8 * n, _TABLE_MAX):  # a lookup table: one gather, no search
        table = np.full(last - first + 1, -1, np.int64)
        table[keys - first] = np.arange(n)
        inside = (wanted >= first) & (wanted <= last)
        if inside.all():  # the usual case: one gather
            row = table[wanted - first]
        else:
            row = np.where(inside, table[np.where(inside, wanted - first, 0)], -1)
        known = row >= 0
        return np.where(known, row, 0), known
    index = np.searchsorted(keys, wanted)
    known = index < len(keys)
    known[known] = keys[index[known]] == wanted[known]
    return np.minimum(index, len(keys) - 1), known


def cells_of(
    rows: pa.Table, keys: npt.NDArray[np.int64], day_start_us: int, resolution: Resolution
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The cell (roster row × slot, flattened) of each row, and whether it is one of the day's
    cells on the sorted roster ``keys``."""
    s = resolution.slots_per_day
    ends = np.asarray(rows.column("interval_end").cast(pa.int64()).to_numpy(), np.int64)
    slot = (ends - day_start_us - 1) // resolution.microseconds
    index, known = roster_index(keys, rows.column("meter_key"))
    return index * s + slot, known & (slot >= 0) & (slot < s)


def dense_cells(
    rows: pa.Table,
    keys: npt.NDArray[np.int64],
    day_start_us: int,
    resolution: Resolution,
    columns: tuple[str, ...],
) -> tuple[npt.NDArray[np.bool_], dict[str, npt.NDArray[Any]]]:
    """(present, {column: values}), each ``[N × S]``, of one day of rows holding at most one row
    per cell (current versions). ``present``: the row has a value. Rows of other days or of
    meters off the roster are left out."""
    n, s = len(keys), resolution.slots_per_day
    cell_of_row, kept = cells_of(rows, keys, day_start_us, resolution)
    cell = cell_of_row[kept]
    value = rows.column("value")
    present = np.zeros(n * s, bool)
    present[cell] = value.is_valid().to_numpy(zero_copy_only=False)[kept]
    out: dict[str, npt.NDArray[Any]] = {}
    for name in columns:
        dtype, absent = _ABSENT[name]
        column = value.fill_null(0) if name == "value" else rows.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        out[name] = np.full(n * s, absent, dtype)
        out[name][cell] = column.to_numpy()[kept]
    return present, out


__all__ = ["cells_of", "dense_cells", "roster_index"]
