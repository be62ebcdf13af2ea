"""An independent ECHONET Lite client (pychonet) reads a simulated meter over UDP (SPEC B1, B3).

pychonet always sends to port 3610, so the node listens on its own loopback address
(127.0.0.x:3610; Linux routes all of 127/8 to the loopback interface) and pychonet on
127.0.0.1 with a free port. The node announces itself (0xD5 INF) to pychonet's address.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from pychonet import ECHONETAPIClient
from pychonet.lib.udpserver import UDPServer
from pychonet.LowVoltageSmartElectricEnergyMeter import LowVoltageSmartElectricEnergyMeter

from kenshin.broute import edt as enc
from kenshin.broute.node import MeterNode
from kenshin.broute.state import FleetState
from kenshin.broute.udp import BRouteServer, Endpoint
from kenshin.core.channels import Channel
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.timeslots import JST, US_PER_MINUTE, Resolution, from_epoch_us, to_epoch_us
from kenshin.fleet.simulator import Fleet
from tests.broute.fleetdata import first_key, shared_fleet

NO_DATA = 0xFFFFFFFE
LV = (0x02, 0x88, 0x01)
log = logging.getLogger(__name__)


@dataclass
class Session:
    api: ECHONETAPIClient
    host: str
    node: MeterNode
    fleet: Fleet
    discovered: list[str]

    @property
    def meter(self) -> LowVoltageSmartElectricEnergyMeter:
        return LowVoltageSmartElectricEnergyMeter(self.host, self.api)

    async def raw(self, epc: int) -> bytes:
        edt = await self.meter.getMessage(epc)
        assert isinstance(edt, bytes | bytearray), f"no answer for {epc:#x}"
        return bytes(edt)

    async def setc(self, epc: int, edt: bytes) -> bool:
        return bool(await self.meter.setMessage(epc, int.from_bytes(edt, "big"), len(edt)))


async def _start_node(node: MeterNode, announce_to: tuple[str, int]) -> tuple[BRouteServer, str]:
    """Serve ``node`` on the first free 127.0.x.y:3610."""
    base = 10 + os.getpid() % 200
    for i in range(1, 250):
        host = f"127.0.{base}.{i}"
        server = BRouteServer(announce_to=[announce_to])
        try:
            await server.start([node], [Endpoint(host, 3610)])
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return server, host
    raise RuntimeError("no free loopback address for port 3610")


@asynccontextmanager
async def session(key: int) -> AsyncIterator[Session]:
    fleet = shared_fleet()
    node = MeterNode(FleetState(fleet), key)
    udp = UDPServer(local_ip="127.0.0.1")
    udp.run("127.0.0.1", 0, loop=asyncio.get_running_loop())
    api = ECHONETAPIClient(udp)
    discovered: list[str] = []

    async def on_discover(host: str) -> None:
        discovered.append(host)

    api.configure(message_timeout=50, logger=log.debug, discover_callback=on_discover)
    server, host = await _start_node(node, udp._sock.getsockname())
    try:
        yield Session(api, host, node, fleet, discovered)
    finally:
        server.close()
        udp.close()
        await asyncio.sleep(0)


def run(key: int, scenario: Callable[[Session], Awaitable[None]]) -> None:
    async def main() -> None:
        async with session(key) as s:
            await asyncio.wait_for(scenario(s), timeout=30)

    asyncio.run(main())


def lv_key(meter_class: MeterClass = MeterClass.LV_1P3W) -> int:
    return first_key(shared_fleet(), meter_class, Generation.GEN2)


def u32s(edt: bytes) -> list[int]:
    return [int.from_bytes(edt[i : i + 4], "big") for i in range(0, len(edt), 4)]


async def discover(s: Session) -> dict[str, Any]:
    assert await s.api.discover(s.host)
    assert await s.api.getAllPropertyMaps(s.host, *LV)
    state: dict[str, Any] = s.api.state[s.host]
    return state


def test_discovery_and_property_maps() -> None:
    async def scenario(s: Session) -> None:
        for _ in range(50):  # the start-up 0xD5 INF reaches pychonet as an unknown node
            if s.discovered:
                break
            await asyncio.sleep(0.02)
        assert s.discovered == [s.host]
        state = await discover(s)
        assert state["discovered"] is True
        assert list(state["instances"]) == [0x02]
        assert list(state["instances"][0x02]) == [0x88]
        assert state["uid"] == s.node.profile.get(0x83)[1:].hex()  # type: ignore[index]
        maps = state["instances"][0x02][0x88][0x01]
        assert set(maps[0x9F]) == set(s.node.meter.get_map)
        assert set(maps[0x9E]) == {0x81, 0xE5, 0xED, 0xEF}
        assert set(maps[0x9D]) == {0x80, 0x81, 0x88}

    run(lv_key(), scenario)


@pytest.mark.parametrize("meter_class", [MeterClass.LV_1P2W, MeterClass.LV_1P3W])
def test_decoded_values_equal_the_fleet(meter_class: MeterClass) -> None:
    key = lv_key(meter_class)

    async def scenario(s: Session) -> None:
        await discover(s)
        got = await s.meter.update([0xE0, 0xE1, 0xE3, 0xD3, 0xD7, 0xE7, 0xE8])
        meters = s.fleet.meters
        regs = meters.registers()[:, key]
        assert got[0xE0] == regs[0]
        assert got[0xE3] == regs[1]
        assert got[0xD3] == s.fleet.population.coefficient[key] == 1
        assert got[0xD7] == 8
        assert got[0xE1] == 0.01
        # what a HEMS computes: E0 × D3 × E1 = the fleet's energy [kWh]
        assert got[0xE0] * got[0xD3] * got[0xE1] == pytest.approx(
            regs[0] * s.fleet.population.kwh_per_count[key], rel=1e-12
        )
        assert got[0xE7] == round(float(meters.power_w[key]))
        amps = meters.instantaneous_current_a(np.array([key]))[:, 0]
        assert got[0xE8]["r_phase_amperes"] == pytest.approx(round(float(amps[0]) * 10) / 10)
        if meter_class is MeterClass.LV_1P2W:
            assert got[0xE8]["t_phase_amperes"] is None  # 0x7FFE: no T phase
        else:
            assert got[0xE8]["t_phase_amperes"] == pytest.approx(round(float(amps[1]) * 10) / 10)

    run(key, scenario)


def test_raw_d0_and_ea() -> None:
    key = lv_key()

    async def scenario(s: Session) -> None:
        await discover(s)
        meters = s.fleet.meters
        d0 = await s.raw(0xD0)
        assert d0[:7] == enc.date_time7(s.fleet.now)
        _, minute_regs = meters.one_minute_registers(np.array([key]), 60)
        assert u32s(d0[7:]) == [minute_regs[-1, 0], meters.registers()[1, key]]
        ea = await s.raw(0xEA)
        last30 = meters.now_us - meters.now_us % Resolution.MIN30.microseconds
        assert ea[:7] == enc.date_time7(from_epoch_us(last30))
        row = meters.ring30.rows_for(np.array([last30]))[0]
        assert u32s(ea[7:]) == [meters.ring30.data[Channel.ACTIVE_FORWARD][row, key]]

    run(key, scenario)


def test_e2_after_setc_e5() -> None:
    key = lv_key()

    async def scenario(s: Session) -> None:
        await discover(s)
        assert await s.setc(0xE5, b"\x01")  # yesterday
        e2 = await s.raw(0xE2)
        assert e2[:2] == b"\x00\x01" and len(e2) == 194
        ring = s.fleet.meters.ring30
        midnight = to_epoch_us(dt.datetime(2026, 4, 1, tzinfo=JST))
        times = np.array([midnight + i * Resolution.MIN30.microseconds for i in range(48)])
        expected = ring.data[Channel.ACTIVE_FORWARD][ring.rows_for(times), key]
        assert u32s(e2[2:]) == expected.tolist()
        assert not await s.setc(0xE5, b"\x64")  # day 100: SetC_SNA

    run(key, scenario)


def test_ee_after_setc_ef() -> None:
    key = lv_key()

    async def scenario(s: Session) -> None:
        await discover(s)
        meters = s.fleet.meters
        times, regs = meters.one_minute_registers(np.array([key]), 60)
        by_time = dict(zip(times.tolist(), regs[:, 0].tolist(), strict=True))
        t0 = meters.now_us - 10 * US_PER_MINUTE
        request = enc.date_time6(from_epoch_us(t0)) + b"\x0a"
        assert await s.setc(0xEF, request)
        assert await s.raw(0xEF) == request
        ee = await s.raw(0xEE)
        assert ee[:7] == request and len(ee) == 7 + 8 * 10
        assert u32s(ee[7:])[0::2] == [by_time[t0 - i * US_PER_MINUTE] for i in range(10)]
        # more than 60 minutes back: the meter no longer holds them (SPEC B3)
        old = meters.now_us - 61 * US_PER_MINUTE
        assert await s.setc(0xEF, enc.date_time6(from_epoch_us(old)) + b"\x03")
        ee = await s.raw(0xEE)
        assert u32s(ee[7:]) == [NO_DATA] * 6

    run(key, scenario)
