"""Customer types and how they map onto meter classes and contracts."""

from __future__ import annotations

from enum import IntEnum

from kenshin.core.codes import parse_code
from kenshin.core.meterspec import MeterClass


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


# Share of customers by type (counts, not energy); roughly a Japanese urban-suburban area.
DEFAULT_MIX: dict[CustomerType, float] = {
    CustomerType.HOUSEHOLD_DETACHED: 0.52,
    CustomerType.HOUSEHOLD_APARTMENT: 0.35,
    CustomerType.SHOP_OFFICE: 0.075,
    CustomerType.LV_POWER: 0.04,
    CustomerType.HV_BUILDING: 0.0104,
    CustomerType.HV_FACTORY: 0.0045,
    CustomerType.EHV_FACTORY: 0.0001,  # about ten thousand in all Japan
}

# (meter class, probability) per customer type
METER_CLASS_CHOICES: dict[CustomerType, tuple[tuple[MeterClass, float], ...]] = {
    CustomerType.HOUSEHOLD_DETACHED: ((MeterClass.LV_1P3W, 0.92), (MeterClass.LV_1P2W, 0.08)),
    CustomerType.HOUSEHOLD_APARTMENT: ((MeterClass.LV_1P3W, 0.7), (MeterClass.LV_1P2W, 0.3)),
    CustomerType.SHOP_OFFICE: ((MeterClass.LV_1P3W, 0.85), (MeterClass.LV_1P2W, 0.15)),
    CustomerType.LV_POWER: ((MeterClass.LV_3P3W, 1.0),),
    CustomerType.HV_BUILDING: ((MeterClass.HV, 1.0),),
    CustomerType.HV_FACTORY: ((MeterClass.HV, 1.0),),
    CustomerType.EHV_FACTORY: ((MeterClass.EHV, 1.0),),
}

# Ampere contracts (SPEC "Facts"): 10–60 A on any meter; 80–120 A need a gen-2 meter.
AMPERE_STEPS_A = (10, 15, 20, 30, 40, 50, 60, 80, 100, 120)
HOUSEHOLD_AMPERE_WEIGHTS = (0.01, 0.02, 0.06, 0.28, 0.33, 0.16, 0.10, 0.02, 0.015, 0.005)
SHOP_AMPERE_WEIGHTS = (0.0, 0.0, 0.02, 0.15, 0.25, 0.25, 0.25, 0.04, 0.03, 0.01)
