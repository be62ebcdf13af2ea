"""Supply point ids (供給地点特定番号) and the ten utility areas.

A supply point id is 22 decimal digits; the first two name the general transmission and
distribution utility's area, 01 Hokkaido … 10 Okinawa (SPEC "Facts", M7). The remaining 20 digits
are assigned by the utility; kenshin checks only what the specification fixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from kenshin.errors import InvalidSupplyPointId

SUPPLY_POINT_ID_LENGTH = 22


class Area(IntEnum):
    """The ten utility areas and their code (the first two digits of a supply point id)."""

    HOKKAIDO = 1
    TOHOKU = 2
    TOKYO = 3
    CHUBU = 4
    HOKURIKU = 5
    KANSAI = 6
    CHUGOKU = 7
    SHIKOKU = 8
    KYUSHU = 9
    OKINAWA = 10

    @property
    def code(self) -> str:
        return f"{int(self):02d}"

    @classmethod
    def parse(cls, value: int | str) -> Area:
        """Accept ``3``, ``"03"`` or ``"tokyo"``."""
        text = str(value).strip()
        if text.isdigit() and 1 <= int(text) <= 10:
            return cls(int(text))
        try:
            return cls[text.upper()]
        except KeyError:
            names = ", ".join(f"{a.code} {a.name.lower()}" for a in cls)
            raise ValueError(f"unknown area {value!r}; areas are {names}") from None


@dataclass(frozen=True, slots=True)
class AreaSite:
    """A representative location for an area's weather and sun [degrees]."""

    latitude: float
    longitude: float
    mean_temp_c: float  # annual mean [°C]
    temp_amplitude_c: float  # half the difference between August and January means [°C]


AREA_SITES: dict[Area, AreaSite] = {
    Area.HOKKAIDO: AreaSite(43.06, 141.35, 9.2, 12.5),
    Area.TOHOKU: AreaSite(38.27, 140.87, 12.8, 11.0),
    Area.TOKYO: AreaSite(35.68, 139.77, 15.8, 10.5),
    Area.CHUBU: AreaSite(35.18, 136.91, 16.2, 11.3),
    Area.HOKURIKU: AreaSite(36.56, 136.65, 15.0, 11.0),
    Area.KANSAI: AreaSite(34.69, 135.50, 16.9, 11.2),
    Area.CHUGOKU: AreaSite(34.40, 132.46, 16.5, 11.0),
    Area.SHIKOKU: AreaSite(34.34, 134.05, 16.7, 11.0),
    Area.KYUSHU: AreaSite(33.59, 130.40, 17.3, 10.3),
    Area.OKINAWA: AreaSite(26.21, 127.68, 23.1, 5.8),
}


def validate_supply_point_id(value: object) -> str:
    """Return ``value`` if it is a valid supply point id, else raise with what is wrong."""
    if not isinstance(value, str):
        raise InvalidSupplyPointId(
            f"supply point id must be a string of {SUPPLY_POINT_ID_LENGTH} digits, "
            f"got {type(value).__name__}"
        )
    if len(value) != SUPPLY_POINT_ID_LENGTH:
        raise InvalidSupplyPointId(
            f"supply point id must have {SUPPLY_POINT_ID_LENGTH} digits, "
            f"got {len(value)} in {value!r}"
        )
    for position, char in enumerate(value, start=1):
        if not ("0" <= char <= "9"):
            raise InvalidSupplyPointId(
                f"supply point id must be digits only; {char!r} at position {position} of {value!r}"
            )
    area = int(value[:2])
    if not 1 <= area <= 10:
        raise InvalidSupplyPointId(
            f"supply point id starts with area code {value[:2]!r}; area codes are 01–10"
        )
    return value


def area_of(supply_point_id: str) -> Area:
    """The area a (valid) supply point id belongs to."""
    return Area(int(validate_supply_point_id(supply_point_id)[:2]))


def make_supply_point_ids(area: Area, serials: npt.NDArray[np.int64], prefix: int = 0) -> list[str]:
    """Synthetic ids: area code, 6-digit utility ``prefix`` (office/system), 14-digit serial."""
    if not 0 <= prefix < 10**6:
        raise ValueError("prefix must have at most 6 digits")
    if len(serials) and (serials.min() < 0 or serials.max() >= 10**14):
        raise ValueError("serials must have at most 14 digits")
    head = f"{area.code}{prefix:06d}"
    return [f"{head}{int(s):014d}" for s in serials]
