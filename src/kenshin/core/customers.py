"""Customer types and contract steps: vocabulary shared by the head-end, the API and the fleet."""

from __future__ import annotations

from enum import IntEnum

from kenshin.core.codes import parse_code


class CustomerType(IntEnum):
    HOUSEHOLD_DETACHED = 1  # 戸建: the only type with rooftop PV in the model
    HOUSEHOLD_APARTMENT = 2  # 集合住宅
    SHOP_OFFICE = 3  # 低圧電灯 shops and small offices
    LV_POWER = 4  # 低圧電力: three-phase motors, small workshops
    HV_BUILDING = 5  # 高圧 office buildings, schools, supermarkets
    HV_FACTORY = 6  # 高圧 factories
    EHV_FACTORY = 7  # 特別高圧 large plants

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def is_household(self) -> bool:
        return self in (CustomerType.HOUSEHOLD_DETACHED, CustomerType.HOUSEHOLD_APARTMENT)

    @classmethod
    def parse(cls, value: int | str) -> CustomerType:
        return parse_code(cls, value, "customer type")


# Ampere contracts (SPEC "Facts"): 10–60 A on any meter; 80–120 A need a gen-2 meter.
AMPERE_STEPS_A = (10, 15, 20, 30, 40, 50, 60, 80, 100, 120)
