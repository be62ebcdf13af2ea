"""JST time slots for 1-, 5-, 15- and 30-minute intervals.

Conventions (SPEC "Facts"): time is JST (UTC+9, no daylight saving). 30-min slot 1 is
00:00–00:30 and slot 48 is 23:30–24:00; 15-min slots run 1–96 and 5-min slots 1–288 likewise.
A value belongs to the slot that *ends* at its timestamp, so a value stamped 00:00 is the last
slot of the previous day.

JST's offset (9 h) is a whole number of every resolution, so slot boundaries in JST fall on the
same instants as boundaries counted from the Unix epoch; the vectorized functions below use that
and work on int64 epoch microseconds, the unit kenshin's Arrow tables carry.
"""

from __future__ import annotations

import datetime as dt
from enum import IntEnum

import numpy as np
import numpy.typing as npt

JST = dt.timezone(dt.timedelta(hours=9), "JST")
US_PER_MINUTE = 60_000_000
US_PER_DAY = 1440 * US_PER_MINUTE
JST_OFFSET_US = 9 * 60 * US_PER_MINUTE  # JST is UTC+9 all year (no daylight saving)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Int64Array = npt.NDArray[np.int64]


class Resolution(IntEnum):
    """Interval length [min]."""

    MIN1 = 1
    MIN5 = 5
    MIN15 = 15
    MIN30 = 30

    @property
    def slots_per_day(self) -> int:
        return 1440 // int(self)

    @property
    def microseconds(self) -> int:
        return int(self) * US_PER_MINUTE

    @classmethod
    def parse(cls, value: int | str) -> Resolution:
        """Accept ``30``, ``"30"``, ``"30m"`` or ``"30min"``."""
        text = str(value).strip().lower().removesuffix("min").removesuffix("m")
        try:
            return cls(int(text))
        except ValueError:
            allowed = ", ".join(str(int(r)) for r in cls)
            raise ValueError(
                f"resolution must be one of {allowed} minutes, got {value!r}"
            ) from None


def to_epoch_us(ts: dt.datetime) -> int:
    """Timezone-aware datetime → epoch microseconds. Naive datetimes are refused."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"timestamp {ts.isoformat()} has no time zone")
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(us: int) -> dt.datetime:
    """Epoch microseconds → JST datetime."""
    return (_EPOCH + dt.timedelta(microseconds=int(us))).astimezone(JST)


def jst_midnight(day: dt.date) -> dt.datetime:
    """00:00 JST at the start of ``day``."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=JST)


def is_aligned(ts: dt.datetime, resolution: Resolution) -> bool:
    """True when ``ts`` is a slot boundary of ``resolution``."""
    return to_epoch_us(ts) % resolution.microseconds == 0


def slot_end(day: dt.date, slot: int, resolution: Resolution) -> dt.datetime:
    """End instant of slot ``slot`` (1-based) of JST ``day``; slot 48 of 30-min ends at 24:00."""
    if not 1 <= slot <= resolution.slots_per_day:
        raise ValueError(
            f"slot must be 1–{resolution.slots_per_day} "
            f"for {int(resolution)}-min values, got {slot}"
        )
    return jst_midnight(day) + dt.timedelta(minutes=slot * int(resolution))


def slot_of(ts: dt.datetime, resolution: Resolution) -> tuple[dt.date, int]:
    """(JST day, 1-based slot) of the slot that ends at or contains the instant ``ts``.

    An instant exactly on a boundary belongs to the slot ending there (00:00 → previous day's
    last slot); an instant inside a slot belongs to that slot.
    """
    days, slots = slot_numbers(np.array([to_epoch_us(ts)], dtype=np.int64), resolution)
    return dt.date.fromordinal(int(days[0])), int(slots[0])


def slot_numbers(epoch_us: Int64Array, resolution: Resolution) -> tuple[Int64Array, Int64Array]:
    """Vectorized :func:`slot_of`: returns (proleptic ordinal of the JST day, 1-based slot)."""
    step = resolution.microseconds
    # ceil to the slot end, then step back one microsecond so the end instant stays in its day
    end = -(-np.asarray(epoch_us, dtype=np.int64) // step) * step
    local = end - 1 + JST_OFFSET_US
    day_index = local // US_PER_DAY
    slot = (local - day_index * US_PER_DAY) // step + 1
    return day_index + _UNIX_DAY_ORDINAL, slot


def slot_ends(start: dt.datetime, end: dt.datetime, resolution: Resolution) -> Int64Array:
    """Epoch-µs ends of every slot with ``start < slot end <= end``."""
    step = resolution.microseconds
    first = to_epoch_us(start) // step * step + step
    last = to_epoch_us(end) // step * step
    if last < first:
        return np.empty(0, dtype=np.int64)
    return np.arange(first, last + 1, step, dtype=np.int64)


def day_slot_ends(day: dt.date, resolution: Resolution) -> Int64Array:
    """Epoch-µs ends of all slots of JST ``day`` (48 for 30-min values)."""
    start = jst_midnight(day)
    return slot_ends(start, start + dt.timedelta(days=1), resolution)


_UNIX_DAY_ORDINAL = dt.date(1970, 1, 1).toordinal()


def iso_jst(epoch_us: npt.NDArray[np.int64]) -> list[str]:
    """Epoch µs → ISO-8601 in JST (``2026-04-01T00:30:00+09:00``), µs shown only when present."""
    local = (epoch_us + JST_OFFSET_US).astype("datetime64[us]")
    text = np.datetime_as_string(local, unit="s").astype(object)
    fractional = epoch_us % 1_000_000 != 0
    if fractional.any():
        text[fractional] = np.datetime_as_string(local[fractional], unit="us")
    return [f"{t}+09:00" for t in text]
