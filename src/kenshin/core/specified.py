"""Specified meters (特例計量器, SPEC S3): sub-meters behind a smart meter, such as EV chargers
and PV inverters, that the 特定計量制度 (April 2022) lets count energy for billing.

Each has its own meter key (not on the smart-meter roster), the key of its parent smart meter and
a kind. What it counts is its ``ACTIVE_FORWARD`` channel (the charger's consumption, or the
inverter's generation), in the parent's register units.
"""

from __future__ import annotations

from enum import IntEnum

import pyarrow as pa

from kenshin.core.codes import parse_code


class SpecifiedKind(IntEnum):
    EV_CHARGER = 1  # counts what the charger draws: part of the parent's forward energy
    PV_INVERTER = 2  # counts what the inverter generates: self-consumed or exported

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: int | str) -> SpecifiedKind:
        return parse_code(cls, value, "specified-meter kind")


SPECIFIED_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),  # the sub-meter's own key
        ("parent_key", pa.int32()),  # the smart meter it sits behind
        ("kind", pa.uint8()),  # SpecifiedKind
        ("device_id", pa.int64()),  # its address on the IoT route
    ]
)
