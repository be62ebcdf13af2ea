"""What a meter reports happened at it (SPEC R1–R3): the codes the A-route carries in an event
frame and the MDMS stores (``core.schema.EVENTS_SCHEMA``)."""

from __future__ import annotations

from enum import IntEnum


class EventCode(IntEnum):
    POWER_FAIL = 1  # last gasp (R1)
    POWER_RESTORE = 2  # (R2)
    SWITCH_TRIPPED = 3  # over the ampere limit (R3)
    SWITCH_LOCKED_OUT = 4  # repeated trips
    TAMPER = 5
    CLOCK_ADJUSTED = 6
    SWITCH_RECLOSED = 7  # after a trip, by itself (R3)

    @property
    def label(self) -> str:
        return self.name.lower()
