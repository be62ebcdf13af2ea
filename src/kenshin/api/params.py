"""Query parameters of the API parsed into kenshin's types, with kenshin's errors.

Plain functions, no FastAPI: the library's ``ValueError`` becomes a kenshin error here, and the app
turns kenshin errors into HTTP responses in one place.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping

from kenshin.core.channels import Channel
from kenshin.core.timeslots import JST, Resolution
from kenshin.errors import InvalidInput, InvalidPeriod, InvalidSetting, OutOfRange, PeriodTooLong

# Longest period one readings call serves, by resolution [days]: about 1 440 values a call for
# 1-min data, and a year of 30-min data (17 568 values).
DEFAULT_MAX_DAYS: dict[Resolution, int] = {
    Resolution.MIN1: 1,
    Resolution.MIN5: 31,
    Resolution.MIN15: 93,
    Resolution.MIN30: 366,
}

# Instants a request may name: the stores count months from 1970-01, and a period's arithmetic
# (± 1 day, the longest period) must stay far from datetime's year-1 and year-9999 edges, where
# it overflows. Outside this range a time parameter is 422, like an integer past its bound.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=JST)
LATEST = dt.datetime(2100, 1, 1, tzinfo=JST)
# Offsets and ids fit a signed 32-bit integer: both stores take them as a bound parameter, and
# DuckDB rejects one past int64 with an SQL error (a 503 before this bound).
MAX_OFFSET = 2**31 - 1

# An unencoded '+' in a query string arrives as a space: "…T00:00 09:00" meant "…T00:00+09:00".
_SPACE_FOR_PLUS = re.compile(r"(.*T[0-9:.]+) ([0-9]{2}(?::?[0-9]{2})?)")


def max_days_table(overrides: Mapping[int, int] | None) -> dict[Resolution, int]:
    """The default limits with ``overrides`` (resolution [min] → days) applied."""
    table = dict(DEFAULT_MAX_DAYS)
    for minutes, days in (overrides or {}).items():
        try:
            resolution = Resolution.parse(minutes)
        except ValueError as exc:
            raise InvalidSetting(f"max_days: {exc}") from None
        if days < 1:
            raise InvalidSetting(
                f"max_days for {int(resolution)}-min values must be at least 1 day, got {days}"
            )
        table[resolution] = days
    return table


def parse_channel(value: str) -> Channel:
    try:
        return Channel.parse(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def parse_resolution(value: str) -> Resolution:
    try:
        return Resolution.parse(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def parse_instant(name: str, text: str, error: type[InvalidInput] = InvalidInput) -> dt.datetime:
    """ISO-8601 date-time or date → aware JST datetime.

    Naive date-times are JST; a plain date ``YYYY-MM-DD`` is 00:00 JST of that day. Text that is
    no date raises ``error``; a date outside [:data:`EARLIEST`, :data:`LATEST`] raises
    :class:`OutOfRange`.
    """
    cleaned = text.strip()
    if match := _SPACE_FOR_PLUS.fullmatch(cleaned):
        cleaned = f"{match[1]}+{match[2]}"
    try:
        ts = dt.datetime.fromisoformat(cleaned)
    except ValueError:
        raise error(
            f"{name} must be an ISO-8601 date or date-time such as 2026-04-01 or "
            f"2026-04-01T00:30+09:00, got {text!r}"
        ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=JST)
    try:
        ts = ts.astimezone(JST)
    except OverflowError:  # 0001-01-01T00:00+14:00 has no JST time
        ts = EARLIEST - dt.timedelta(days=1) if ts.year == 1 else LATEST + dt.timedelta(days=1)
    if not EARLIEST <= ts <= LATEST:
        raise OutOfRange(
            f"{name} must lie between {EARLIEST.date()} and {LATEST.date()} (JST), got {text!r}"
        )
    return ts


def parse_period(
    start: str | None,
    end: str | None,
    resolution: Resolution,
    max_days: Mapping[Resolution, int],
    latest: Callable[[], dt.datetime | None] = lambda: None,
) -> tuple[dt.datetime, dt.datetime]:
    """(start, end) of a readings query.

    ``end`` defaults to one day after ``start``; without ``start`` the period is the day up to
    ``end``, and without either the day up to the newest stored value (``latest()``).
    """
    if start is not None:
        start_ts = parse_instant("start", start, InvalidPeriod)
        end_ts = (
            start_ts + dt.timedelta(days=1)
            if end is None
            else parse_instant("end", end, InvalidPeriod)
        )
    else:
        if end is not None:
            end_ts = parse_instant("end", end, InvalidPeriod)
        else:
            newest = latest()
            if newest is None:
                raise InvalidPeriod("no values are stored for this meter yet; pass start and end")
            end_ts = newest
        start_ts = end_ts - dt.timedelta(days=1)
    if end_ts <= start_ts:
        raise InvalidPeriod(
            f"end ({end_ts.isoformat()}) must be after start ({start_ts.isoformat()})"
        )
    limit_days = max_days[resolution]
    span = end_ts - start_ts
    if span > dt.timedelta(days=limit_days):
        raise PeriodTooLong(
            f"{int(resolution)}-min readings are served for at most {limit_days} day(s) per "
            f"request; {start_ts.isoformat()} to {end_ts.isoformat()} spans "
            f"{span.total_seconds() / 86_400:g} days"
        )
    return start_ts, end_ts
