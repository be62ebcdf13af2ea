"""The meter node answers with the fleet's own numbers (SPEC B1–B3, M1, M2, M5)."""

from __future__ import annotations

import datetime as dt
import itertools
import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kenshin.broute import edt as enc
from kenshin.broute.echonet import EOJ, ESV, decode, decode_property_map
from kenshin.broute.node import MeterNode
from kenshin.broute.properties import HV_SMART_METER, LV_SMART_METER, NODE_PROFILE, property_maps
from kenshin.broute.state import FleetState
from kenshin.core.channels import Channel
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.timeslots import JST, US_PER_MINUTE, Resolution, from_epoch_us, to_epoch_us
from kenshin.fleet.simulator import Fleet
from tests.broute.fleetdata import build_fleet, first_key, only_reply, request, shared_fleet, values

NO_DATA = 0xFFFFFFFE
US30 = Resolution.MIN30.microseconds


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return shared_fleet()


@pytest.fixture(scope="module")
def state(fleet: Fleet) -> FleetState:
    return FleetState(fleet)


def lv_node(state: FleetState, meter_class: MeterClass = MeterClass.LV_1P3W) -> MeterNode:
    return MeterNode(state, first_key(state.fleet, meter_class, Generation.GEN2))


def get(node: MeterNode, deoj: EOJ, *epcs: int) -> dict[int, bytes]:
    frame = only_reply(node.handle(request(deoj, ESV.GET, list(epcs))))
    assert frame.esv is ESV.GET_RES, frame
    return values(frame)


def u32s(edt: bytes) -> list[int]:
    return [int.from_bytes(edt[i : i + 4], "big") for i in range(0, len(edt), 4)]


def stamp(edt: bytes) -> dt.datetime:
    y = int.from_bytes(edt[:2], "big")
    return dt.datetime(y, edt[2], edt[3], edt[4], edt[5], edt[6] if len(edt) > 6 else 0, tzinfo=JST)


def dt6(t_us: int) -> bytes:
    return enc.date_time6(from_epoch_us(t_us))


# -- node profile and announcement


def test_announcement_is_the_instance_list_inf(state: FleetState) -> None:
    node = lv_node(state)
    first, second = node.announcement(), node.announcement()
    assert first[:2] == b"\x10\x81" and first[4:] == bytes.fromhex("0ef0010ef0017301d50401028801")
    assert first[2:4] != second[2:4]  # each INF has its own TID
    hv = MeterNode(state, first_key(state.fleet, MeterClass.HV, Generation.GEN1))
    assert hv.announcement()[4:] == bytes.fromhex("0ef0010ef0017301d50401028a01")


def test_node_profile_lists_the_meter(state: FleetState) -> None:
    lv = lv_node(state)
    hv = MeterNode(state, first_key(state.fleet, MeterClass.HV, Generation.GEN2))
    for node, eoj in ((lv, "028801"), (hv, "028a01")):
        got = get(node, EOJ.node_profile(), 0x80, 0x83, 0x8A, 0xD3, 0xD4, 0xD6, 0xD7, 0x9F)
        assert got[0x80] == b"\x30"
        assert got[0xD3] == b"\x00\x00\x01"
        assert got[0xD4] == b"\x00\x02"  # the meter class and the node profile
        assert got[0xD6].hex() == "01" + eoj
        assert got[0xD7].hex() == "01" + eoj[:4]
        assert len(got[0x83]) == 17 and got[0x83][0] == 0xFE
        assert decode_property_map(got[0x9F]) == property_maps(NODE_PROFILE)[2]
    assert get(lv, EOJ.node_profile(), 0x83) != get(hv, EOJ.node_profile(), 0x83)  # unique


