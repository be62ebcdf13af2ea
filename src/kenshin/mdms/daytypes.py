"""Day classes for like-day estimation: weekday, Saturday, Sunday or Japanese public holiday.

Load on a public holiday (祝日, including substitute holidays 振替休日) looks like a Sunday's, so
like-day estimation counts holidays as Sundays (reference: VEE practice, "like days").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from enum import IntEnum
from functools import lru_cache

import holidays
import numpy as np
import numpy.typing as npt


class DayClass(IntEnum):
    WEEKDAY = 0
    SATURDAY = 1
    SUNDAY_HOLIDAY = 2  # Sundays and Japanese public holidays

    @property
    def label(self) -> str:
        return self.name.lower()


@lru_cache(maxsize=64)
def _holidays_of(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.country_holidays("JP", years=year))


def day_class(dates: Iterable[dt.date] | npt.NDArray[np.datetime64]) -> npt.NDArray[np.int8]:
    """DayClass code of each JST calendar date (``datetime.date`` items or ``datetime64``)."""
    items = dates if isinstance(dates, np.ndarray) else list(dates)
    days = np.asarray(items, dtype="datetime64[D]").reshape(-1)
    ordinal = days.astype(np.int64)
    weekday = (ordinal + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    out = np.full(days.shape, DayClass.WEEKDAY, dtype=np.int8)
    out[weekday == 5] = DayClass.SATURDAY
    out[weekday == 6] = DayClass.SUNDAY_HOLIDAY
    if days.size:
        years = range(int(days.min().astype(object).year), int(days.max().astype(object).year) + 1)
        public = np.array(sorted(d for y in years for d in _holidays_of(y)), dtype="datetime64[D]")
        out[np.isin(days, public)] = DayClass.SUNDAY_HOLIDAY
    return out
