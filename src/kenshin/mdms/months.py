"""JST calendar months: the unit of partitions, compaction, retention and the archive.

A month is counted from 1970-01 (``month = 12 * (year - 1970) + (month_of_year - 1)``), so months
are plain integers that sort and subtract. Boundaries are JST midnights (SPEC: days and months of
Japanese meter data are JST).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

JST_OFFSET_US = 9 * 3600 * 1_000_000


def month_of(epoch_us: int) -> int:
    """The JST month in which an instant (Unix µs) falls."""
    moment = np.datetime64(epoch_us + JST_OFFSET_US, "us").astype("datetime64[M]")
    return int(moment.astype(np.int64))


def month_index(epoch_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The JST month of each instant."""
    moments = (np.asarray(epoch_us, np.int64) + JST_OFFSET_US).astype("datetime64[us]")
    return moments.astype("datetime64[M]").astype(np.int64)


def jst_months(epoch_us: npt.NDArray[np.int64]) -> list[int]:
    """The JST calendar months in which the instants fall, ascending."""
    if len(epoch_us) == 0:
        return []
    first, last = month_of(int(epoch_us.min())), month_of(int(epoch_us.max()))
    if first == last:
        return [first]
    index = month_index(epoch_us) - first
    return [first + int(m) for m in np.flatnonzero(np.bincount(index, minlength=last - first + 1))]


def table_months(table: pa.Table, column: str) -> list[int]:
    """The JST months of a timestamp column of an Arrow table (NULLs ignored)."""
    array = table.column(column)
    if array.null_count:
        array = array.drop_null()
    values = array.cast(pa.int64()).to_numpy() if len(array) else np.zeros(0, np.int64)
    return jst_months(np.asarray(values))


def month_start_us(month: int) -> int:
    """Unix µs of the JST midnight that starts ``month``."""
    start = np.datetime64(month, "M").astype("datetime64[us]").astype(np.int64)
    return int(start) - JST_OFFSET_US


def months_between(start_us: int, end_us: int) -> list[int]:
    """Months holding interval ends in ``(start_us, end_us]``."""
    if end_us <= start_us:
        return []
    return list(range(month_of(start_us + 1), month_of(end_us) + 1))


def slot_month_index(interval_end_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The JST month each interval *belongs to*: the slot ending at midnight on the 1st is the
    last slot of the month before (the DuckDB store's month tables follow this)."""
    return month_index(np.asarray(interval_end_us, np.int64) - 1)


def slot_months_between(start_us: int, end_us: int) -> list[int]:
    """Months of the slots whose interval ends lie in ``(start_us, end_us]``."""
    if end_us <= start_us:
        return []
    return list(range(month_of(start_us), month_of(end_us - 1) + 1))


def month_name(month: int) -> str:
    """``2026_04`` for April 2026."""
    year, index = divmod(month, 12)
    return f"{1970 + year:04d}_{index + 1:02d}"


def parse_month(text: str) -> int:
    """``2026-04`` or ``2026_04`` → month number."""
    year, _, rest = text.replace("_", "-").partition("-")
    return (int(year) - 1970) * 12 + int(rest) - 1


def partition_name(parent: str, month: int) -> str:
    """``readings_2026_04`` for April 2026 (JST)."""
    return f"{parent}_{month_name(month)}"


def month_bounds_text(month: int) -> tuple[str, str]:
    """SQL literals of the month's JST start and the next month's."""

    def start(m: int) -> str:
        year, index = divmod(m, 12)
        return f"{1970 + year:04d}-{index + 1:02d}-01 00:00:00+09"

    return start(month), start(month + 1)
