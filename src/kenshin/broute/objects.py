"""The ECHONET Lite objects of one simulated meter node: property values (SPEC B1–B3, M1, M2).

* :class:`NodeProfile` — 0x0EF001.
* :class:`LvMeterObject` — low-voltage smart electric energy meter 0x0288 (SPEC B1, M1).
* :class:`HvMeterObject` — high-voltage smart electric energy meter 0x028A (SPEC B2, M2) plus
  the kenshin 1-minute extension :data:`HV_EXTENSION` (SPEC M2/B3; Release R has no 1-minute
  property for 0x028A, so it lives in the manufacturer-specific range 0xF0–0xFF).

Each object answers ``get(epc)`` with an EDT (``None``: not available) and ``set(epc, edt)``
with ``True``/``False``. Values come from a :class:`~kenshin.broute.state.FleetState` at the
fleet's current simulated time. Nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from kenshin.broute import edt as enc
from kenshin.broute.echonet import EOJ, encode_property_map
from kenshin.broute.properties import (
    HV_SMART_METER,
    LV_SMART_METER,
    NODE_PROFILE,
    PropertySpec,
    SizeRange,
    property_maps,
    rule,
)
from kenshin.broute.state import FleetState, MeterInfo
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.timeslots import US_PER_MINUTE, Resolution, from_epoch_us, jst_midnight

MAKER_CODE = 0xFFFFFF  # no registered ECHONET maker: a simulator
STANDARD_VERSION = b"\x00\x00R\x00"  # superclass 0x82: Appendix Release R
LITE_VERSION = b"\x01\x0e\x01\x00"  # node profile 0x82: ECHONET Lite 1.14, format 1
EFFECTIVE_DIGITS = 8  # SPEC M5: 8-digit registers
READING_DAY = 1  # 0x028A 0xE0: fixed meter-reading day of the month
HISTORY_SLOTS = 48
MAX_HISTORY_DAY = 99
UNSET_DAY = 0xFF  # MRA default of 0xE5 (0x0288) and 0xE1 (0x028A): no day chosen yet
UNSET_HISTORY_REQUEST = b"\xff\xff\xff\xff\xff\xff\x01"  # MRA default of 0xED / 0xEF
MAX_SEGMENTS_30 = 12  # 0xEC/0xED
MAX_SEGMENTS_1 = 10  # 0xEE/0xEF
_US_30 = Resolution.MIN30.microseconds

Getter = Callable[[], bytes | None]
Setter = Callable[[bytes], bool]

# kenshin extension of 0x028A: 1-minute values and instantaneous values (SPEC M2, B3)
HV_EXTENSION: Mapping[int, PropertySpec] = MappingProxyType(
    {
        0xF0: PropertySpec(
            0xF0,
            "kenshin: latest 1-minute cumulative active energy (as 0x0288 0xD0)",
            15,
            rule("opt"),
        ),
        0xF1: PropertySpec(
            0xF1,
            "kenshin: cumulative active energy history 3, 1-minute (as 0x0288 0xEE)",
            SizeRange(15, 87, 8),
            rule("opt"),
        ),
        0xF2: PropertySpec(
            0xF2, "kenshin: date-time and count for 0xF1 (as 0x0288 0xEF)", 7, rule("opt", "opt")
        ),
        0xF7: PropertySpec(0xF7, "kenshin: instantaneous active power (s32 W)", 4, rule("opt")),
        0xF8: PropertySpec(
            0xF8, "kenshin: instantaneous line currents (R, T: s16, 0.1 A)", 4, rule("opt")
        ),
    }
)
ONE_MINUTE_EPCS_LV = frozenset({0xD0, 0xEE, 0xEF})
HV_OMITTED = frozenset({0xC2, 0xC7})  # optional cumulative maximum demand: not simulated


class EchonetObject:
    """One object: its EOJ, implemented properties, maps and value functions."""

    def __init__(self, eoj: EOJ, table: Mapping[int, PropertySpec]) -> None:
        self.eoj = eoj
        self.table = table
        self.anno_map, self.set_map, self.get_map = property_maps(table)
        self._maps = {
            0x9D: encode_property_map(self.anno_map),
            0x9E: encode_property_map(self.set_map),
            0x9F: encode_property_map(self.get_map),
        }
        self._getters: dict[int, Getter] = {}
        self._setters: dict[int, Setter] = {}

    def get(self, epc: int) -> bytes | None:
        """The EDT of ``epc``, or ``None`` if this object does not give it."""
        if epc not in self.get_map:
            return None
        if epc in self._maps:
            return self._maps[epc]
        getter = self._getters.get(epc)
        return None if getter is None else getter()

    def set(self, epc: int, edt: bytes) -> bool:
        """Apply a Set; ``False`` (SNA) for an EPC not in the Set map, a bad size or value."""
        spec = self.table.get(epc)
        setter = self._setters.get(epc)
        if epc not in self.set_map or spec is None or setter is None:
            return False
        return spec.accepts_size(len(edt)) and setter(edt)


class NodeProfile(EchonetObject):
    """Node profile 0x0EF001 of a node holding ``devices`` (SPEC B1)."""

    def __init__(self, identification: bytes, devices: Sequence[EOJ]) -> None:
        super().__init__(EOJ.node_profile(), NODE_PROFILE)
        instances = bytes((len(devices),)) + b"".join(bytes(e) for e in devices)
        classes = sorted({e.class_id for e in devices})
        self.devices = tuple(devices)
        self.operating = True
        self._getters.update(
            {
                0x80: lambda: b"\x30" if self.operating else b"\x31",
                0x82: lambda: LITE_VERSION,
                0x83: lambda: identification,
                0x8A: lambda: MAKER_CODE.to_bytes(3, "big"),
                0xD3: lambda: len(devices).to_bytes(3, "big"),
                0xD4: lambda: (len(classes) + 1).to_bytes(2, "big"),  # + the node profile
                0xD5: lambda: instances,
                0xD6: lambda: instances,
                0xD7: lambda: bytes((len(classes),)) + b"".join(enc.u16(c) for c in classes),
            }
        )


class MeterObject(EchonetObject):
    """Superclass behaviour shared by 0x0288 and 0x028A meters (SPEC B1, B2)."""

    def __init__(
        self, eoj: EOJ, table: Mapping[int, PropertySpec], state: FleetState, info: MeterInfo
    ) -> None:
        super().__init__(eoj, table)
        self.state = state
        self.info = info
        self.key = info.key
        self.location = b"\x00"  # 0x81: not set
        self.unit_code = enc.UNIT_CODE_BY_EXPONENT[info.unit_exponent]
        serial = str(info.device_id).zfill(12)[-12:].encode("ascii")
        self._getters.update(
            {
                0x80: lambda: b"\x30",  # a meter is always on (it has no off state)
                0x81: lambda: self.location,
                0x82: lambda: STANDARD_VERSION,
                0x88: lambda: b"\x42",  # no fault
                0x8A: lambda: MAKER_CODE.to_bytes(3, "big"),
                0x8D: lambda: serial,
                0x97: lambda: bytes((self.state.clock_now().hour, self.state.clock_now().minute)),
                0x98: self._date,
            }
        )
        self._setters[0x81] = self._set_location

    def _date(self) -> bytes:
        now = self.state.clock_now()
        return enc.u16(now.year) + bytes((now.month, now.day))

    def _set_location(self, edt: bytes) -> bool:
        if len(edt) == 17 and edt[0] != 0x01:
            return False
        self.location = edt
        return True

    # -- shared helpers

    @property
    def data_time(self) -> dt.datetime:
        return from_epoch_us(self.state.data_us)

    def _last_half_hour_us(self) -> int:
        return self.state.data_us - self.state.data_us % _US_30

    def _fixed_time_register(self, index: int) -> bytes:
        """date-time(7) of the last 30-minute boundary + that register (0xEA, 0xEB, 0x028A 0xE3)."""
        t = self._last_half_hour_us()
        found = self.state.half_hour_registers(self.key, [t])[0]
        return enc.date_time7(from_epoch_us(t)) + enc.u32(None if found is None else found[index])

    def _day_times(self, day: int) -> list[int]:
        """Epoch µs of 00:00, 00:30 … 23:30 of the day ``day`` days before the data day."""
        date = self.data_time.date() - dt.timedelta(days=day)
        first = int(jst_midnight(date).timestamp()) * 1_000_000
        return [first + i * _US_30 for i in range(HISTORY_SLOTS)]

    def _day_history(self, day: int, index: int) -> bytes:
        """u16 day + 48 cumulative readings of one register (0xE2, 0xE4; 0x028A 0xE7, 0xCE)."""
        if day == UNSET_DAY:
            return enc.u16(0x00FF) + enc.u32(None) * HISTORY_SLOTS
        values = self.state.half_hour_registers(self.key, self._day_times(day))
        return enc.u16(day) + b"".join(enc.u32(None if v is None else v[index]) for v in values)

    def _minute_history(self, request: bytes) -> bytes:
        """0xEE (0x028A 0xF1): from the 0xEF request, 1-minute steps back (SPEC B3)."""
        if request == UNSET_HISTORY_REQUEST:
            return request + enc.u32(None) * 2
        start = enc.parse_date_time6(request[:6])
        count = request[6]
        if start is None:  # cannot happen: the setter validated it
            return UNSET_HISTORY_REQUEST + enc.u32(None) * 2
        t0 = enc.epoch_us(start)
        times = [t0 - i * US_PER_MINUTE for i in range(count)]
        values = self.state.minute_registers(self.key, times)
        body = b"".join(_pair(v) for v in values)
        return request + body

    def _latest_minute(self) -> bytes:
        """0xD0 (0x028A 0xF0): the latest 1-minute reading, forward and reverse (SPEC B3)."""
        t = self.state.data_us
        found = self.state.minute_registers(self.key, [t])[0]
        stamp = enc.date_time7(from_epoch_us(t))
        if found is None:
            return stamp + enc.u32(None) * 2
        return stamp + enc.u32(found[0]) + enc.u32(found[1])


def _pair(value: tuple[int, ...] | None) -> bytes:
    """Forward + reverse readings of one history entry (u32 each, or "no data")."""
    if value is None:
        return enc.u32(None) * 2
    return enc.u32(value[0]) + enc.u32(value[1])


def _valid_day(edt: bytes) -> bool:
    return len(edt) == 1 and edt[0] <= MAX_HISTORY_DAY


def _valid_request(edt: bytes, max_segments: int, half_hour: bool) -> bool:
    when = enc.parse_date_time6(edt[:6])
    if len(edt) != 7 or when is None or not 1 <= edt[6] <= max_segments:
        return False
    return not half_hour or when.minute in (0, 30)


class LvMeterObject(MeterObject):
    """Low-voltage smart electric energy meter 0x0288, instance 1 (SPEC B1, M1)."""

    def __init__(self, state: FleetState, info: MeterInfo) -> None:
        table: Mapping[int, PropertySpec] = LV_SMART_METER
        if info.generation is Generation.GEN1:  # gen-1 meters keep no 1-minute values (M3)
            table = {k: v for k, v in LV_SMART_METER.items() if k not in ONE_MINUTE_EPCS_LV}
        super().__init__(EOJ.lv_smart_meter(), table, state, info)
        self.history_day = UNSET_DAY  # 0xE5
        self.request_30 = UNSET_HISTORY_REQUEST  # 0xED
        self.request_1 = UNSET_HISTORY_REQUEST  # 0xEF
        b_route_id = (
            b"\x00"
            + MAKER_CODE.to_bytes(3, "big")
            + str(info.device_id).zfill(12)[-12:].encode("ascii")
        )
        self._getters.update(
            {
                0xC0: lambda: b_route_id,
                0xD0: self._latest_minute,
                0xD3: lambda: enc.u32(info.coefficient),
                0xD7: lambda: enc.u8(EFFECTIVE_DIGITS),
                0xE0: lambda: enc.u32(self.state.registers(self.key)[0]),
                0xE1: lambda: enc.u8(self.unit_code),
                0xE2: lambda: self._day_history(self.history_day, 0),
                0xE3: lambda: enc.u32(self.state.registers(self.key)[1]),
                0xE4: lambda: self._day_history(self.history_day, 1),
                0xE5: lambda: enc.u8(self.history_day),
                0xE7: lambda: enc.s32(self.state.power_w(self.key)),
                0xE8: self._currents,
                0xEA: lambda: self._fixed_time_register(0),
                0xEB: lambda: self._fixed_time_register(1),
                0xEC: self._half_hour_history,
                0xED: lambda: self.request_30,
                0xEE: lambda: self._minute_history(self.request_1),
                0xEF: lambda: self.request_1,
            }
        )
        self._setters.update({0xE5: self._set_day, 0xED: self._set_ed, 0xEF: self._set_ef})

    def _currents(self) -> bytes:
        r, t = self.state.currents_da(self.key)
        two_wire = self.info.meter_class is MeterClass.LV_1P2W
        return enc.s16(r) + enc.s16(None if two_wire else t)

    def _half_hour_history(self) -> bytes:
        """0xEC: from the 0xED request, 30-minute steps back, forward and reverse."""
        request = self.request_30
        if request == UNSET_HISTORY_REQUEST:
            return request + enc.u32(None) * 2
        start = enc.parse_date_time6(request[:6])
        if start is None:  # cannot happen: the setter validated it
            return UNSET_HISTORY_REQUEST + enc.u32(None) * 2
        t0 = enc.epoch_us(start)
        times = [t0 - i * _US_30 for i in range(request[6])]
        values = self.state.half_hour_registers(self.key, times)
        body = b"".join(_pair(v) for v in values)
        return request + body

    def _set_day(self, edt: bytes) -> bool:
        if not _valid_day(edt):
            return False
        self.history_day = edt[0]
        return True

    def _set_ed(self, edt: bytes) -> bool:
        if not _valid_request(edt, MAX_SEGMENTS_30, half_hour=True):
            return False
        self.request_30 = bytes(edt)
        return True

    def _set_ef(self, edt: bytes) -> bool:
        if not _valid_request(edt, MAX_SEGMENTS_1, half_hour=False):
            return False
        self.request_1 = bytes(edt)
        return True


class HvMeterObject(MeterObject):
    """High-voltage smart electric energy meter 0x028A, instance 1 (SPEC B2, M2).

    Active energy = 0xE2 value × 0xD3 × 0xD4 × 0xE6; demand = value × 0xC5 × 0xD3 × 0xD4 [kW];
    reactive energy = value × 0xCD × 0xD3 × 0xD4. 0xD4 is 1, so 0xD3 × 0xE6 is the fleet's
    kWh per count. Demand values are twice the register step of their half hour (kWh in 30 min
    → mean kW), in the same unit as the register.
    """

    def __init__(self, state: FleetState, info: MeterInfo) -> None:
        table = {k: v for k, v in HV_SMART_METER.items() if k not in HV_OMITTED}
        if info.generation is Generation.GEN2:  # SPEC M2: next-generation HV keeps 1-min values
            table.update(HV_EXTENSION)
        super().__init__(EOJ.hv_smart_meter(), table, state, info)
        self.history_day = UNSET_DAY  # 0xE1
        self.request_1 = UNSET_HISTORY_REQUEST  # 0xF2
        unit = enc.u8(self.unit_code)
        self._getters.update(
            {
                0xC1: self._monthly_max_demand,
                0xC3: self._fixed_time_demand,
                0xC4: lambda: enc.u8(EFFECTIVE_DIGITS),
                0xC5: lambda: unit,
                0xC6: self._demand_history,
                0xCA: lambda: self._latest(2),
                0xCB: lambda: self._fixed_time_register(2),
                0xCC: lambda: enc.u8(EFFECTIVE_DIGITS),
                0xCD: lambda: unit,
                0xCE: lambda: self._day_history(self.history_day, 2),
                0xD3: lambda: enc.u32(info.coefficient),
                0xD4: lambda: b"\x00",  # coefficient × 1
                0xE0: lambda: enc.u8(READING_DAY),
                0xE1: lambda: enc.u8(self.history_day),
                0xE2: lambda: self._latest(0),
                0xE3: lambda: self._fixed_time_register(0),
                0xE4: lambda: self._latest(0),
                0xE5: lambda: enc.u8(EFFECTIVE_DIGITS),
                0xE6: lambda: unit,
                0xE7: lambda: self._day_history(self.history_day, 0),
                0xF0: self._latest_minute,
                0xF1: lambda: self._minute_history(self.request_1),
                0xF2: lambda: self.request_1,
                0xF7: lambda: enc.s32(self.state.power_w(self.key)),
                0xF8: self._currents,
            }
        )
        self._setters.update({0xE1: self._set_day, 0xF2: self._set_f2})

    def _latest(self, index: int) -> bytes:
        return enc.date_time7(self.data_time) + enc.u32(self.state.registers(self.key)[index])

    def _currents(self) -> bytes:
        r, t = self.state.currents_da(self.key)
        return enc.s16(r) + enc.s16(t)

    def _demands(self, times: list[int]) -> list[int | None]:
        """Demand of each half hour ending at ``times``: 2 × forward register step."""
        ends = self.state.half_hour_registers(self.key, times)
        starts = self.state.half_hour_registers(self.key, [t - _US_30 for t in times])
        return [
            None if a is None or b is None else 2 * ((b[0] - a[0]) % 10**EFFECTIVE_DIGITS)
            for a, b in zip(starts, ends, strict=True)
        ]

    def _fixed_time_demand(self) -> bytes:
        t = self._last_half_hour_us()
        return enc.date_time7(from_epoch_us(t)) + enc.u32(self._demands([t])[0])

    def _demand_history(self) -> bytes:
        if self.history_day == UNSET_DAY:
            return enc.u16(0x00FF) + enc.u32(None) * HISTORY_SLOTS
        values = self._demands(self._day_times(self.history_day))
        return enc.u16(self.history_day) + b"".join(enc.u32(v) for v in values)

    def _monthly_max_demand(self) -> bytes:
        """0xC1: highest half-hour demand since the last fixed reading day (00:00)."""
        today = self.data_time.date()
        since = today.replace(day=READING_DAY)
        first = int(jst_midnight(since).timestamp()) * 1_000_000 + _US_30
        last = self._last_half_hour_us()
        times = list(range(first, last + 1, _US_30))
        found = [d for d in self._demands(times) if d is not None]
        return enc.u32(max(found) if found else None)

    def _set_day(self, edt: bytes) -> bool:
        if not _valid_day(edt):
            return False
        self.history_day = edt[0]
        return True

    def _set_f2(self, edt: bytes) -> bool:
        if not _valid_request(edt, MAX_SEGMENTS_1, half_hour=False):
            return False
        self.request_1 = bytes(edt)
        return True
