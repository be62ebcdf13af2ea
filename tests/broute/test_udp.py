"""The asyncio UDP adapter: replies to the source, survives bad input, many nodes (SPEC B1)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket

import pytest

from kenshin.broute.credentials import AccessPolicy, LanAccess, Medium, SessionTable
from kenshin.broute.echonet import EOJ, ESV, decode
from kenshin.broute.node import build_nodes
from kenshin.broute.state import FleetState
from kenshin.broute.udp import BRouteServer, Endpoint, plan_endpoints
from kenshin.core.meterspec import Generation, MeterClass
from tests.broute.fleetdata import first_key, request, shared_fleet


def test_plan_endpoints() -> None:
    assert [str(e) for e in plan_endpoints("127.0.0.1", 3610, 3)] == [
        "127.0.0.1:3610",
        "127.0.0.2:3610",
        "127.0.0.3:3610",
    ]
    assert [str(e) for e in plan_endpoints("0.0.0.0", 4000, 2)] == ["0.0.0.0:4000", "0.0.0.0:4001"]
    assert plan_endpoints("127.0.0.1", 5000, 2, spread="ports")[1] == Endpoint("127.0.0.1", 5001)
    with pytest.raises(ValueError, match="127"):
        plan_endpoints("127.255.255.254", 3610, 5)
    with pytest.raises(ValueError, match="65535"):
        plan_endpoints("127.0.0.1", 65535, 2, spread="ports")


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))


def test_nodes_on_ports_reply_to_the_source_and_survive_bad_input() -> None:
    async def main() -> None:
        state = FleetState(shared_fleet())
        nodes = build_nodes(state, range(5))
        loop = asyncio.get_running_loop()
        client_t, client = await loop.create_datagram_endpoint(_Client, local_addr=("127.0.0.1", 0))
        client_addr = client_t.get_extra_info("sockname")
        server = BRouteServer(announce_to=[client_addr])
        await server.start(nodes, [Endpoint("127.0.0.1", 0) for _ in nodes])  # any free port
        try:
            # start-up: every node announced itself (0xD5 INF)
            announced = set()
            for _ in nodes:
                data, addr = await asyncio.wait_for(client.received.get(), 5)
                assert decode(data).esv is ESV.INF
                announced.add(addr)
            assert announced == {(e.host, e.port) for e in server.endpoints}
            for node, endpoint in zip(nodes, server.endpoints, strict=True):
                target = (endpoint.host, endpoint.port)
                client_t.sendto(b"\x10\x81garbage", target)
                client_t.sendto(request(EOJ.lv_smart_meter(0), ESV.GET, [0xE0]), target)
                client_t.sendto(request(EOJ.hv_smart_meter(0), ESV.GET, [0xE2]), target)
                client_t.sendto(request(EOJ.node_profile(), ESV.GET, [0xD6], tid=7), target)
                replies = []
                for _ in range(2):  # garbage and the other class's Get get no answer
                    data, addr = await asyncio.wait_for(client.received.get(), 5)
                    assert addr == target  # the reply comes from the node's own socket
                    replies.append(decode(data))
                assert replies[0].seoj == node.meter.eoj and replies[0].esv is ESV.GET_RES
                assert replies[1].tid == 7 and replies[1].esv is ESV.GET_RES
                assert node.rejected == 1
            assert client.received.empty()
        finally:
            server.close()
            client_t.close()

    asyncio.run(main())


def test_bind_conflict_is_reported() -> None:
    async def main() -> None:
        state = FleetState(shared_fleet())
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        holder.bind(("127.0.0.1", 0))
        try:
            server = BRouteServer()
            with pytest.raises(OSError, match="in use"):
                await server.start(build_nodes(state, [0]), [Endpoint(*holder.getsockname())])
            assert all(p.transport is None or p.transport.is_closing() for p in server.protocols)
        finally:
            holder.close()

    asyncio.run(main())


def test_cli_serves_chosen_meters_and_steps_the_fleet() -> None:
    from kenshin.cli.broute import build_fleet, choose_keys, serve_nodes
    from kenshin.core.ids import Area
    from kenshin.core.timeslots import JST
    from kenshin.errors import UnknownMeter

    fleet = build_fleet(300, 3, Area.TOKYO, 2, now=dt.datetime(2026, 4, 1, 12, 10, tzinfo=JST))
    assert fleet.now == dt.datetime(2026, 4, 1, 12, 0, tzinfo=JST)
    keys = choose_keys(fleet, None, 3)
    assert not fleet.population.is_low_voltage[keys[-1]]  # an HV meter among them
    spid = str(fleet.population.supply_point_id[7])
    assert choose_keys(fleet, [spid], 1) == [7]
    with pytest.raises(UnknownMeter):
        choose_keys(fleet, ["0300000000000000000000"], 1)

    async def main() -> None:
        stop = asyncio.Event()
        endpoints = [Endpoint("127.0.0.1", 0) for _ in keys]
        task = asyncio.create_task(serve_nodes(fleet, keys, endpoints, 3000.0, stop))
        await asyncio.sleep(0.5)  # 25 simulated minutes at 3000×
        stop.set()
        server = await asyncio.wait_for(task, 5)
        assert len(server.endpoints) == 3
        assert fleet.now >= dt.datetime(2026, 4, 1, 12, 15, tzinfo=JST)

    asyncio.run(main())


def test_wifi_and_ethernet_answer_only_registered_devices() -> None:
    """SPEC B1/B2: Wi-Fi (LV) and Ethernet (HV) serve registered devices up to a limit; any other
    source gets no reply and the refusal is logged (X5)."""

    async def main() -> None:
        fleet = shared_fleet()
        state = FleetState(fleet)
        lv_key = first_key(fleet, MeterClass.LV_1P3W, Generation.GEN2)
        hv_key = first_key(fleet, MeterClass.HV, Generation.GEN2)
        lv, hv = build_nodes(state, [lv_key, hv_key])
        table = SessionTable(
            {Medium.WIFI: AccessPolicy.wifi(1), Medium.ETHERNET: AccessPolicy.ethernet(2)}
        )
        access = LanAccess(
            table,
            {lv.supply_point_id: ["127.0.0.1", "127.0.0.3"], hv.supply_point_id: ["127.0.0.1"]},
        )
        loop = asyncio.get_running_loop()
        clients = {}
        for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            clients[host] = await loop.create_datagram_endpoint(_Client, local_addr=(host, 0))
        server = BRouteServer(access=access)
        await server.start([lv, hv], [Endpoint("127.0.0.1", 0) for _ in range(2)])
        lv_at, hv_at = ((e.host, e.port) for e in server.endpoints)
        get_lv = request(EOJ.lv_smart_meter(0), ESV.GET, [0xE0])
        get_hv = request(EOJ.hv_smart_meter(0), ESV.GET, [0xE0])

        async def reply(host: str) -> tuple[bytes, tuple[str, int]]:
            return await asyncio.wait_for(clients[host][1].received.get(), 5)

        try:
            # an unregistered device first; the same socket then answers a registered one, so
            # by the time that reply arrives the first datagram has been handled (and dropped)
            clients["127.0.0.2"][0].sendto(get_lv, lv_at)
            clients["127.0.0.1"][0].sendto(get_lv, lv_at)
            data, addr = await reply("127.0.0.1")
            assert addr == lv_at and decode(data).esv is ESV.GET_RES
            # registered, but Wi-FI here allows one device at a time: 127.0.0.1 holds it
            clients["127.0.0.3"][0].sendto(get_lv, lv_at)
            clients["127.0.0.2"][0].sendto(get_hv, hv_at)  # not registered for the HV meter
            clients["127.0.0.1"][0].sendto(get_lv, lv_at)
            clients["127.0.0.1"][0].sendto(get_hv, hv_at)
            got = {(await reply("127.0.0.1"))[1] for _ in range(2)}
            assert got == {lv_at, hv_at}
            assert clients["127.0.0.2"][1].received.empty()
            assert clients["127.0.0.3"][1].received.empty()
            lv_proto, hv_proto = server.protocols
            assert (lv_proto.refused, hv_proto.refused) == (2, 1)
            assert (lv_proto.medium, hv_proto.medium) == (Medium.WIFI, Medium.ETHERNET)
            assert lv.requests == 2 and hv.requests == 1  # refused datagrams never reach a node
            refusals = [(e.device, e.medium, e.reason) for e in table.audit if e.action == "refuse"]
            assert refusals[0] == ("127.0.0.2", Medium.WIFI, "not a registered device")
            assert refusals[1][:2] == ("127.0.0.3", Medium.WIFI)
            assert "allows 1 device" in refusals[1][2]
            assert refusals[2] == ("127.0.0.2", Medium.ETHERNET, "not a registered device")
            starts = [e.device for e in table.audit if e.action == "start"]
            assert starts == ["127.0.0.1", "127.0.0.1"]  # one session per meter, not per datagram
        finally:
            server.close()
            for transport, _ in clients.values():
                transport.close()

    asyncio.run(main())
