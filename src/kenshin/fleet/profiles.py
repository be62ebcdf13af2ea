"""Daily routines of the load model: hourly shapes, day types and the constants they are tuned with.

Data, not logic: the tables that :mod:`kenshin.fleet.load` turns into per-minute load. Shapes are
hourly means for weekdays, Saturdays and Sundays/holidays (Japanese public holidays from the
``holidays`` package, plus year-end/New Year and Obon for businesses).
"""

from __future__ import annotations

import datetime as dt
import functools
from enum import IntEnum

import holidays
import numpy as np

from kenshin.core.customers import CustomerType
from kenshin.core.ids import Area


class Kind(IntEnum):
    """Daily routines; each customer type is a mix of them (``KIND_MIX``)."""

    COMMUTER = 0  # household out on weekdays: morning and evening peaks
    AT_HOME = 1  # someone home all day (elderly, small children)
    SINGLE = 2  # one person in an apartment: out all day, late evening
    SHOP = 3  # retail / restaurant, open every day
    OFFICE = 4  # small office, weekdays
    WORKSHOP = 5  # three-phase motors, weekdays
    BUILDING = 6  # HV office building or school
    STORE = 7  # HV supermarket / commercial, open every day
    FACTORY_DAY = 8  # two shifts on weekdays
    FACTORY_24H = 9  # continuous process, a little lower at weekends
    PLANT = 10  # EHV plant, near flat


class DayType(IntEnum):
    WEEKDAY = 0
    SATURDAY = 1
    HOLIDAY = 2  # Sunday, public holiday, Dec 29 – Jan 3, Obon Aug 13–16


