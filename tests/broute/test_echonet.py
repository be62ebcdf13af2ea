"""ECHONET Lite frame and property-map codec (SPEC B1–B2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.broute.echonet import (
    CONTROLLER,
    EOJ,
    ESV,
    HV_SMART_METER,
    LV_SMART_METER,
    NODE_PROFILE,
    Frame,
    Property,
    decode,
    decode_property_map,
    encode,
    encode_property_map,
)
from kenshin.errors import EchonetError, InvalidInput

# ---------------------------------------------------------------------------------------------
# byte-exact examples


GET_E0 = bytes.fromhex("1081 0001 05FF01 028801 62 01 E000")
GET_RES_E0 = bytes.fromhex("1081 0001 028801 05FF01 72 01 E004 000004D2")
INF_D5 = bytes.fromhex("1081 0000 0EF001 0EF001 73 01 D504 01028801")
SETGET = bytes.fromhex("1081 0102 05FF01 028801 6E 01 E50101 01 E200")


def test_get_e0_to_lv_meter() -> None:
    frame = Frame(1, CONTROLLER, LV_SMART_METER, ESV.GET, (Property(0xE0),))
    assert encode(frame) == GET_E0
    assert decode(GET_E0) == frame


def test_get_res_with_four_byte_edt() -> None:
    frame = decode(GET_RES_E0)
    assert frame.tid == 1
    assert frame.seoj == LV_SMART_METER
    assert frame.deoj == CONTROLLER
    assert frame.esv is ESV.GET_RES
    assert frame.properties == (Property(0xE0, (1234).to_bytes(4, "big")),)
    assert frame.properties[0].pdc == 4
    assert encode(frame) == GET_RES_E0
    request = decode(GET_E0)
    assert request.reply(ESV.GET_RES, frame.properties) == frame


def test_instance_list_notification_at_start_up() -> None:
    frame = Frame(
        0, NODE_PROFILE, NODE_PROFILE, ESV.INF, (Property(0xD5, bytes.fromhex("01028801")),)
    )
    assert encode(frame) == INF_D5
    assert decode(INF_D5) == frame


def test_setget_carries_set_list_first() -> None:
    frame = decode(SETGET)
    assert frame.tid == 0x0102
    assert frame.esv is ESV.SETGET
    assert frame.set_properties == (Property(0xE5, b"\x01"),)
    assert frame.properties == (Property(0xE2),)
    assert encode(frame) == SETGET


def test_get_sna_lists_unavailable_with_pdc_zero() -> None:
    data = bytes.fromhex("1081 0007 028801 05FF01 52 02 E004 00000001 E300")
    frame = decode(data)
    assert frame.esv is ESV.GET_SNA
    assert [p.pdc for p in frame.properties] == [4, 0]
    assert encode(frame) == data


def test_eoj_helpers() -> None:
    assert EOJ.from_int(0x0EF001) == NODE_PROFILE
    assert int(LV_SMART_METER) == 0x028801
    assert int(HV_SMART_METER) == 0x028A01
    assert bytes(HV_SMART_METER) == b"\x02\x8a\x01"
    assert LV_SMART_METER.class_id == 0x0288
    assert str(EOJ.node_profile(2)) == "0EF002"
    with pytest.raises(EchonetError):
        EOJ(0x100, 0, 0)
    with pytest.raises(EchonetError):
        EOJ.from_int(0x1000000)


# property maps: bit b of bitmap byte i ↔ EPC 0x80 + 0x10*b + i

BITMAP_17 = bytes([0x11]) + bytes([0x01] * 15) + bytes([0x81])  # 0x80–0x8F and 0xFF
LV_GET_16 = frozenset(
    {0x80, 0x81, 0x82, 0x88, 0x8A, 0x8D, 0x97, 0x98, 0x9D, 0x9E, 0x9F, 0xD3, 0xD7, 0xE0, 0xE1, 0xE7}
)
LV_GET_16_EDT = bytes.fromhex("10 41 41 01 20 00 00 00 62 03 00 01 00 00 03 02 02")


def test_property_map_bitmap_of_17() -> None:
    epcs = frozenset(range(0x80, 0x90)) | {0xFF}
    assert len(BITMAP_17) == 17
    assert encode_property_map(epcs) == BITMAP_17
    assert decode_property_map(BITMAP_17) == epcs


def test_property_map_bitmap_of_16_hand_computed() -> None:
    assert encode_property_map(LV_GET_16) == LV_GET_16_EDT
    assert decode_property_map(LV_GET_16_EDT) == LV_GET_16


def test_property_map_list_of_15() -> None:
    epcs = sorted(LV_GET_16 - {0xE7})
    edt = bytes([15, *epcs])
    assert encode_property_map(reversed(epcs)) == edt
    assert decode_property_map(edt) == frozenset(epcs)


def test_property_map_empty_and_duplicates() -> None:
    assert encode_property_map([]) == b"\x00"
    assert decode_property_map(b"\x00") == frozenset()
    assert encode_property_map([0x80, 0x80]) == b"\x01\x80"


@pytest.mark.parametrize("epc", [0x7F, 0x00, 0x100, -1])
def test_property_map_rejects_epc_outside_range(epc: int) -> None:
    with pytest.raises(EchonetError, match="0x80"):
        encode_property_map([0x80, epc])


@pytest.mark.parametrize(
    ("edt", "reason"),
    [
        (b"", "empty"),
        (b"\x02\x80", "2 EPCs"),
        (b"\x01\x80\x81", "1 EPCs"),
        (b"\x02\x80\x80", "twice"),
        (b"\x01\x7f", "outside"),
        (BITMAP_17[:-1], "bitmap of 17 bytes"),
        (bytes([0x12]) + BITMAP_17[1:], "count is 18"),
    ],
)
def test_property_map_rejects_malformed(edt: bytes, reason: str) -> None:
    with pytest.raises(EchonetError, match=reason):
        decode_property_map(edt)


# ---------------------------------------------------------------------------------------------
# ESV


def test_esv_responses() -> None:
    assert ESV.GET.response_of() is ESV.GET_RES
    assert ESV.GET.response_of(success=False) is ESV.GET_SNA
    assert ESV.SETC.response_of() is ESV.SET_RES
    assert ESV.SETC.response_of(False) is ESV.SETC_SNA
    assert ESV.SETI.response_of() is None
    assert ESV.SETI.response_of(False) is ESV.SETI_SNA
    assert ESV.INF_REQ.response_of() is ESV.INF
    assert ESV.INF_REQ.response_of(False) is ESV.INF_SNA
    assert ESV.SETGET.response_of() is ESV.SETGET_RES
    assert ESV.SETGET.response_of(False) is ESV.SETGET_SNA
    assert ESV.INFC.response_of() is ESV.INFC_RES
    assert ESV.INF.response_of() is None
    assert ESV.GET_RES.response_of() is None
    assert {e for e in ESV if e.is_request} == {
        ESV.SETI,
        ESV.SETC,
        ESV.GET,
        ESV.INF_REQ,
        ESV.SETGET,
    }
    assert len(ESV) == 16
    assert all(e.is_sna == (e.name.endswith("_SNA")) for e in ESV)


# ---------------------------------------------------------------------------------------------
# rejections


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter"),
        (GET_E0[:11], "shorter"),
        (b"\x11" + GET_E0[1:], "EHD1"),
        (b"\x10\x82" + GET_E0[2:], "arbitrary"),
        (b"\x10\x83" + GET_E0[2:], "EHD2"),
        (GET_E0[:10] + b"\x99" + GET_E0[11:], "unknown ESV"),
        (GET_E0[:-2], "frame ends"),
        (GET_E0[:11] + b"\x02" + GET_E0[12:], "says 2 properties"),
        (GET_RES_E0[:-1], "overruns"),
        (GET_E0 + b"\x00", "trailing"),
        (SETGET[:-3], "OPCGet"),
    ],
)
def test_decode_rejects(data: bytes, reason: str) -> None:
    with pytest.raises(EchonetError, match=reason):
        decode(data)


def test_echonet_error_is_invalid_input() -> None:
    assert issubclass(EchonetError, InvalidInput)


def test_frame_validation() -> None:
    with pytest.raises(EchonetError, match="TID"):
        Frame(0x10000, CONTROLLER, LV_SMART_METER, ESV.GET)
    with pytest.raises(EchonetError, match="Set list"):
        Frame(0, CONTROLLER, LV_SMART_METER, ESV.GET, (), (Property(0xE5, b"\x01"),))
    with pytest.raises(EchonetError, match="OPC"):
        Frame(0, CONTROLLER, LV_SMART_METER, ESV.GET, tuple(Property(0x80) for _ in range(256)))
    with pytest.raises(EchonetError, match="PDC"):
        Property(0x80, bytes(256))
    with pytest.raises(EchonetError, match="EPC"):
        Property(0x100)


# ---------------------------------------------------------------------------------------------
# properties (Hypothesis)

bytes_ = st.integers(0, 0xFF)
eojs = st.builds(EOJ, bytes_, bytes_, bytes_)
props = st.builds(Property, bytes_, st.binary(max_size=255))
prop_lists = st.lists(props, max_size=6).map(tuple)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    esv = draw(st.sampled_from(list(ESV)))
    set_props = draw(prop_lists) if esv.has_set_get_lists else ()
    return Frame(
        draw(st.integers(0, 0xFFFF)), draw(eojs), draw(eojs), esv, draw(prop_lists), set_props
    )


@given(frames())
def test_frame_round_trip(frame: Frame) -> None:
    data = encode(frame)
    assert decode(data) == frame
    assert decode(bytearray(data)) == frame


@given(frames(), st.data())
def test_truncated_frames_are_refused(frame: Frame, data: st.DataObject) -> None:
    wire = encode(frame)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(EchonetError):
        decode(wire[:cut])


@given(frames(), st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_refused(frame: Frame, extra: bytes) -> None:
    with pytest.raises(EchonetError, match="trailing"):
        decode(encode(frame) + extra)


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_echonet_error(data: bytes) -> None:
    try:
        frame = decode(data)
    except EchonetError:
        return
    assert encode(frame) == data


@given(st.binary(max_size=40).map(lambda tail: b"\x10\x81" + tail))
def test_random_format1_bodies_raise_only_echonet_error(data: bytes) -> None:
    try:
        frame = decode(data)
    except EchonetError:
        return
    assert encode(frame) == data


epc_sets = st.frozensets(st.integers(0x80, 0xFF), max_size=128)
near_boundary = st.integers(12, 20).flatmap(
    lambda n: st.frozensets(st.integers(0x80, 0xFF), min_size=n, max_size=n)
)


@given(st.one_of(epc_sets, near_boundary))
def test_property_map_round_trip(epcs: frozenset[int]) -> None:
    edt = encode_property_map(epcs)
    assert edt[0] == len(epcs)
    assert len(edt) == (1 + len(epcs) if len(epcs) < 16 else 17)
    assert decode_property_map(edt) == epcs


@given(st.binary(max_size=20))
def test_property_map_random_bytes_raise_only_echonet_error(edt: bytes) -> None:
    try:
        epcs = decode_property_map(edt)
    except EchonetError:
        return
    assert decode_property_map(encode_property_map(epcs)) == epcs  # lists may come unsorted