def test_property_maps_and_sizes_follow_the_tables(state: FleetState) -> None:
    """Every EPC in the Get map answers with an EDT of the size the MRA table allows."""
    fleet = state.fleet
    cases = [
        (MeterClass.LV_1P3W, Generation.GEN2, LV_SMART_METER),
        (MeterClass.LV_1P3W, Generation.GEN1, LV_SMART_METER),
        (MeterClass.HV, Generation.GEN1, HV_SMART_METER),
        (MeterClass.HV, Generation.GEN2, HV_SMART_METER),
    ]
    for meter_class, generation, table in cases:
        node = MeterNode(state, first_key(fleet, meter_class, generation))
        maps = get(node, node.meter.eoj, 0x9D, 0x9E, 0x9F)
        getmap = decode_property_map(maps[0x9F])
        assert decode_property_map(maps[0x9E]) == node.meter.set_map
        assert {0x80, 0x81, 0x88} <= decode_property_map(maps[0x9D])
        for epc in sorted(getmap):
            edt = get(node, node.meter.eoj, epc)[epc]
            spec = node.meter.table[epc]
            assert spec.accepts_size(len(edt)), (hex(epc), len(edt))
            if epc in table:
                assert table[epc].accepts_size(len(edt))
        one_minute = {0xD0, 0xEE, 0xEF} if meter_class.is_low_voltage else {0xF0, 0xF1, 0xF2}
        if generation is Generation.GEN2:
            assert one_minute <= getmap  # SPEC M1/M2: 1-minute values on gen-2 meters
        else:
            assert not one_minute & getmap  # SPEC M3: gen-1 meters have none


# -- LV values equal the fleet's


def test_lv_registers_and_units_give_the_fleets_energy(state: FleetState) -> None:
    fleet = state.fleet
    for meter_class in (MeterClass.LV_1P2W, MeterClass.LV_1P3W, MeterClass.LV_3P3W):
        node = lv_node(state, meter_class)
        key = node.info.key
        got = get(node, node.meter.eoj, 0xD3, 0xD7, 0xE0, 0xE1, 0xE3)
        regs = fleet.meters.registers()[:, key]
        assert int.from_bytes(got[0xE0], "big") == regs[0]
        assert int.from_bytes(got[0xE3], "big") == regs[1]
        assert got[0xD7] == b"\x08"
        unit = {0x01: 0.1, 0x02: 0.01, 0x03: 0.001}[got[0xE1][0]]
        coefficient = int.from_bytes(got[0xD3], "big")
        kwh = int.from_bytes(got[0xE0], "big") * coefficient * unit
        assert kwh == pytest.approx(regs[0] * fleet.population.kwh_per_count[key], rel=1e-12)


def test_lv_instantaneous_power_and_currents(state: FleetState) -> None:
    fleet = state.fleet
    for meter_class in (MeterClass.LV_1P2W, MeterClass.LV_1P3W):
        node = lv_node(state, meter_class)
        key = node.info.key
        got = get(node, node.meter.eoj, 0xE7, 0xE8)
        power = int.from_bytes(got[0xE7], "big", signed=True)
        assert power == round(float(fleet.meters.power_w[key]))
        amps = fleet.meters.instantaneous_current_a(np.array([key]))[:, 0]
        r = int.from_bytes(got[0xE8][:2], "big", signed=True)
        t = int.from_bytes(got[0xE8][2:], "big", signed=True)
        assert r == round(float(amps[0]) * 10)
        if meter_class is MeterClass.LV_1P2W:
            assert got[0xE8][2:] == b"\x7f\xfe"  # single-phase two-wire: no T phase
        else:
            assert t == round(float(amps[1]) * 10)
            assert r > 0 and t > 0


def test_lv_fixed_time_value_and_latest_minute(state: FleetState) -> None:
    fleet = state.fleet
    node = lv_node(state)
    key = node.info.key
    got = get(node, node.meter.eoj, 0xEA, 0xEB, 0xD0)
    now = fleet.meters.now_us
    last30 = now - now % US30
    assert stamp(got[0xEA][:7]) == from_epoch_us(last30)
    row = fleet.meters.ring30.rows_for(np.array([last30]))[0]
    assert u32s(got[0xEA][7:]) == [fleet.meters.ring30.data[Channel.ACTIVE_FORWARD][row, key]]
    assert u32s(got[0xEB][7:]) == [fleet.meters.ring30.data[Channel.ACTIVE_REVERSE][row, key]]
    assert stamp(got[0xD0][:7]) == fleet.now
    times, regs = fleet.meters.one_minute_registers(np.array([key]), 60)
    assert int(times[-1]) == now
    assert u32s(got[0xD0][7:]) == [regs[-1, 0], fleet.meters.registers()[1, key]]
    assert regs[-1, 0] == fleet.meters.registers()[0, key]


