"""How the simulated customer types map onto meter classes and contracts."""

from __future__ import annotations

from kenshin.core.customers import CustomerType
from kenshin.core.meterspec import MeterClass

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

HOUSEHOLD_AMPERE_WEIGHTS = (0.01, 0.02, 0.06, 0.28, 0.33, 0.16, 0.10, 0.02, 0.015, 0.005)
SHOP_AMPERE_WEIGHTS = (0.0, 0.0, 0.02, 0.15, 0.25, 0.25, 0.25, 0.04, 0.03, 0.01)