# Hourly shapes (mean of hour h), rows WEEKDAY, SATURDAY, HOLIDAY; normalized so weekdays average 1.
HourlyShape = list[float]
SHAPES: dict[Kind, tuple[HourlyShape, HourlyShape, HourlyShape]] = {
    Kind.COMMUTER: (
        [.55, .45, .40, .38, .38, .45, .85, 1.15, .80, .55, .50, .50,
         .55, .50, .50, .55, .70, 1.0, 1.45, 1.7, 1.7, 1.55, 1.25, .85],
        [.60, .50, .42, .40, .40, .42, .55, .80, 1.0, 1.05, 1.0, 1.05,
         1.1, .95, .90, .90, 1.0, 1.15, 1.45, 1.65, 1.65, 1.5, 1.25, .90],
        [.60, .50, .42, .40, .40, .42, .52, .75, .95, 1.05, 1.05, 1.1,
         1.15, 1.0, .95, .95, 1.0, 1.2, 1.5, 1.65, 1.6, 1.45, 1.2, .85],
    ),
    Kind.AT_HOME: (
        [.55, .45, .42, .40, .40, .48, .80, 1.1, 1.05, .95, .90, .95,
         1.05, .95, .90, .90, 1.0, 1.2, 1.45, 1.55, 1.45, 1.3, 1.05, .75],
        [.55, .45, .42, .40, .40, .46, .72, 1.0, 1.05, 1.0, .95, 1.0,
         1.1, 1.0, .95, .95, 1.05, 1.2, 1.45, 1.55, 1.45, 1.3, 1.05, .75],
        [.55, .45, .42, .40, .40, .45, .68, .95, 1.05, 1.05, 1.0, 1.05,
         1.15, 1.0, .95, .95, 1.05, 1.25, 1.5, 1.55, 1.45, 1.3, 1.05, .75],
    ),
    Kind.SINGLE: (
        [.75, .60, .45, .40, .38, .38, .50, .85, .60, .35, .33, .33,
         .33, .33, .33, .35, .38, .45, .65, .95, 1.35, 1.65, 1.7, 1.3],
        [.90, .75, .55, .45, .40, .38, .40, .50, .70, .95, 1.05, 1.05,
         1.0, .90, .85, .85, .90, 1.0, 1.15, 1.3, 1.45, 1.5, 1.45, 1.2],
        [.90, .75, .55, .45, .40, .38, .40, .50, .70, .95, 1.05, 1.05,
         1.0, .90, .85, .85, .90, 1.0, 1.15, 1.3, 1.45, 1.5, 1.4, 1.1],
    ),
    Kind.SHOP: (
        [.35, .33, .33, .33, .33, .33, .35, .45, .70, 1.1, 1.55, 1.7,
         1.75, 1.7, 1.65, 1.65, 1.65, 1.7, 1.75, 1.7, 1.5, 1.1, .55, .40],
        [.35, .33, .33, .33, .33, .33, .35, .45, .70, 1.15, 1.6, 1.8,
         1.85, 1.8, 1.75, 1.75, 1.75, 1.8, 1.8, 1.7, 1.5, 1.1, .55, .40],
        [.35, .33, .33, .33, .33, .33, .35, .42, .65, 1.1, 1.55, 1.75,
         1.8, 1.75, 1.7, 1.7, 1.7, 1.7, 1.7, 1.6, 1.4, 1.0, .50, .38],
    ),
    Kind.OFFICE: (
        [.30, .30, .30, .30, .30, .30, .32, .50, 1.2, 1.85, 1.95, 1.95,
         1.7, 1.9, 1.95, 1.9, 1.85, 1.6, 1.1, .75, .55, .40, .35, .32],
        [.30, .30, .30, .30, .30, .30, .30, .35, .50, .70, .75, .75,
         .60, .55, .50, .45, .40, .35, .32, .30, .30, .30, .30, .30],
        [.30] * 24,
    ),
    Kind.WORKSHOP: (
        [.20, .20, .20, .20, .20, .20, .25, .80, 1.8, 2.0, 2.0, 2.0,
         1.3, 2.0, 2.0, 2.0, 1.9, 1.3, .60, .35, .25, .20, .20, .20],
        [.20, .20, .20, .20, .20, .20, .22, .50, .90, 1.0, 1.0, 1.0,
         .70, .60, .55, .50, .45, .30, .25, .20, .20, .20, .20, .20],
        [.20] * 24,
    ),
    Kind.BUILDING: (
        [.35, .33, .33, .33, .33, .35, .45, .80, 1.35, 1.6, 1.65, 1.65,
         1.5, 1.6, 1.65, 1.6, 1.5, 1.3, 1.0, .80, .65, .50, .42, .38],
        [.35, .33, .33, .33, .33, .34, .38, .50, .65, .70, .70, .70,
         .65, .62, .60, .58, .55, .50, .45, .42, .40, .38, .36, .35],
        [.34] * 24,
    ),
    Kind.STORE: (
        [.50, .48, .47, .47, .47, .50, .60, .85, 1.2, 1.4, 1.45, 1.5,
         1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.45, 1.4, 1.3, 1.05, .70, .55],
        [.50, .48, .47, .47, .47, .50, .60, .85, 1.2, 1.45, 1.5, 1.55,
         1.55, 1.55, 1.55, 1.55, 1.55, 1.5, 1.45, 1.4, 1.3, 1.05, .70, .55],
        [.50, .48, .47, .47, .47, .50, .60, .85, 1.2, 1.45, 1.5, 1.55,
         1.55, 1.55, 1.55, 1.55, 1.5, 1.45, 1.4, 1.35, 1.25, 1.0, .70, .55],
    ),
    Kind.FACTORY_DAY: (
        [.35, .33, .33, .33, .33, .35, .50, 1.0, 1.45, 1.5, 1.5, 1.5,
         1.2, 1.5, 1.5, 1.5, 1.5, 1.45, 1.3, 1.3, 1.3, 1.2, .80, .45],
        [.33, .32, .32, .32, .32, .33, .38, .50, .60, .62, .62, .62,
         .55, .60, .60, .60, .55, .45, .40, .38, .36, .35, .34, .33],
        [.30] * 24,
    ),
    Kind.FACTORY_24H: (
        [.95, .95, .94, .94, .94, .95, .97, 1.0, 1.05, 1.06, 1.06, 1.06,
         1.02, 1.06, 1.06, 1.06, 1.05, 1.03, 1.0, .98, .97, .96, .96, .95],
        [.90] * 24,
        [.80] * 24,
    ),
    Kind.PLANT: (
        [.97, .97, .97, .97, .97, .97, .98, 1.0, 1.02, 1.03, 1.03, 1.03,
         1.01, 1.03, 1.03, 1.03, 1.02, 1.01, 1.0, .99, .98, .98, .97, .97],
        [.94] * 24,
        [.92] * 24,
    ),
}  # fmt: skip

