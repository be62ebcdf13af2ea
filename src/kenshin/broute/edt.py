"""EDT building blocks of the smart-meter classes: numbers, dates, "no data" (SPEC B1, B2).

All big-endian. ``date-time(7)`` is YYYY(u16) MM DD hh mm ss; ``date-time(6)`` drops the
seconds. Times are JST, as the meter's clock shows them. Nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt

from kenshin.core.timeslots import JST, to_epoch_us

NO_DATA_U32 = 0xFFFFFFFE
NO_DATA_S32 = 0x7FFFFFFE
NO_DATA_S16 = 0x7FFE
S16_MAX = 0x7FFD  # largest value that is not a status code (0x7FFE no data, 0x7FFF overflow)
S32_MAX = 0x7FFFFFFD

# 0xE1 / 0xE6 / 0xC5 unit codes by power of ten of a kWh (Release R)
UNIT_CODE_BY_EXPONENT: dict[int, int] = {
    0: 0x00,
    -1: 0x01,
    -2: 0x02,
    -3: 0x03,
    -4: 0x04,
    1: 0x0A,
    2: 0x0B,
    3: 0x0C,
    4: 0x0D,
}
EXPONENT_BY_UNIT_CODE = {code: exp for exp, code in UNIT_CODE_BY_EXPONENT.items()}


def u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u32(value: int | None) -> bytes:
    """An unsigned 32-bit reading; ``None`` is "no data" (0xFFFFFFFE)."""
    return (NO_DATA_U32 if value is None else value).to_bytes(4, "big")


def s16(value: int | None) -> bytes:
    """A signed 16-bit value clamped to the valid range; ``None`` is "no data" (0x7FFE)."""
    if value is None:
        return NO_DATA_S16.to_bytes(2, "big")
    return max(-S16_MAX, min(S16_MAX, value)).to_bytes(2, "big", signed=True)


def s32(value: int | None) -> bytes:
    """A signed 32-bit value clamped to the valid range; ``None`` is "no data"."""
    if value is None:
        return NO_DATA_S32.to_bytes(4, "big")
    return max(-S32_MAX, min(S32_MAX, value)).to_bytes(4, "big", signed=True)


def date_time7(t: dt.datetime) -> bytes:
    t = t.astimezone(JST)
    return u16(t.year) + bytes((t.month, t.day, t.hour, t.minute, t.second))


def date_time6(t: dt.datetime) -> bytes:
    return date_time7(t)[:6]


def parse_date_time6(edt: bytes) -> dt.datetime | None:
    """The JST instant of a date-time(6), or ``None`` if it is not a valid date and time."""
    if len(edt) != 6:
        return None
    try:
        return dt.datetime(
            int.from_bytes(edt[:2], "big"), edt[2], edt[3], edt[4], edt[5], tzinfo=JST
        )
    except ValueError:
        return None


def epoch_us(t: dt.datetime) -> int:
    return to_epoch_us(t)
