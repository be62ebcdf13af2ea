"""What each meter generation and class records, keeps and can do (SPEC M1–M7, A1).

The table is data, so docs and the API can print it. Retention of 30/15-min and 5-min values on a
next-generation meter is "as long as needed" in the report (M4); the defaults here are settings a
utility may override with :func:`meter_spec`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import IntEnum

from kenshin.core.channels import Channel
from kenshin.core.registers import RegisterSpec
from kenshin.core.timeslots import Resolution


class Generation(IntEnum):
    GEN1 = 1  # first generation, installed 2014–2024 (M3)
    GEN2 = 2  # next generation, from 2025 (M1, M2)


class MeterClass(IntEnum):
    LV_1P2W = 1  # 低圧 single-phase 2-wire (100 V)
    LV_1P3W = 2  # 低圧 single-phase 3-wire (100/200 V): most households
    LV_3P3W = 3  # 低圧電力 three-phase 3-wire (200 V): shops' motors, small factories
    HV = 4  # 高圧 (6.6 kV)
    EHV = 5  # 特別高圧 (20 kV and above)

    @property
    def is_low_voltage(self) -> bool:
        return self <= MeterClass.LV_3P3W

    @property
    def label(self) -> str:
        return self.name.lower()


class BRouteMedium(IntEnum):
    WISUN = 1  # 1:1 pairing (B1)
    WIFI = 2  # 2.4 GHz, several devices (B1)
    ETHERNET = 3  # wired, several devices (B2)


A = Channel.ACTIVE_FORWARD
R = Channel.ACTIVE_REVERSE
Q = Channel.REACTIVE
V = Channel.VOLTAGE

DEFAULT_RETENTION_30_15 = dt.timedelta(days=45)  # gen-1 figure, kept as the default (M3, M4)
DEFAULT_RETENTION_5 = dt.timedelta(days=10)  # M4: "long enough to move to the server"
ONE_MINUTE_RETENTION = dt.timedelta(minutes=60)  # B3, fixed


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """Capabilities of one generation × class of meter."""

    generation: Generation
    meter_class: MeterClass
    channels: dict[Resolution, tuple[Channel, ...]]  # what the meter records at each resolution
    retention: dict[Resolution, dt.timedelta]  # how long the meter keeps it
    aroute_deadline: dt.timedelta  # A1: 30-min values at the HES this long after the slot end
    broute_media: tuple[BRouteMedium, ...]  # primary first (B1, B2, M7)
    has_switch: bool  # built-in switch: remote open/close and ampere limit (M6, R5)
    max_ampere_limit_a: int | None  # highest remote ampere limit, None without switch [A]
    echonet_class: int  # ECHONET Lite class code (0x0288 LV, 0x028A HV)
    nominal_voltage_v: int | None  # voltage the 5-min voltage channel refers to [V]
    register: RegisterSpec

    def records(self, channel: Channel, resolution: Resolution) -> bool:
        return channel in self.channels.get(resolution, ())

    @property
    def resolutions(self) -> tuple[Resolution, ...]:
        return tuple(sorted(self.channels))


def _lv(generation: Generation, meter_class: MeterClass) -> MeterSpec:
    three_phase = meter_class is MeterClass.LV_3P3W
    if generation is Generation.GEN1:
        channels: dict[Resolution, tuple[Channel, ...]] = {Resolution.MIN30: (A, R)}
        retention = {Resolution.MIN30: DEFAULT_RETENTION_30_15}
        media: tuple[BRouteMedium, ...] = (BRouteMedium.WISUN,)
        max_limit = None if three_phase else 60  # M3: single-phase up to 60 A
    else:
        channels = {
            Resolution.MIN30: (A, R),
            Resolution.MIN15: (A, R),
            Resolution.MIN5: (A, R, Q, V),
            Resolution.MIN1: (A,),
        }
        retention = {
            Resolution.MIN30: DEFAULT_RETENTION_30_15,
            Resolution.MIN15: DEFAULT_RETENTION_30_15,
            Resolution.MIN5: DEFAULT_RETENTION_5,
            Resolution.MIN1: ONE_MINUTE_RETENTION,
        }
        media = (BRouteMedium.WISUN, BRouteMedium.WIFI)
        max_limit = None if three_phase else 120  # M6: single-phase up to 120 A
    return MeterSpec(
        generation=generation,
        meter_class=meter_class,
        channels=channels,
        retention=retention,
        aroute_deadline=dt.timedelta(minutes=60),  # A1 (LV)
        broute_media=media,
        has_switch=not three_phase,
        max_ampere_limit_a=max_limit,
        echonet_class=0x0288,
        nominal_voltage_v=200 if three_phase else 100,
        register=RegisterSpec(unit_exponent=-1 if three_phase else -2),
    )


def _hv(generation: Generation, meter_class: MeterClass) -> MeterSpec:
    if generation is Generation.GEN1:
        channels: dict[Resolution, tuple[Channel, ...]] = {Resolution.MIN30: (A, R, Q)}
        retention = {Resolution.MIN30: DEFAULT_RETENTION_30_15}
        media: tuple[BRouteMedium, ...] = (BRouteMedium.ETHERNET,)
    else:
        channels = {
            Resolution.MIN30: (A, R, Q),
            Resolution.MIN15: (A, R),
            Resolution.MIN5: (A, R, Q),  # M2: no voltage on HV
            Resolution.MIN1: (A,),
        }
        retention = {
            Resolution.MIN30: DEFAULT_RETENTION_30_15,
            Resolution.MIN15: DEFAULT_RETENTION_30_15,
            Resolution.MIN5: DEFAULT_RETENTION_5,
            Resolution.MIN1: ONE_MINUTE_RETENTION,
        }
        media = (BRouteMedium.ETHERNET, BRouteMedium.WISUN)
    return MeterSpec(
        generation=generation,
        meter_class=meter_class,
        channels=channels,
        retention=retention,
        aroute_deadline=dt.timedelta(minutes=30),  # A1 (HV)
        broute_media=media,
        has_switch=False,  # M2, R5
        max_ampere_limit_a=None,
        echonet_class=0x028A,
        nominal_voltage_v=None,
        # HV meters count through instrument transformers: the coefficient is the multiplier
        register=RegisterSpec(
            unit_exponent=-2, coefficient=10 if meter_class is MeterClass.HV else 100
        ),
    )


SPEC_TABLE: dict[tuple[Generation, MeterClass], MeterSpec] = {
    (g, c): (_lv(g, c) if c.is_low_voltage else _hv(g, c)) for g in Generation for c in MeterClass
}


def meter_spec(
    generation: Generation,
    meter_class: MeterClass,
    *,
    retention_30_15: dt.timedelta | None = None,
    retention_5: dt.timedelta | None = None,
) -> MeterSpec:
    """The spec for ``generation`` × ``meter_class``, with a utility's own retention (M4).

    Only next-generation retention can be changed; gen-1 keeps 45 days (M3).
    """
    spec = SPEC_TABLE[(generation, meter_class)]
    if generation is Generation.GEN1 or (retention_30_15 is None and retention_5 is None):
        return spec
    retention = dict(spec.retention)
    for resolution, value in (
        (Resolution.MIN30, retention_30_15),
        (Resolution.MIN15, retention_30_15),
        (Resolution.MIN5, retention_5),
    ):
        if value is not None:
            if value <= dt.timedelta(0):
                raise ValueError(f"retention must be positive, got {value}")
            retention[resolution] = value
    return replace(spec, retention=retention)
