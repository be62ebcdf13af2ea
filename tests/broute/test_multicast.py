"""Multicast discovery (SPEC B1): requests to 224.0.23.0 reach every addressed node, which
answers unicast from its own socket.

These run over the loopback interface: the nodes on 127.0.x.y, the listener joined to the group
on 127.0.0.1, the client sending with IP_MULTICAST_IF 127.0.0.1. Linux delivers that even when
``lo`` lacks the MULTICAST flag, so nothing here changes system settings.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import numpy as np
import pytest

from kenshin.broute import udp
from kenshin.broute.echonet import EOJ, ESV, Frame, decode
from kenshin.broute.node import MeterNode, build_nodes
from kenshin.broute.state import FleetState
from kenshin.broute.udp import MULTICAST_GROUP, BRouteServer, Endpoint, multicast_interface
from tests.broute.fleetdata import request, shared_fleet, values

Address = tuple[str, int]


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received.put_nowait((data, addr))


def _nodes() -> list[MeterNode]:
    """Two LV nodes and one HV node."""
    fleet = shared_fleet()
    low = fleet.population.is_low_voltage
    keys = [*np.flatnonzero(low)[:2], np.flatnonzero(~low)[0]]
    return build_nodes(FleetState(fleet), keys)


async def _start(nodes: Sequence[MeterNode], port: int | None = None) -> BRouteServer:
    """Serve ``nodes`` on consecutive 127.0.x.y addresses sharing one free port (``port``, or
    any), as ``kenshin broute serve --meters N`` does on 3610."""
    base = 10 + os.getpid() % 200
    for attempt in range(1, 60):
        if port is None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", 0))
                free = probe.getsockname()[1]
        else:
            free = port
        first = 4 * attempt
        server = BRouteServer()
        endpoints = [Endpoint(f"127.0.{base}.{first + i}", free) for i in range(len(nodes))]
        try:
            await server.start(nodes, endpoints)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return server
    raise RuntimeError("no free loopback addresses")


@asynccontextmanager
async def _client() -> AsyncIterator[tuple[asyncio.DatagramTransport, _Client]]:
    """A raw client on 127.0.0.1 that sends multicast through the loopback interface."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    transport, client = await asyncio.get_running_loop().create_datagram_endpoint(
        _Client, sock=sock
    )
    try:
        yield transport, client
    finally:
        transport.close()


async def _replies(client: _Client, count: int) -> dict[Address, Frame]:
    """``count`` replies by source address; then nothing more within 0.2 s."""
    got: dict[Address, Frame] = {}
    for _ in range(count):
        data, addr = await asyncio.wait_for(client.received.get(), 5)
        assert addr not in got, f"two replies from {addr}"
        got[addr] = decode(data)
    await asyncio.sleep(0.2)
    assert client.received.empty(), client.received.get_nowait()
    return got


def test_interface_of_the_nodes() -> None:
    assert multicast_interface("127.0.3.9") == "127.0.0.1"
    assert multicast_interface("192.0.2.2") == "192.0.2.2"
    assert multicast_interface("0.0.0.0") == "0.0.0.0"
    assert multicast_interface("meter.local") == "0.0.0.0"


