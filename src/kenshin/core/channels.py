"""Measured quantities (channels) and their units."""

from __future__ import annotations

from enum import IntEnum

from kenshin.core.codes import parse_code


class Channel(IntEnum):
    """What a reading measures. The integer is the code stored in the readings table."""

    ACTIVE_FORWARD = 1  # 正方向 active energy, register units [kWh × unit × coefficient]
    ACTIVE_REVERSE = 2  # 逆方向 active energy (reverse flow, e.g. rooftop PV)
    REACTIVE = 3  # lagging reactive energy [kvarh × unit × coefficient]
    VOLTAGE = 4  # supply voltage at the end of the interval [0.1 V]
    # computed by the MDMS, never sent by a meter (SPEC S3 差分計量): the parent meter's
    # consumption less its specified sub-meters, in the parent's register units
    DIFFERENCE_FORWARD = 5

    @property
    def metered(self) -> bool:
        """Whether meters measure and send this channel (the A-route accepts only these)."""
        return self is not Channel.DIFFERENCE_FORWARD

    @property
    def unit(self) -> str:
        return _UNITS[self]

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: int | str) -> Channel:
        """Accept the code (``1``) or the name (``"active_forward"``)."""
        return parse_code(cls, value, "channel")


_UNITS = {
    Channel.ACTIVE_FORWARD: "kWh",
    Channel.ACTIVE_REVERSE: "kWh",
    Channel.REACTIVE: "kvarh",
    Channel.VOLTAGE: "V",
    Channel.DIFFERENCE_FORWARD: "kWh",
}

METERED_CHANNELS = tuple(c for c in Channel if c.metered)

VOLTAGE_SCALE = 10  # voltage is stored in 0.1 V steps [dV]
