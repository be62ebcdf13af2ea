"""How a stored reading came to be: its quality, its source and, for estimates, the method.

Codes are small integers because they are stored once per reading (ARCHITECTURE "Storage").
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class Quality(IntEnum):
    RAW = 0  # as received, not yet validated (VEE not run)
    VALID = 1  # passed validation
    ESTIMATED = 2  # filled or replaced by an estimate
    SUSPECT = 3  # failed a rule and kept as received, awaiting review
    EDITED = 4  # manual edit
    MISSING = 5  # expected and not received (placeholder before estimation)
    OUTAGE = 6  # during a known outage: zero or missing is expected, not a gap
    DISCONNECTED = 7  # during a remote disconnect: likewise

    @property
    def label(self) -> str:
        return self.name.lower()


class Source(IntEnum):
    METER_PUSH = 1  # scheduled A-route delivery (A1–A3)
    REREAD = 2  # re-read from the meter's memory
    ESTIMATE = 3  # produced by the MDMS
    MANUAL = 4  # manual edit, with a reason
    POLL = 5  # on-demand poll (A4)

    @property
    def label(self) -> str:
        return self.name.lower()


class EstimationMethod(IntEnum):
    NONE = 0
    LINEAR = 1  # linear interpolation between register reads
    LIKE_DAY = 2  # average of like days
    LIKE_DAY_SCALED = 3  # like-day profile scaled to the register difference over the gap

    @property
    def label(self) -> str:
        return self.name.lower()


class Rule(IntFlag):
    """Validation rules a reading failed or tripped, stored as a uint16 bit set (``failed_rule``).

    Informational flags (duplicates, alignment, rollover) do not change the quality by themselves.
    """

    NONE = 0
    STRUCTURE_ALIGNMENT = 1 << 0  # a row for this slot had an interval end off the slot grid
    DUPLICATE_EQUAL = 1 << 1  # received more than once with the same value
    DUPLICATE_CONFLICT = 1 << 2  # received more than once with different values (latest wins)
    TIME_TOLERANCE = 1 << 3  # the meter's clock was off by more than the tolerance
    NEGATIVE = 1 << 4  # negative energy on a forward-only channel
    ZERO_RUN = 1 << 5  # zero consumption for a long run while connected
    SPIKE = 1 << 6  # far above the channel's own recent maximum for the slot
    HIGH_LOW = 1 << 7  # day total far above the channel's own recent daily maximum
    SUM_CHECK = 1 << 8  # intervals do not add up to the register difference (SPEC M5)
    ROLLOVER = 1 << 9  # the register wrapped past 10**digits here (SPEC M5), informational
    OUTAGE = 1 << 10  # known outage
    DISCONNECT = 1 << 11  # known remote disconnect
    MISSING = 1 << 12  # expected and not received

    @property
    def label(self) -> str:
        return (self.name or str(int(self))).lower()