def test_multicast_get_is_answered_by_every_addressed_node(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kenshin.broute.udp")

    async def main() -> None:
        nodes = _nodes()
        server = await _start(nodes)
        try:
            assert server.listener is not None, caplog.text  # this host must allow it
            group = (MULTICAST_GROUP, server.endpoints[0].port)
            at = {(e.host, e.port): n for e, n in zip(server.endpoints, nodes, strict=True)}
            async with _client() as (transport, client):
                # discovery as HEMS controllers do it: Get 0xD6 from the node profile
                transport.sendto(request(EOJ.node_profile(), ESV.GET, [0xD6], tid=0x0D6), group)
                got = await _replies(client, len(nodes))
                assert set(got) == set(at)  # one reply each, from each node's own socket
                for addr, frame in got.items():
                    node = at[addr]
                    assert frame.esv is ESV.GET_RES and frame.tid == 0x0D6
                    assert frame.seoj == EOJ.node_profile()
                    assert values(frame)[0xD6] == b"\x01" + bytes(node.meter.eoj)

                # the LV class (instance 1 and instance 0): only the LV nodes answer
                lv = {a for a, n in at.items() if n.info.is_low_voltage}
                assert len(lv) == 2
                for deoj in (EOJ.lv_smart_meter(1), EOJ.lv_smart_meter(0)):
                    transport.sendto(request(deoj, ESV.GET, [0xE0]), group)
                    got = await _replies(client, len(lv))
                    assert set(got) == lv
                    assert all(f.seoj == EOJ.lv_smart_meter(1) for f in got.values())
                # the HV class: only the HV node
                transport.sendto(request(EOJ.hv_smart_meter(0), ESV.GET, [0xE0]), group)
                assert set(await _replies(client, 1)) == set(at) - lv

                # malformed datagrams: dropped by the listener, logged, never reach a node
                listener = server.listener
                transport.sendto(b"\x10\x81garbage", group)
                transport.sendto(b"\x10\x82" + bytes(10), group)
                transport.sendto(request(EOJ.node_profile(0), ESV.GET, [0x80]), group)
                got = await _replies(client, len(nodes))
                assert {f.esv for f in got.values()} == {ESV.GET_RES}
                assert listener.rejected == 2
                assert "multicast: ignoring a datagram" in caplog.text
                assert all(n.rejected == 0 for n in nodes)

                # a reply or notification sent to the group is not answered
                inf = request(EOJ.node_profile(), ESV.INF, [(0xD5, b"\x01\x05\xff\x01")])
                transport.sendto(inf, group)
                await _replies(client, 0)

                # unicast still reaches the node's own socket, not the listener
                received = listener.received
                addr = next(iter(at))
                transport.sendto(request(EOJ.node_profile(), ESV.GET, [0xD6]), addr)
                assert set(await _replies(client, 1)) == {addr}
                assert listener.received == received
        finally:
            server.close()

    asyncio.run(main())


def test_without_multicast_the_nodes_serve_unicast(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the host refuses the group: one warning, unicast only; ``multicast=False``: quiet."""

    def refuse(port: int, interfaces: Sequence[str]) -> socket.socket:
        raise OSError(errno.ENODEV, "No such device")

    async def main() -> None:
        nodes = _nodes()[:1]
        monkeypatch.setattr(udp, "_multicast_socket", refuse)
        with caplog.at_level(logging.WARNING, logger="kenshin.broute.udp"):
            server = await _start(nodes)
        try:
            assert server.listener is None
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1
            assert "multicast discovery off" in warnings[0].getMessage()
            assert "No such device" in warnings[0].getMessage()
            async with _client() as (transport, client):
                addr = (server.endpoints[0].host, server.endpoints[0].port)
                transport.sendto(request(EOJ.node_profile(), ESV.GET, [0xD6]), addr)
                assert set(await _replies(client, 1)) == {addr}
        finally:
            server.close()
        monkeypatch.undo()
        caplog.clear()
        quiet = BRouteServer(multicast=False)
        await quiet.start(nodes, [Endpoint("127.0.0.1", 0)])
        quiet.close()
        assert quiet.listener is None and not caplog.records

    asyncio.run(main())


def test_pychonet_discovers_the_nodes_by_multicast() -> None:
    """pychonet's ``discover()`` with no host: Get 0xD6 to 224.0.23.0:3610; every node that
    answers is reported to the discover callback, as in Home Assistant's integration."""
    from pychonet import ECHONETAPIClient
    from pychonet.lib.udpserver import UDPServer

    async def main() -> None:
        nodes = _nodes()
        server = await _start(nodes, port=3610)  # pychonet sends to 3610 only
        udp_server = UDPServer(local_ip="127.0.0.1")  # multicast leaves through lo
        udp_server.run("127.0.0.1", 0, loop=asyncio.get_running_loop())
        api = ECHONETAPIClient(udp_server)
        discovered: list[str] = []

        async def on_discover(host: str) -> None:
            discovered.append(host)

        api.configure(message_timeout=10, logger=logging.getLogger(__name__).debug)
        api.configure(discover_callback=on_discover)
        try:
            assert server.listener is not None
            await api.discover()  # waits out its timeout: the replies come from other hosts
            assert sorted(discovered) == sorted(e.host for e in server.endpoints)
            host = discovered[0]  # then the usual unicast follow-up
            assert await api.discover(host)
            assert api.state[host]["discovered"]
        finally:
            server.close()
            udp_server.close()
            await asyncio.sleep(0)

    asyncio.run(main())