def test_e2_gives_the_half_hour_readings_of_the_chosen_day(state: FleetState) -> None:
    fleet = state.fleet
    node = lv_node(state)
    key = node.info.key
    assert get(node, node.meter.eoj, 0xE2)[0xE2][:2] == b"\x00\xff"  # MRA default: no day yet
    ring = fleet.meters.ring30
    for day, date in ((1, dt.date(2026, 4, 1)), (0, dt.date(2026, 4, 2))):
        reply = only_reply(node.handle(request(node.meter.eoj, ESV.SETC, [(0xE5, bytes([day]))])))
        assert reply.esv is ESV.SET_RES and values(reply) == {0xE5: b""}
        got = get(node, node.meter.eoj, 0xE2, 0xE4)
        assert int.from_bytes(got[0xE2][:2], "big") == day
        midnight = to_epoch_us(dt.datetime(date.year, date.month, date.day, tzinfo=JST))
        expected_f, expected_r = [], []
        for i in range(48):
            t = midnight + i * US30
            if t > fleet.meters.now_us:
                expected_f.append(NO_DATA)
                expected_r.append(NO_DATA)
                continue
            row = ring.rows_for(np.array([t]))[0]
            expected_f.append(int(ring.data[Channel.ACTIVE_FORWARD][row, key]))
            expected_r.append(int(ring.data[Channel.ACTIVE_REVERSE][row, key]))
        assert u32s(got[0xE2][2:]) == expected_f
        assert u32s(got[0xE4][2:]) == expected_r
    # today at 03:30: 00:00 … 03:30 held (8 values), the rest is in the future
    assert sum(v != NO_DATA for v in u32s(got[0xE2][2:])) == 8


def test_e2_differences_are_the_fleets_30_minute_values(state: FleetState) -> None:
    fleet = state.fleet
    node = lv_node(state)
    node.handle(request(node.meter.eoj, ESV.SETC, [(0xE5, b"\x00")]))
    readings = u32s(get(node, node.meter.eoj, 0xE2)[0xE2][2:])[:8]
    diffs = [(b - a) % 10**8 for a, b in itertools.pairwise(readings)]
    intervals = fleet.meters.interval_values(Resolution.MIN30, Channel.ACTIVE_FORWARD, 7)
    assert diffs == intervals[:, node.info.key].tolist()


def test_ec_after_setc_ed(state: FleetState) -> None:
    fleet = state.fleet
    node = lv_node(state)
    key = node.info.key
    t0 = fleet.meters.now_us - fleet.meters.now_us % US30
    assert (
        only_reply(node.handle(request(node.meter.eoj, ESV.SETC, [(0xED, dt6(t0) + b"\x0c")]))).esv
        is ESV.SET_RES
    )
    edt = get(node, node.meter.eoj, 0xEC)[0xEC]
    assert edt[:7] == dt6(t0) + b"\x0c" and len(edt) == 7 + 8 * 12
    ring = fleet.meters.ring30
    rows = ring.rows_for(np.array([t0 - i * US30 for i in range(12)]))
    pairs = u32s(edt[7:])
    assert pairs[0::2] == ring.data[Channel.ACTIVE_FORWARD][rows, key].tolist()
    assert pairs[1::2] == ring.data[Channel.ACTIVE_REVERSE][rows, key].tolist()
    # minutes must be 0 or 30: SetC_SNA echoes the rejected EDT
    bad = dt6(t0 + 15 * US_PER_MINUTE) + b"\x01"
    reply = only_reply(node.handle(request(node.meter.eoj, ESV.SETC, [(0xED, bad)])))
    assert reply.esv is ESV.SETC_SNA and values(reply) == {0xED: bad}


def test_ee_after_setc_ef_gives_one_minute_readings(state: FleetState) -> None:
    fleet = state.fleet
    node = lv_node(state)
    key = node.info.key
    now = fleet.meters.now_us
    times, regs = fleet.meters.one_minute_registers(np.array([key]), 60)
    by_time = dict(zip(times.tolist(), regs[:, 0].tolist(), strict=True))
    # entry 0 at the requested minute, then one minute earlier each
    t0 = now - 3 * US_PER_MINUTE
    node.handle(request(node.meter.eoj, ESV.SETC, [(0xEF, dt6(t0) + b"\x0a")]))
    edt = get(node, node.meter.eoj, 0xEE)[0xEE]
    assert edt[:7] == dt6(t0) + b"\x0a"
    forward = u32s(edt[7:])[0::2]
    reverse = u32s(edt[7:])[1::2]
    assert forward == [by_time[t0 - i * US_PER_MINUTE] for i in range(10)]
    assert len(set(forward)) > 1  # the minutes differ: real 1-minute values
    assert all(r != NO_DATA for r in reverse)
    # at 5-minute boundaries the reverse register is the fleet's own
    ring5 = fleet.meters.ring5
    t5 = now - 5 * US_PER_MINUTE
    row = ring5.rows_for(np.array([t5]))[0]
    assert reverse[2] == ring5.data[Channel.ACTIVE_REVERSE][row, key]


