"""JST calendar months: the unit of partitions, compaction, retention and the archive.

A month is counted from 1970-01 (``month = 12 * (year - 1970) + (month_of_year - 1)``), so months
are plain integers that sort and subtract. Boundaries are JST midnights (SPEC: days and months of
Japanese meter data are JST).

**One convention for every stored row** (readings by ``interval_end``, register reads by
``read_at``), on every backend and in the archive: a row belongs to the month of the instant one
microsecond before its time, so month ``M`` holds the times in ``(start of M, start of M+1]``.
The 30-min value ending at 00:00 on the 1st is the last slot of the month before (SPEC "Facts":
a value belongs to the slot that *ends* at its timestamp), and the register read at that
midnight closes the month before, as a monthly meter reading does. :func:`month_of` (no ``row``
in its name) is for instants such as "now", which belong to the month they fall in.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.core.timeslots import JST_OFFSET_US

# stores record the convention they file rows by (``meta`` key ``layout``); layout 1 filed
# register reads by the month their instant falls in
LAYOUT = "2"


def month_of(epoch_us: int) -> int:
    """The JST month in which an instant (Unix µs) falls: for "now", not for stored rows."""
    moment = np.datetime64(epoch_us + JST_OFFSET_US, "us").astype("datetime64[M]")
    return int(moment.astype(np.int64))


def row_month(epoch_us: int) -> int:
    """The month a stored row with this time belongs to (see the module docstring)."""
    return month_of(epoch_us - 1)


def row_month_index(epoch_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The month each stored row belongs to."""
    moments = (np.asarray(epoch_us, np.int64) - 1 + JST_OFFSET_US).astype("datetime64[us]")
    return moments.astype("datetime64[M]").astype(np.int64)


def row_months(epoch_us: npt.NDArray[np.int64]) -> list[int]:
    """The months that rows with these times belong to, ascending."""
    if len(epoch_us) == 0:
        return []
    first, last = row_month(int(epoch_us.min())), row_month(int(epoch_us.max()))
    if first == last:
        return [first]
    index = row_month_index(epoch_us) - first
    return [first + int(m) for m in np.flatnonzero(np.bincount(index, minlength=last - first + 1))]


def table_row_months(table: pa.Table, column: str) -> list[int]:
    """The months of the rows of an Arrow table, by its time column (NULLs ignored)."""
    array = table.column(column)
    if array.null_count:
        array = array.drop_null()
    values = array.cast(pa.int64()).to_numpy() if len(array) else np.zeros(0, np.int64)
    return row_months(np.asarray(values))


def month_start_us(month: int) -> int:
    """Unix µs of the JST midnight that starts ``month``."""
    start = np.datetime64(month, "M").astype("datetime64[us]").astype(np.int64)
    return int(start) - JST_OFFSET_US


def row_bounds_us(month: int) -> tuple[int, int]:
    """``(low, high)`` such that the month holds the rows with ``low <= time < high``."""
    return month_start_us(month) + 1, month_start_us(month + 1) + 1


def row_months_between(start_us: int, end_us: int) -> list[int]:
    """Months holding the rows with times in ``(start_us, end_us]``."""
    if end_us <= start_us:
        return []
    return list(range(row_month(start_us + 1), row_month(end_us) + 1))


def row_date_text(epoch_us: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """``YYYY-MM-DD`` of the JST day each stored row belongs to (the same one-µs-back rule)."""
    days = (np.asarray(epoch_us, np.int64) - 1 + JST_OFFSET_US).astype("datetime64[us]")
    return np.datetime_as_string(days.astype("datetime64[D]"))


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


def row_bounds_text(month: int) -> tuple[str, str]:
    """SQL literals of :func:`row_bounds_us`: a range partition ``FROM low TO high``."""

    def start(m: int) -> str:
        year, index = divmod(m, 12)
        return f"{1970 + year:04d}-{index + 1:02d}-01 00:00:00.000001+09"

    return start(month), start(month + 1)
