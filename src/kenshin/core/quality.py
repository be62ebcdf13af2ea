"""How a stored reading came to be: its quality, its source and, for estimates, the method.

Codes are small integers because they are stored once per reading (ARCHITECTURE "Storage").
"""

from __future__ import annotations

from enum import IntEnum


class Quality(IntEnum):
    RAW = 0  # as received, not yet validated (VEE not run)
    VALID = 1  # passed validation
    ESTIMATED = 2  # filled or replaced by an estimate
    SUSPECT = 3  # failed a rule and kept as received, awaiting review
    EDITED = 4  # manual edit
    MISSING = 5  # expected and not received (placeholder before estimation)

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

    @property
    def label(self) -> str:
        return self.name.lower()