@pytest.mark.parametrize(("minutes_back", "held"), [(60, 1), (61, 0), (65, 0), (-1, 0), (-5, 0)])
def test_ee_has_no_data_beyond_the_60_minute_ring(
    state: FleetState, minutes_back: int, held: int
) -> None:
    """SPEC B3: 1-minute values are kept 60 minutes; older or future minutes have no data."""
    node = lv_node(state)
    t0 = state.fleet.meters.now_us - minutes_back * US_PER_MINUTE
    node.handle(request(node.meter.eoj, ESV.SETC, [(0xEF, dt6(t0) + b"\x01")]))
    pair = u32s(get(node, node.meter.eoj, 0xEE)[0xEE][7:])
    assert sum(v != NO_DATA for v in pair) == 2 * held


def test_young_fleet_has_no_minutes_before_its_start() -> None:
    fleet = build_fleet(steps=2, n_meters=50)  # 10 minutes old
    node = MeterNode(FleetState(fleet), 0)
    t0 = fleet.meters.now_us
    node.handle(request(node.meter.eoj, ESV.SETC, [(0xEF, dt6(t0) + b"\x0a")]))
    forward = u32s(get(node, node.meter.eoj, 0xEE)[0xEE][7:])[0::2]
    assert [v != NO_DATA for v in forward] == [True] * 10
    node.handle(request(node.meter.eoj, ESV.SETC, [(0xEF, dt6(t0 - 8 * US_PER_MINUTE) + b"\x05")]))
    forward = u32s(get(node, node.meter.eoj, 0xEE)[0xEE][7:])[0::2]
    assert [v != NO_DATA for v in forward] == [True, True, True, False, False]


def test_node_follows_the_fleet_as_it_steps() -> None:
    fleet = build_fleet(steps=20, n_meters=50)
    node = MeterNode(FleetState(fleet), 0)
    before = get(node, node.meter.eoj, 0xE0)[0xE0]
    for _ in range(12):
        fleet.step()
    after = get(node, node.meter.eoj, 0xE0)[0xE0]
    assert int.from_bytes(after, "big") == fleet.meters.registers()[0, 0]
    assert after != before


# -- HV


def test_hv_energy_demand_and_extension(state: FleetState) -> None:
    fleet = state.fleet
    key = first_key(fleet, MeterClass.HV, Generation.GEN2)
    node = MeterNode(state, key)
    assert node.meter.eoj == EOJ.hv_smart_meter()
    got = get(node, node.meter.eoj, 0xD3, 0xD4, 0xE2, 0xE3, 0xE6, 0xC3, 0xC5, 0xF0, 0xF7, 0xF8)
    regs = fleet.meters.registers()[:, key]
    assert u32s(got[0xE2][7:]) == [regs[0]]
    assert stamp(got[0xE2][:7]) == fleet.now
    coefficient = int.from_bytes(got[0xD3], "big")
    assert coefficient == fleet.population.coefficient[key] and got[0xD4] == b"\x00"
    unit = {0x02: 0.01, 0x01: 0.1}[got[0xE6][0]]
    assert regs[0] * coefficient * unit == pytest.approx(
        regs[0] * fleet.population.kwh_per_count[key], rel=1e-12
    )
    # demand: 2 × the register step of the last half hour, × C5 × D3 × D4 = kW
    step = fleet.meters.interval_values(Resolution.MIN30, Channel.ACTIVE_FORWARD, 1)[0, key]
    assert u32s(got[0xC3][7:]) == [2 * step]
    assert got[0xC5] == got[0xE6]
    # extension (SPEC M2/B3): latest 1-minute reading, power, currents
    times, minute_regs = fleet.meters.one_minute_registers(np.array([key]), 60)
    assert u32s(got[0xF0][7:11]) == [minute_regs[-1, 0]]
    assert int.from_bytes(got[0xF7], "big", signed=True) == round(float(fleet.meters.power_w[key]))
    amps = fleet.meters.instantaneous_current_a(np.array([key]))[:, 0]
    assert int.from_bytes(got[0xF8][:2], "big", signed=True) == round(float(amps[0]) * 10)
    # 0xF2 → 0xF1 like 0xEF → 0xEE
    t0 = fleet.meters.now_us - US_PER_MINUTE
    node.handle(request(node.meter.eoj, ESV.SETC, [(0xF2, dt6(t0) + b"\x02")]))
    by_time = dict(zip(times.tolist(), minute_regs[:, 0].tolist(), strict=True))
    history = u32s(get(node, node.meter.eoj, 0xF1)[0xF1][7:])
    assert history[0::2] == [by_time[t0], by_time[t0 - US_PER_MINUTE]]


