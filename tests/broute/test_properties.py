"""Property tables of the B-route objects (SPEC B1, B2, M1, M2).

The expected values below are copied by hand from the ECHONET MRA V1.3.0 (Release R), so they
check the tables independently of how the tables were written.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from kenshin.broute.echonet import EOJ, decode_property_map, encode_property_map
from kenshin.broute.properties import (
    HV_SMART_METER,
    LV_SMART_METER,
    NODE_PROFILE,
    SUPERCLASS,
    Access,
    PropertySpec,
    SizeRange,
    property_maps,
    rule,
    table_for,
)
from kenshin.errors import EchonetError

TABLES: dict[str, Mapping[int, PropertySpec]] = {
    "node_profile": NODE_PROFILE,
    "superclass": SUPERCLASS,
    "lv": LV_SMART_METER,
    "hv": HV_SMART_METER,
}

# (table, EPC, EDT size or (min, max, step), Get, Set, Anno) with levels req/opt/cond/-,
# transcribed from the MRA JSON by hand.
MRA_ROWS = [
    ("node_profile", 0x80, 1, "req", "-", "req"),
    ("node_profile", 0x82, 4, "req", "-", "opt"),
    ("node_profile", 0x83, 17, "req", "-", "opt"),
    ("node_profile", 0x8A, 3, "req", "-", "opt"),
    ("node_profile", 0x9F, (1, 17, 1), "req", "-", "opt"),
    ("node_profile", 0xD3, 3, "req", "-", "opt"),
    ("node_profile", 0xD4, 2, "req", "-", "opt"),
    ("node_profile", 0xD5, (1, 253, 3), "opt", "-", "req"),
    ("node_profile", 0xD6, (1, 253, 3), "req", "-", "opt"),
    ("superclass", 0x80, 1, "req", "opt", "req"),
    ("superclass", 0x81, (1, 17, 16), "req", "req", "req"),
    ("superclass", 0x82, 4, "req", "-", "opt"),
    ("superclass", 0x88, 1, "req", "-", "req"),
    ("superclass", 0x8A, 3, "req", "-", "opt"),
    ("superclass", 0x8D, 12, "opt", "-", "opt"),
    ("superclass", 0x97, 2, "opt", "opt", "opt"),
    ("superclass", 0x98, 4, "opt", "opt", "opt"),
    ("superclass", 0x9A, 5, "opt", "-", "opt"),
    ("lv", 0xC0, 16, "cond", "-", "opt"),
    ("lv", 0xD0, 15, "req", "-", "opt"),
    ("lv", 0xD3, 4, "opt", "-", "opt"),
    ("lv", 0xD7, 1, "req", "-", "opt"),
    ("lv", 0xE0, 4, "req", "-", "opt"),
    ("lv", 0xE1, 1, "req", "-", "opt"),
    ("lv", 0xE2, 194, "req", "-", "opt"),
    ("lv", 0xE3, 4, "cond", "-", "opt"),
    ("lv", 0xE4, 194, "cond", "-", "opt"),
    ("lv", 0xE5, 1, "req", "req", "opt"),
    ("lv", 0xE7, 4, "req", "-", "opt"),
    ("lv", 0xE8, 4, "req", "-", "opt"),
    ("lv", 0xEA, 11, "req", "-", "opt"),
    ("lv", 0xEB, 11, "cond", "-", "opt"),
    ("lv", 0xEC, (15, 103, 8), "opt", "-", "opt"),
    ("lv", 0xED, 7, "opt", "opt", "opt"),
    ("lv", 0xEE, (15, 87, 8), "req", "-", "opt"),
    ("lv", 0xEF, 7, "req", "req", "opt"),
    ("hv", 0xC1, 4, "req", "-", "opt"),
    ("hv", 0xC3, 11, "req", "-", "opt"),
    ("hv", 0xC6, 194, "req", "-", "opt"),
    ("hv", 0xCE, 194, "opt", "-", "opt"),
    ("hv", 0xD3, 4, "req", "-", "opt"),
    ("hv", 0xD4, 1, "req", "-", "opt"),
    ("hv", 0xE0, 1, "req", "-", "opt"),
    ("hv", 0xE1, 1, "req", "req", "opt"),
    ("hv", 0xE2, 11, "req", "-", "opt"),
    ("hv", 0xE4, 11, "opt", "-", "opt"),
    ("hv", 0xE7, 194, "req", "-", "opt"),
]

# The class-specific EPCs of Release R, per the MRA.
LV_CLASS_EPCS = {
    0xC0, 0xD0, 0xD3, 0xD7, 0xE0, 0xE1, 0xE2, 0xE3, 0xE4,
    0xE5, 0xE7, 0xE8, 0xEA, 0xEB, 0xEC, 0xED, 0xEE, 0xEF,
}  # fmt: skip
HV_CLASS_EPCS = {
    0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xCA, 0xCB, 0xCC, 0xCD,
    0xCE, 0xD3, 0xD4, 0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7,
}  # fmt: skip
SUPERCLASS_EPCS = {
    0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8B,
    0x8C, 0x8D, 0x8E, 0x8F, 0x93, 0x97, 0x98, 0x99, 0x9A, 0x9D, 0x9E, 0x9F,
}  # fmt: skip
MANDATORY_GET = {0x80, 0x81, 0x82, 0x88, 0x8A, 0x9D, 0x9E, 0x9F}


def _flags(get: str, set_: str, anno: str) -> Access:
    """Independent spelling of the access flags, written out flag by flag."""
    access = Access.NONE
    if get == "req":
        access |= Access.GET | Access.GET_REQUIRED
    elif get == "cond":
        access |= Access.GET | Access.GET_CONDITIONAL
    elif get == "opt":
        access |= Access.GET
    if set_ == "req":
        access |= Access.SET | Access.SET_REQUIRED
    elif set_ == "opt":
        access |= Access.SET
    if anno == "req":
        access |= Access.ANNO | Access.ANNO_REQUIRED
    elif anno == "opt":
        access |= Access.ANNO
    return access


@pytest.mark.parametrize(
    ("table", "epc", "size", "get", "set_", "anno"),
    MRA_ROWS,
    ids=[f"{row[0]}-{row[1]:02X}" for row in MRA_ROWS],
)
def test_row_matches_mra(
    table: str, epc: int, size: int | tuple[int, int, int], get: str, set_: str, anno: str
) -> None:
    spec = TABLES[table][epc]
    assert spec.epc == epc
    if isinstance(size, int):
        assert spec.size == size
    else:
        assert spec.size == SizeRange(*size)
    assert spec.access == _flags(get, set_, anno)


def test_lv_has_every_release_r_property() -> None:
    assert set(LV_SMART_METER) - SUPERCLASS_EPCS == LV_CLASS_EPCS


def test_hv_has_every_release_r_property() -> None:
    assert set(HV_SMART_METER) - SUPERCLASS_EPCS == HV_CLASS_EPCS
    assert 0xD0 not in HV_SMART_METER  # no 1-minute property for 0x028A in Release R
    assert 0xEE not in HV_SMART_METER


def test_superclass_complete() -> None:
    assert set(SUPERCLASS) == SUPERCLASS_EPCS


@pytest.mark.parametrize("name", ["lv", "hv"])
def test_meter_superclass_entries_are_superclass(name: str) -> None:
    table = TABLES[name]
    for epc in set(table) & SUPERCLASS_EPCS:
        assert table[epc] == SUPERCLASS[epc]
    assert set(table) >= MANDATORY_GET | {0x8D, 0x97, 0x98}


@pytest.mark.parametrize("name", list(TABLES))
def test_epcs_in_range_and_keys_match(name: str) -> None:
    for epc, spec in TABLES[name].items():
        assert 0x80 <= epc <= 0xFF
        assert spec.epc == epc
        assert 1 <= spec.min_size <= spec.max_size <= 255


@pytest.mark.parametrize("name", list(TABLES))
def test_required_flags_imply_base(name: str) -> None:
    for spec in TABLES[name].values():
        if Access.GET_REQUIRED in spec.access or Access.GET_CONDITIONAL in spec.access:
            assert Access.GET in spec.access
        if Access.SET_REQUIRED in spec.access:
            assert Access.SET in spec.access
        if Access.ANNO_REQUIRED in spec.access:
            assert Access.ANNO in spec.access


def test_variable_sizes() -> None:
    ee = LV_SMART_METER[0xEE]
    assert ee.accepts_size(7 + 8 * 1)
    assert ee.accepts_size(7 + 8 * 10)
    assert not ee.accepts_size(7)
    assert not ee.accepts_size(7 + 8 * 11)
    assert not ee.accepts_size(7 + 8 * 2 + 1)
    assert LV_SMART_METER[0xEC].accepts_size(7 + 8 * 12)
    assert LV_SMART_METER[0xE2].accepts_size(194)
    assert not LV_SMART_METER[0xE2].accepts_size(193)
    loc = SUPERCLASS[0x81]
    assert loc.accepts_size(1)
    assert loc.accepts_size(17)
    assert not loc.accepts_size(2)
    assert NODE_PROFILE[0xD5].accepts_size(4)  # one instance: 01 028801
    assert NODE_PROFILE[0xD7].accepts_size(3)  # one class: 01 0288


@pytest.mark.parametrize(
    "cls",
    [EOJ.node_profile(), EOJ.lv_smart_meter(), EOJ.hv_smart_meter(), 0x0288, 0x028A, 0x0EF0],
    ids=str,
)
def test_property_maps_round_trip(cls: EOJ | int) -> None:
    anno, set_, get = property_maps(cls)
    for epcs in (anno, set_, get):
        assert all(0x80 <= epc <= 0xFF for epc in epcs)
        assert decode_property_map(encode_property_map(epcs)) == epcs
    assert anno <= get
    assert set_ <= get
    assert {0x80, 0x82, 0x8A, 0x9D, 0x9E, 0x9F} <= get


def test_lv_property_maps() -> None:
    anno, set_, get = property_maps(EOJ.lv_smart_meter())
    assert anno == {0x80, 0x81, 0x88}
    assert set_ == {0x81, 0xE5, 0xED, 0xEF}
    assert get >= MANDATORY_GET | {0xD0, 0xE0, 0xE1, 0xE2, 0xE5, 0xE7, 0xE8, 0xEE, 0xEF}
    assert len(get) >= 16  # bitmap form on the wire
    assert len(encode_property_map(get)) == 17


def test_hv_property_maps() -> None:
    anno, set_, get = property_maps(0x028A)
    assert anno == {0x80, 0x81, 0x88}
    assert set_ == {0x81, 0xE1}
    assert get >= MANDATORY_GET | {0xC1, 0xC3, 0xD3, 0xD4, 0xE2, 0xE7}


def test_node_profile_maps() -> None:
    anno, set_, get = property_maps(NODE_PROFILE)
    assert anno == {0x80, 0xD5}
    assert set_ == frozenset()
    assert get == {0x80, 0x82, 0x83, 0x8A, 0x9D, 0x9E, 0x9F, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7}
    assert encode_property_map(anno) == bytes.fromhex("02 80 D5")
    assert encode_property_map(set_) == b"\x00"


def test_unknown_class() -> None:
    with pytest.raises(EchonetError):
        table_for(0x0130)
    with pytest.raises(EchonetError):
        property_maps(EOJ(0x05, 0xFF, 0x01))


@pytest.mark.parametrize("epc", [-1, 0x00, 0x7F, 0x100])
def test_spec_rejects_epc_outside_range(epc: int) -> None:
    with pytest.raises(EchonetError):
        PropertySpec(epc, "x", 1, rule("opt"))


def test_spec_rejects_inconsistent_flags() -> None:
    with pytest.raises(EchonetError):
        PropertySpec(0xE0, "x", 4, Access.GET_REQUIRED)
    with pytest.raises(EchonetError):
        PropertySpec(0xE0, "x", 4, Access.GET | Access.GET_REQUIRED | Access.GET_CONDITIONAL)
    with pytest.raises(EchonetError):
        rule("opt", "cond")
    with pytest.raises(EchonetError):
        SizeRange(15, 100, 8)


def test_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        LV_SMART_METER[0xE0] = LV_SMART_METER[0xE1]  # type: ignore[index]
