"""One clock (ARCHITECTURE principle 3): components are given a clock and never ask the OS.

- :class:`WallClock`: real time, for production.
- :class:`SteppedClock`: moves only when told to; simulations "as fast as possible" and tests.
- :class:`AcceleratedClock`: simulated time running ``speed`` times faster than the wall clock
  from a chosen origin; the live system (``kenshin up``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Protocol

from kenshin.core.timeslots import JST


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware."""
        ...


class WallClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(JST)


class SteppedClock:
    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("clock start must be timezone-aware")
        self._now = start

    def now(self) -> dt.datetime:
        return self._now

    def set(self, when: dt.datetime) -> None:
        if when < self._now:
            raise ValueError(f"a clock does not go back: {when} < {self._now}")
        self._now = when

    def advance(self, by: dt.timedelta) -> dt.datetime:
        self.set(self._now + by)
        return self._now


class AcceleratedClock:
    def __init__(
        self,
        origin: dt.datetime,
        speed: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if origin.tzinfo is None:
            raise ValueError("clock origin must be timezone-aware")
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.origin = origin
        self.speed = speed
        self._monotonic = monotonic
        self._started = monotonic()

    def now(self) -> dt.datetime:
        elapsed = (self._monotonic() - self._started) * self.speed
        return self.origin + dt.timedelta(seconds=elapsed)

    def wall_seconds_until(self, when: dt.datetime) -> float:
        """Real seconds until simulated time reaches ``when`` (≤ 0 if it already has)."""
        return (when - self.now()).total_seconds() / self.speed


class FollowClock:
    """Time as the last message said it was: a head-end behind a simulated fleet running at
    ``--speed max`` takes the collectors' envelope times as its clock. Never goes back."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("clock start must be timezone-aware")
        self._now = start

    def now(self) -> dt.datetime:
        return self._now

    def observe(self, when: dt.datetime) -> None:
        if when > self._now:
            self._now = when