def test_hv_history_day_is_0xe1(state: FleetState) -> None:
    fleet = state.fleet
    key = first_key(fleet, MeterClass.HV, Generation.GEN1)
    node = MeterNode(state, key)
    reply = only_reply(node.handle(request(node.meter.eoj, ESV.SETC, [(0xE1, b"\x01")])))
    assert reply.esv is ESV.SET_RES
    got = get(node, node.meter.eoj, 0xE7, 0xC6)
    readings = u32s(got[0xE7][2:])
    demands = u32s(got[0xC6][2:])
    assert NO_DATA not in readings
    # demand of each slot ending at the fixed time = 2 × the step into that reading
    assert demands[1:] == [2 * ((b - a) % 10**8) for a, b in itertools.pairwise(readings)]
    first = to_epoch_us(dt.datetime(2026, 4, 1, tzinfo=JST))
    row = fleet.meters.ring30.rows_for(np.array([first]))[0]
    assert readings[0] == fleet.meters.ring30.data[Channel.ACTIVE_FORWARD][row, key]
    assert demands[0] == NO_DATA  # the half hour before the fleet started


# -- services and addressing


def test_get_sna_lists_every_requested_epc(state: FleetState) -> None:
    node = lv_node(state)
    frame = only_reply(node.handle(request(node.meter.eoj, ESV.GET, [0xE0, 0x99, 0xE1])))
    assert frame.esv is ESV.GET_SNA
    assert [p.epc for p in frame.properties] == [0xE0, 0x99, 0xE1]
    got = values(frame)
    assert got[0x99] == b""
    assert int.from_bytes(got[0xE0], "big") == state.fleet.meters.registers()[0, node.info.key]
    assert len(got[0xE1]) == 1


def test_reply_echoes_tid_and_swaps_eojs(state: FleetState) -> None:
    node = lv_node(state)
    data = request(EOJ(0x02, 0x88, 0x00), ESV.GET, [0xE0], tid=0xBEEF)  # instance 0: all
    frame = only_reply(node.handle(data))
    assert frame.tid == 0xBEEF
    assert frame.seoj == EOJ.lv_smart_meter() and frame.deoj == EOJ.controller()
    assert only_reply(node.handle(request(EOJ.node_profile(0), ESV.GET, [0xD6]))).seoj == (
        EOJ.node_profile()
    )


@pytest.mark.parametrize(
    "deoj",
    [EOJ(0x02, 0x88, 0x02), EOJ(0x02, 0x8A, 0x01), EOJ(0x01, 0x30, 0x01), EOJ(0x0E, 0xF0, 2)],
)
def test_frames_to_other_objects_are_ignored(state: FleetState, deoj: EOJ) -> None:
    assert lv_node(state).handle(request(deoj, ESV.GET, [0x80])) == []


def test_replies_and_notifications_are_not_answered(state: FleetState) -> None:
    node = lv_node(state)
    for esv in (ESV.GET_RES, ESV.INF, ESV.GET_SNA, ESV.SET_RES):
        assert node.handle(request(node.meter.eoj, esv, [(0x80, b"\x30")])) == []
    arbitrary = bytearray(request(node.meter.eoj, ESV.GET, [0x80]))
    arbitrary[1] = 0x82
    assert node.handle(bytes(arbitrary)) == []


def test_seti_answers_only_failures(state: FleetState) -> None:
    node = lv_node(state)
    assert node.handle(request(node.meter.eoj, ESV.SETI, [(0xE5, b"\x02")])) == []
    assert get(node, node.meter.eoj, 0xE5)[0xE5] == b"\x02"
    frame = only_reply(node.handle(request(node.meter.eoj, ESV.SETI, [(0xE5, b"\x64")])))
    assert frame.esv is ESV.SETI_SNA and values(frame) == {0xE5: b"\x64"}  # 100 > 99
    frame = only_reply(node.handle(request(node.meter.eoj, ESV.SETC, [(0xE0, b"\0\0\0\0")])))
    assert frame.esv is ESV.SETC_SNA  # E0 is read-only


