"""Property tables of the B-route ECHONET Lite objects (SPEC B1, B2, M1, M2).

One :class:`PropertySpec` per EPC: its name, the size of its EDT and its access rule — whether
Get, Set and announcement (Anno, i.e. INF) are mandatory, optional or not applicable. The values
follow the ECHONET Consortium's Machine Readable Appendix (MRA) V1.3.0, Appendix Release R, and
are written out here by hand; nothing is read from the appendix at run time.

Tables:

* :data:`NODE_PROFILE` — node profile 0x0EF0, the properties a kenshin node implements: every
  Get-, Set- or Anno-mandatory one.
* :data:`SUPERCLASS` — the device-object superclass 0x0000, complete for Release R.
* :data:`LV_SMART_METER` — low-voltage smart electric energy meter 0x0288 (SPEC M1): every
  Release R class property plus the superclass properties the meter implements.
* :data:`HV_SMART_METER` — high-voltage smart electric energy meter 0x028A (SPEC M2): likewise.
  Release R has no 1-minute property for 0x028A; any such extension lives elsewhere.

:func:`property_maps` gives the EPC sets a node puts in its property maps 0x9D/0x9E/0x9F
(SPEC B2). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Flag, auto
from types import MappingProxyType

from kenshin.broute.echonet import EOJ, MAX_MAP_EPC, MIN_MAP_EPC
from kenshin.errors import EchonetError

NODE_PROFILE_CLASS = 0x0EF0
SUPERCLASS_CLASS = 0x0000
LV_SMART_METER_CLASS = 0x0288
HV_SMART_METER_CLASS = 0x028A


class Access(Flag):
    """Which ECHONET Lite services a property supports, and which of them are mandatory.

    ``GET``, ``SET`` and ``ANNO`` say the service is allowed (optional unless also required).
    ``*_REQUIRED`` makes it mandatory and always comes with its base flag. ``GET_CONDITIONAL``
    is the MRA's "required_c": Get is mandatory only when a condition holds (a meter in Japan for
    0xC0, a meter measuring reverse flow for 0xE3/0xE4/0xEB); it comes with ``GET`` and without
    ``GET_REQUIRED``.
    """

    NONE = 0
    GET = auto()
    SET = auto()
    ANNO = auto()
    GET_REQUIRED = auto()
    SET_REQUIRED = auto()
    ANNO_REQUIRED = auto()
    GET_CONDITIONAL = auto()


_REQUIRES: tuple[tuple[Access, Access], ...] = (
    (Access.GET_REQUIRED, Access.GET),
    (Access.SET_REQUIRED, Access.SET),
    (Access.ANNO_REQUIRED, Access.ANNO),
    (Access.GET_CONDITIONAL, Access.GET),
)

_LEVEL = {"-": 0, "opt": 1, "req": 2, "cond": 3}


def rule(get: str, set_: str = "-", anno: str = "opt") -> Access:
    """Access flags from one level per service: ``"req"``, ``"opt"``, ``"cond"`` (Get only) or
    ``"-"`` (not applicable). ``rule("req", "req")`` is Get and Set mandatory, Anno optional.
    """
    levels = {"get": get, "set": set_, "anno": anno}
    for service, level in levels.items():
        if level not in _LEVEL or (level == "cond" and service != "get"):
            raise EchonetError(f"access level {level!r} is not valid for {service}")
    access = Access.NONE
    bases = {"get": Access.GET, "set": Access.SET, "anno": Access.ANNO}
    required = {
        "get": Access.GET_REQUIRED,
        "set": Access.SET_REQUIRED,
        "anno": Access.ANNO_REQUIRED,
    }
    for service, level in levels.items():
        if level != "-":
            access |= bases[service]
        if level == "req":
            access |= required[service]
        if level == "cond":
            access |= Access.GET_CONDITIONAL
    return access


@dataclass(frozen=True, slots=True)
class SizeRange:
    """A variable EDT size: ``minimum``, ``minimum + step``, … up to ``maximum`` bytes.

    ``SizeRange(15, 103, 8)`` is 0xEC's "7 + 8N bytes, N = 1–12"; ``SizeRange(1, 17, 16)`` is
    the superclass 0x81's "1 or 17 bytes".
    """

    minimum: int
    maximum: int
    step: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.minimum <= self.maximum <= 0xFF or self.step < 1:
            raise EchonetError(f"bad EDT size range {self.minimum}–{self.maximum}/{self.step}")
        if (self.maximum - self.minimum) % self.step:
            raise EchonetError(
                f"size range {self.minimum}–{self.maximum} is not {self.step}-spaced"
            )

    def accepts(self, size: int) -> bool:
        """True if an EDT of ``size`` bytes fits this range."""
        return self.minimum <= size <= self.maximum and (size - self.minimum) % self.step == 0


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """One property of an ECHONET Lite class (SPEC B1): EPC, name, EDT size and access rule.

    ``size`` is a byte count, or a :class:`SizeRange` where the MRA allows several sizes.
    """

    epc: int
    name: str
    size: int | SizeRange
    access: Access

    def __post_init__(self) -> None:
        if not isinstance(self.epc, int) or not MIN_MAP_EPC <= self.epc <= MAX_MAP_EPC:
            raise EchonetError(f"a property EPC is 0x80–0xFF, got {self.epc!r}")
        if isinstance(self.size, int) and not 0 < self.size <= 0xFF:
            raise EchonetError(f"EDT size of EPC {self.epc:#04x} must be 1–255, got {self.size}")
        for flag, base in _REQUIRES:
            if flag in self.access and base not in self.access:
                raise EchonetError(f"EPC {self.epc:#04x}: {flag.name} without {base.name}")
        if Access.GET_CONDITIONAL in self.access and Access.GET_REQUIRED in self.access:
            raise EchonetError(f"EPC {self.epc:#04x}: Get is both required and conditional")

    @property
    def min_size(self) -> int:
        return self.size if isinstance(self.size, int) else self.size.minimum

    @property
    def max_size(self) -> int:
        return self.size if isinstance(self.size, int) else self.size.maximum

    def accepts_size(self, size: int) -> bool:
        """True if an EDT of ``size`` bytes is a valid length for this property."""
        if isinstance(self.size, int):
            return size == self.size
        return self.size.accepts(size)


def _table(*specs: PropertySpec) -> Mapping[int, PropertySpec]:
    table: dict[int, PropertySpec] = {}
    for spec in specs:
        if spec.epc in table:
            raise EchonetError(f"EPC {spec.epc:#04x} listed twice")
        table[spec.epc] = spec
    return MappingProxyType(dict(sorted(table.items())))


# property map EDT: 1 count byte, then up to 15 EPCs or a 16-byte bitmap
_MAP_SIZE = SizeRange(1, 17)

# ---------------------------------------------------------------------------------------------
# node profile 0x0EF0 (the properties a kenshin node implements)

NODE_PROFILE: Mapping[int, PropertySpec] = _table(
    PropertySpec(
        0x80, "operating status (0x30 booted, 0x31 not booted)", 1, rule("req", "-", "req")
    ),
    PropertySpec(0x82, "version information (major, minor, format bitmap, 0x00)", 4, rule("req")),
    PropertySpec(
        0x83, "identification number (0xFE, maker code, 13 unique bytes)", 17, rule("req")
    ),
    PropertySpec(0x8A, "manufacturer code", 3, rule("req")),
    PropertySpec(0x9D, "status-change announcement property map", _MAP_SIZE, rule("req")),
    PropertySpec(0x9E, "Set property map", _MAP_SIZE, rule("req")),
    PropertySpec(0x9F, "Get property map", _MAP_SIZE, rule("req")),
    PropertySpec(0xD3, "number of self-node instances (u24)", 3, rule("req")),
    PropertySpec(0xD4, "number of self-node classes incl. node profile (u16)", 2, rule("req")),
    # count (0–84) + 3-byte EOJs
    PropertySpec(0xD5, "instance list notification", SizeRange(1, 253, 3), rule("opt", "-", "req")),
    PropertySpec(0xD6, "self-node instance list S", SizeRange(1, 253, 3), rule("req")),
    # count (1–8) + 2-byte class codes, node profile excluded
    PropertySpec(0xD7, "self-node class list S", SizeRange(3, 17, 2), rule("req")),
)

# ---------------------------------------------------------------------------------------------
# device superclass 0x0000 (complete for Release R)

SUPERCLASS: Mapping[int, PropertySpec] = _table(
    PropertySpec(0x80, "operation status (0x30 on, 0x31 off)", 1, rule("req", "opt", "req")),
    # 1-byte location code, or 0x00 + 16 bytes of position information
    PropertySpec(0x81, "installation location", SizeRange(1, 17, 16), rule("req", "req", "req")),
    PropertySpec(0x82, "standard version information (Appendix release)", 4, rule("req")),
    PropertySpec(0x83, "identification number", 17, rule("opt")),
    PropertySpec(0x84, "instantaneous power consumption (u16 W)", 2, rule("opt")),
    PropertySpec(0x85, "cumulative energy consumption (u32, 0.001 kWh)", 4, rule("opt")),
    PropertySpec(0x86, "manufacturer's fault code", SizeRange(1, 255), rule("opt")),
    PropertySpec(0x87, "current limit setting (%)", 1, rule("opt", "opt")),
    PropertySpec(0x88, "fault status (0x41 fault, 0x42 none)", 1, rule("req", "-", "req")),
    PropertySpec(0x89, "fault description (u16 code)", 2, rule("opt")),
    PropertySpec(0x8A, "manufacturer code", 3, rule("req")),
    PropertySpec(0x8B, "business facility code", 3, rule("opt")),
    PropertySpec(0x8C, "product code (ASCII)", 12, rule("opt")),
    PropertySpec(0x8D, "production number (ASCII)", 12, rule("opt")),
    PropertySpec(0x8E, "production date (YYYY MM DD)", 4, rule("opt")),
    PropertySpec(0x8F, "power-saving operation setting", 1, rule("opt", "opt")),
    PropertySpec(0x93, "remote control setting", 1, rule("opt", "opt")),
    PropertySpec(0x97, "current time (hh mm)", 2, rule("opt", "opt")),
    PropertySpec(0x98, "current date (YYYY MM DD)", 4, rule("opt", "opt")),
    PropertySpec(0x99, "power limit setting (u16 W)", 2, rule("opt", "opt")),
    PropertySpec(0x9A, "cumulative operating time (unit + u32)", 5, rule("opt")),
    PropertySpec(0x9D, "status-change announcement property map", _MAP_SIZE, rule("req")),
    PropertySpec(0x9E, "Set property map", _MAP_SIZE, rule("req")),
    PropertySpec(0x9F, "Get property map", _MAP_SIZE, rule("req")),
)

# The superclass properties a kenshin meter implements: the mandatory ones, plus production
# number and the clock (0x8D, 0x97, 0x98), which the next-generation LV interface also lists.
METER_SUPERCLASS_EPCS: frozenset[int] = frozenset(
    {0x80, 0x81, 0x82, 0x88, 0x8A, 0x8D, 0x97, 0x98, 0x9D, 0x9E, 0x9F}
)
_METER_SUPER = tuple(SUPERCLASS[epc] for epc in sorted(METER_SUPERCLASS_EPCS))

# ---------------------------------------------------------------------------------------------
# low-voltage smart electric energy meter 0x0288 (SPEC M1), Release R
#
# "date-time" is YYYY(u16) MM DD hh mm ss (7 bytes); the EC/ED/EE/EF form drops the seconds
# (6 bytes). Energy values are u32 readings, × 0xD3 × 0xE1 = kWh; 0xFFFFFFFE is "no data".

LV_SMART_METER: Mapping[int, PropertySpec] = _table(
    *_METER_SUPER,
    # 0x00, 3-byte maker code, 12 free bytes; mandatory for meters in Japan
    PropertySpec(0xC0, "B-route identification number", 16, rule("cond")),
    PropertySpec(
        0xD0, "latest 1-minute cumulative energy (date-time, normal, reverse)", 15, rule("req")
    ),
    PropertySpec(0xD3, "coefficient (u32, 0–999999)", 4, rule("opt")),
    PropertySpec(0xD7, "number of effective digits of cumulative energy (1–8)", 1, rule("req")),
    PropertySpec(0xE0, "cumulative energy, normal direction", 4, rule("req")),
    PropertySpec(
        0xE1, "unit of cumulative energy (0x00 = 1 kWh … 0x04, 0x0A–0x0D)", 1, rule("req")
    ),
    # u16 day + 48 half-hour readings
    PropertySpec(0xE2, "cumulative energy history 1, normal direction", 194, rule("req")),
    PropertySpec(0xE3, "cumulative energy, reverse direction", 4, rule("cond")),
    PropertySpec(0xE4, "cumulative energy history 1, reverse direction", 194, rule("cond")),
    PropertySpec(0xE5, "day of history 1 (0 = today … 99)", 1, rule("req", "req")),
    PropertySpec(0xE7, "instantaneous power (s32 W)", 4, rule("req")),
    PropertySpec(0xE8, "instantaneous currents (R, T phase: s16, 0.1 A)", 4, rule("req")),
    PropertySpec(0xEA, "cumulative energy at the last 30-minute mark, normal", 11, rule("req")),
    PropertySpec(0xEB, "cumulative energy at the last 30-minute mark, reverse", 11, rule("cond")),
    # 6-byte date-time + N (1–12) + N × (normal u32, reverse u32), 30-minute steps
    PropertySpec(
        0xEC, "cumulative energy history 2 (30-minute)", SizeRange(15, 103, 8), rule("opt")
    ),
    PropertySpec(0xED, "date-time and count for history 2", 7, rule("opt", "opt")),
    # as 0xEC with 1-minute steps and N = 1–10
    PropertySpec(0xEE, "cumulative energy history 3 (1-minute)", SizeRange(15, 87, 8), rule("req")),
    PropertySpec(0xEF, "date-time and count for history 3", 7, rule("req", "req")),
)

# ---------------------------------------------------------------------------------------------
# high-voltage smart electric energy meter 0x028A (SPEC M2), Release R
#
# Demand values × 0xC5 × 0xD3 × 0xD4; active energy × 0xD3 × 0xD4 × 0xE6; reactive energy
# × 0xCD × 0xD3 × 0xD4. The 194-byte histories are u16 day + 48 × u32.

HV_SMART_METER: Mapping[int, PropertySpec] = _table(
    *_METER_SUPER,
    PropertySpec(0xC1, "monthly maximum demand (u32 kW)", 4, rule("req")),
    PropertySpec(0xC2, "cumulative maximum demand (u32 kW)", 4, rule("opt")),
    PropertySpec(0xC3, "30-minute average demand at fixed time (date-time + u32)", 11, rule("req")),
    PropertySpec(0xC4, "number of effective digits of demand (1–8)", 1, rule("req")),
    PropertySpec(0xC5, "unit of demand", 1, rule("req")),
    PropertySpec(0xC6, "demand history", 194, rule("req")),
    PropertySpec(0xC7, "unit of cumulative maximum demand", 1, rule("opt")),
    PropertySpec(0xCA, "reactive energy (lag) for power factor (date-time + u32)", 11, rule("opt")),
    PropertySpec(0xCB, "reactive energy (lag) at fixed time (date-time + u32)", 11, rule("opt")),
    PropertySpec(0xCC, "number of effective digits of reactive energy (1–8)", 1, rule("opt")),
    PropertySpec(0xCD, "unit of reactive energy", 1, rule("opt")),
    PropertySpec(0xCE, "reactive energy (lag) history", 194, rule("opt")),
    PropertySpec(0xD3, "coefficient (u32, 0–999999)", 4, rule("req")),
    PropertySpec(0xD4, "multiplier of the coefficient (0x00 = 1 … 0x03 = 0.001)", 1, rule("req")),
    PropertySpec(0xE0, "meter-reading (fixed) day of month (1–31)", 1, rule("req")),
    PropertySpec(0xE1, "day of the histories (0 = today … 99)", 1, rule("req", "req")),
    PropertySpec(0xE2, "cumulative active energy (date-time + u32)", 11, rule("req")),
    PropertySpec(0xE3, "cumulative active energy at fixed time (date-time + u32)", 11, rule("req")),
    PropertySpec(
        0xE4, "cumulative active energy for power factor (date-time + u32)", 11, rule("opt")
    ),
    PropertySpec(0xE5, "number of effective digits of active energy (1–8)", 1, rule("req")),
    PropertySpec(0xE6, "unit of active energy", 1, rule("req")),
    PropertySpec(0xE7, "active energy history", 194, rule("req")),
)

_TABLES: Mapping[int, Mapping[int, PropertySpec]] = MappingProxyType(
    {
        NODE_PROFILE_CLASS: NODE_PROFILE,
        SUPERCLASS_CLASS: SUPERCLASS,
        LV_SMART_METER_CLASS: LV_SMART_METER,
        HV_SMART_METER_CLASS: HV_SMART_METER,
    }
)


def table_for(cls: EOJ | int) -> Mapping[int, PropertySpec]:
    """The table of a class, given as an :class:`EOJ` or a 16-bit class code such as 0x0288."""
    class_id = cls.class_id if isinstance(cls, EOJ) else cls
    try:
        return _TABLES[class_id]
    except KeyError:
        raise EchonetError(f"no property table for class {class_id:#06x}") from None


def property_maps(
    cls: EOJ | int | Mapping[int, PropertySpec],
) -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
    """The (Anno, Set, Get) EPC sets a node lists in 0x9D, 0x9E and 0x9F (SPEC B2).

    ``cls`` is an :class:`EOJ`, a class code, or a table. Every property of the table is
    implemented, so Get is every property that allows Get. Announcements are only the mandatory
    ones (0x9D lists what the node announces on a change, not what it could announce). Set is
    every mandatory Set plus the optional Sets of class-specific properties (0x0288's 0xED); a
    meter does not take the superclass's optional Sets — it cannot be switched off (0x80) and
    its clock (0x97, 0x98) belongs to the head-end system (SPEC M1).
    """
    table = cls if isinstance(cls, Mapping) else table_for(cls)
    anno: set[int] = set()
    set_: set[int] = set()
    get: set[int] = set()
    for epc, spec in table.items():
        if Access.ANNO_REQUIRED in spec.access:
            anno.add(epc)
        if Access.SET_REQUIRED in spec.access or (
            Access.SET in spec.access and epc not in SUPERCLASS
        ):
            set_.add(epc)
        if Access.GET in spec.access:
            get.add(epc)
    return frozenset(anno), frozenset(set_), frozenset(get)