# When a household runs heating or cooling (relative use by hour): (weekday, weekend/holiday).
HOUSEHOLD_OCCUPANCY: dict[Kind, tuple[HourlyShape, HourlyShape]] = {
    Kind.COMMUTER: (
        [.50, .45, .40, .40, .40, .50, .80, .85, .40, .20, .20, .20,
         .20, .20, .20, .25, .35, .60, .90, 1.0, 1.0, 1.0, .90, .70],
        [.50, .45, .40, .40, .40, .45, .60, .80, .85, .80, .80, .80,
         .85, .80, .80, .80, .85, .90, 1.0, 1.0, 1.0, 1.0, .90, .70],
    ),
    Kind.AT_HOME: (
        [.50, .45, .40, .40, .40, .50, .80, .90, .85, .80, .80, .80,
         .85, .85, .85, .85, .90, .95, 1.0, 1.0, 1.0, .95, .85, .65],
        [.50, .45, .40, .40, .40, .50, .75, .90, .90, .85, .85, .85,
         .90, .85, .85, .85, .90, .95, 1.0, 1.0, 1.0, .95, .85, .65],
    ),
    Kind.SINGLE: (
        [.55, .50, .45, .45, .45, .45, .55, .55, .20, .05, .05, .05,
         .05, .05, .05, .05, .05, .10, .25, .60, .90, 1.0, 1.0, .80],
        [.60, .55, .50, .45, .45, .45, .45, .50, .65, .70, .65, .60,
         .55, .50, .50, .50, .55, .65, .75, .85, .95, 1.0, 1.0, .80],
    ),
}  # fmt: skip

HOUSEHOLD_KINDS = (Kind.COMMUTER, Kind.AT_HOME, Kind.SINGLE)

# Heating below / cooling above [°C] (SPEC brief: heating below ~16–18 °C, cooling above ~24 °C);
# businesses switch earlier because of internal gains from people, lights and machines.
HOUSEHOLD_HEATING_BELOW_C = 16.0
HOUSEHOLD_COOLING_ABOVE_C = 24.0
BUSINESS_HEATING_BELOW_C = 14.0
BUSINESS_COOLING_ABOVE_C = 22.0

# (kind, probability) per customer type
KIND_MIX: dict[CustomerType, tuple[tuple[Kind, float], ...]] = {
    CustomerType.HOUSEHOLD_DETACHED: ((Kind.COMMUTER, 0.5), (Kind.AT_HOME, 0.5)),
    CustomerType.HOUSEHOLD_APARTMENT: (
        (Kind.COMMUTER, 0.4),
        (Kind.AT_HOME, 0.25),
        (Kind.SINGLE, 0.35),
    ),
    CustomerType.SHOP_OFFICE: ((Kind.SHOP, 0.55), (Kind.OFFICE, 0.45)),
    CustomerType.LV_POWER: ((Kind.WORKSHOP, 0.7), (Kind.SHOP, 0.3)),
    CustomerType.HV_BUILDING: ((Kind.BUILDING, 0.6), (Kind.STORE, 0.4)),
    CustomerType.HV_FACTORY: ((Kind.FACTORY_DAY, 0.65), (Kind.FACTORY_24H, 0.35)),
    CustomerType.EHV_FACTORY: ((Kind.PLANT, 0.5), (Kind.FACTORY_24H, 0.3), (Kind.FACTORY_DAY, 0.2)),
}

# Households: median annual mean power of a 40 A household [W], before the type factor.
HOUSEHOLD_MEDIAN_W = 330.0
HOUSEHOLD_SPREAD_SIGMA = 0.42  # lognormal sigma of a household's consumption at a given contract
HOUSEHOLD_TYPE_FACTOR = {
    CustomerType.HOUSEHOLD_DETACHED: 1.12,
    CustomerType.HOUSEHOLD_APARTMENT: 0.78,
}
HEATING_W_PER_C = 22.0  # median household heating sensitivity at 40 A [W/°C]
ALL_ELECTRIC_HEATING_FACTOR = 3.0  # heat pumps and storage heaters instead of gas/kerosene
COOLING_W_PER_C = 42.0  # median household cooling sensitivity at 40 A [W/°C]
EVENTS_PER_DAY = 6.0  # appliance bursts of a 40 A household
NO_CONTRACT_LIMIT_W = 10_000.0  # households on minimum-charge contracts (no breaker)