def test_setget(state: FleetState) -> None:
    node = lv_node(state)
    frame = only_reply(
        node.handle(request(node.meter.eoj, ESV.SETGET, [0xE2], set_props=[(0xE5, b"\x01")]))
    )
    assert frame.esv is ESV.SETGET_RES
    assert frame.set_properties[0].epc == 0xE5 and frame.set_properties[0].edt == b""
    assert frame.properties[0].edt[:2] == b"\x00\x01"  # the Set went first
    frame = only_reply(
        node.handle(request(node.meter.eoj, ESV.SETGET, [0xE5, 0x77], set_props=[(0xE5, b"\xc8")]))
    )
    assert frame.esv is ESV.SETGET_SNA
    assert frame.set_properties[0].edt == b"\xc8"
    assert values(frame) == {0xE5: b"\x01", 0x77: b""}


def test_inf_req_and_status_change_announcement(state: FleetState) -> None:
    node = lv_node(state)
    frame = only_reply(node.handle(request(node.meter.eoj, ESV.INF_REQ, [0x80])))
    assert frame.esv is ESV.INF and values(frame) == {0x80: b"\x30"}
    frame = only_reply(node.handle(request(node.meter.eoj, ESV.INF_REQ, [0x7F])))
    assert frame.esv is ESV.INF_SNA
    assert node.pop_announcements() == []
    node.handle(request(node.meter.eoj, ESV.SETC, [(0x81, b"\x08")]))
    (notice,) = node.pop_announcements()
    inf = decode(notice)
    assert inf.esv is ESV.INF and values(inf) == {0x81: b"\x08"}
    assert inf.deoj == EOJ.node_profile()
    node.handle(request(node.meter.eoj, ESV.SETC, [(0x81, b"\x08")]))
    assert node.pop_announcements() == []  # no change, no announcement


def test_infc_is_acknowledged(state: FleetState) -> None:
    node = lv_node(state)
    frame = only_reply(node.handle(request(EOJ.node_profile(), ESV.INFC, [(0xD5, b"\x00")])))
    assert frame.esv is ESV.INFC_RES and values(frame) == {0xD5: b""}


# -- robustness


def _valid_frames(state: FleetState) -> list[bytes]:
    lv = lv_node(state).meter.eoj
    return [
        request(lv, ESV.GET, [0xE0, 0xE2, 0xEE, 0x9F]),
        request(lv, ESV.SETC, [(0xEF, bytes.fromhex("07ea04020300") + b"\x0a")]),
        request(lv, ESV.SETC, [(0xE5, b"\x01"), (0xED, bytes.fromhex("07ea0401173001"))]),
        request(lv, ESV.SETGET, [0xE2, 0xEC], set_props=[(0xE5, b"\x00")]),
        request(EOJ.node_profile(), ESV.GET, [0x83, 0xD6, 0xD7]),
        request(EOJ.node_profile(), ESV.INF_REQ, [0xD5]),
    ]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    node = MeterNode(FleetState(shared_fleet()), 0)
    handler = _Collect()
    logging.getLogger("kenshin.broute.node").addHandler(handler)
    try:
        replies = node.handle(data, "fuzz")
    finally:
        logging.getLogger("kenshin.broute.node").removeHandler(handler)
    assert handler.warnings == []
    for reply in replies:
        decode(reply)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pick=st.integers(0, 5),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 400),
    tail=st.binary(max_size=8),
)
def test_mutated_frames_never_raise(
    pick: int, edits: list[tuple[int, int]], cut: int, tail: bytes
) -> None:
    state = FleetState(shared_fleet())
    node = lv_node(state)
    frame = bytearray(_valid_frames(state)[pick])
    for pos, value in edits:
        if frame:
            frame[pos % len(frame)] = value
    mutated = bytes(frame[: max(cut, 12)]) + tail
    handler = _Collect()
    logging.getLogger("kenshin.broute.node").addHandler(handler)
    try:
        replies = node.handle(mutated, "fuzz")
    finally:
        logging.getLogger("kenshin.broute.node").removeHandler(handler)
    assert handler.warnings == []  # nothing failed inside the node: it answered or refused
    for reply in replies:
        answer = decode(reply)
        assert answer.esv.is_sna or answer.esv in (
            ESV.GET_RES,
            ESV.SET_RES,
            ESV.INF,
            ESV.SETGET_RES,
            ESV.INFC_RES,
        )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.warnings.append(record.getMessage())