# Load factor (mean / contract) ranges and HVAC sensitivity (share of mean power per °C).
LOAD_FACTOR: dict[Kind, tuple[float, float]] = {
    Kind.SHOP: (0.12, 0.24),
    Kind.OFFICE: (0.10, 0.20),
    Kind.WORKSHOP: (0.20, 0.35),
    Kind.BUILDING: (0.30, 0.45),
    Kind.STORE: (0.40, 0.55),
    Kind.FACTORY_DAY: (0.35, 0.50),
    Kind.FACTORY_24H: (0.55, 0.75),
    Kind.PLANT: (0.60, 0.80),
}
HVAC_SHARE_PER_C: dict[Kind, tuple[float, float]] = {  # (heating, cooling)
    Kind.SHOP: (0.015, 0.035),
    Kind.OFFICE: (0.02, 0.04),
    Kind.WORKSHOP: (0.01, 0.015),
    Kind.BUILDING: (0.02, 0.045),
    Kind.STORE: (0.01, 0.03),
    Kind.FACTORY_DAY: (0.006, 0.012),
    Kind.FACTORY_24H: (0.004, 0.008),
    Kind.PLANT: (0.002, 0.004),
}
# Power factor ranges by customer type (reactive = P · tan(acos(pf))).
POWER_FACTOR: dict[CustomerType, tuple[float, float]] = {
    CustomerType.HOUSEHOLD_DETACHED: (0.95, 0.99),
    CustomerType.HOUSEHOLD_APARTMENT: (0.95, 0.99),
    CustomerType.SHOP_OFFICE: (0.90, 0.95),
    CustomerType.LV_POWER: (0.80, 0.90),
    CustomerType.HV_BUILDING: (0.90, 0.97),
    CustomerType.HV_FACTORY: (0.90, 0.97),
    CustomerType.EHV_FACTORY: (0.93, 0.98),
}
# AR(1) noise: standard deviation and correlation time [min]
NOISE_SIGMA: dict[CustomerType, float] = {
    CustomerType.HOUSEHOLD_DETACHED: 0.25,
    CustomerType.HOUSEHOLD_APARTMENT: 0.25,
    CustomerType.SHOP_OFFICE: 0.12,
    CustomerType.LV_POWER: 0.20,
    CustomerType.HV_BUILDING: 0.06,
    CustomerType.HV_FACTORY: 0.08,
    CustomerType.EHV_FACTORY: 0.04,
}
NOISE_TIME_MIN = 45.0
SHIFTS_MIN = np.arange(-60, 61, 15)  # routine offsets
# Appliance bursts: (power low, high [W], duration low, high [min], share of events)
APPLIANCES = np.array(
    [
        (1000, 1300, 2, 5, 0.28),  # electric kettle / pot
        (1000, 1500, 1, 5, 0.26),  # microwave
        (1400, 3000, 5, 25, 0.20),  # IH cooker
        (600, 1200, 3, 10, 0.16),  # hair dryer
        (800, 1400, 30, 90, 0.05),  # washer-dryer heater
        (500, 1000, 5, 20, 0.05),  # vacuum cleaner
    ]
)
REFERENCE_AREA = Area.TOKYO  # HVAC energy is calibrated here; colder areas then use more


@functools.lru_cache(maxsize=8)
def _public_holidays(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.country_holidays("JP", years=year))


def day_type(day: dt.date) -> DayType:
    """Weekday, Saturday or holiday-like (Sunday, public holiday, year-end/New Year, Obon)."""
    if (
        day.weekday() == 6
        or day in _public_holidays(day.year)
        or (day.month == 12 and day.day >= 29)
        or (day.month == 1 and day.day <= 3)
        or (day.month == 8 and 13 <= day.day <= 16)
    ):
        return DayType.HOLIDAY
    return DayType.SATURDAY if day.weekday() == 5 else DayType.WEEKDAY
