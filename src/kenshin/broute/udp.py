"""ECHONET Lite over UDP for simulated meter nodes (SPEC B1, B2): an asyncio adapter.

Each :class:`~kenshin.broute.node.MeterNode` gets its own UDP socket, bound to its own address
(many nodes on 127.0.0.x, all on port 3610: Linux routes all of 127/8 to the loopback
interface) or its own port. A reply goes to the request's source address and port. At start-up,
and whenever a Set changes an announced property, the node sends its INF to the ECHONET Lite
multicast group 224.0.23.0:3610 — where the host has no multicast route this fails and is
logged, nothing more — and to any extra ``announce_to`` addresses.

Bad input is logged (debug) and dropped; the socket keeps serving.

Access (SPEC B1, B2, X5): with a :class:`~kenshin.broute.credentials.LanAccess`, a node answers
only the devices registered for its meter — over Wi-Fi for an LV meter, Ethernet for an HV one,
several devices up to the policy's limit — and drops datagrams from any other address unanswered;
each refusal is logged to ``kenshin.broute.access``. Without one, every source is answered.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from kenshin.broute.credentials import LanAccess, Medium
from kenshin.broute.echonet import UDP_PORT
from kenshin.broute.node import MeterNode

log = logging.getLogger(__name__)
MULTICAST_GROUP = "224.0.23.0"
Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one node listens."""

    host: str
    port: int = UDP_PORT

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def plan_endpoints(bind: str, port: int, count: int, spread: str = "auto") -> list[Endpoint]:
    """Addresses for ``count`` nodes starting at ``bind:port``.

    ``spread`` is ``"addresses"`` (consecutive IPv4 addresses, same port: every node on 3610 as
    clients expect), ``"ports"`` (same address, consecutive ports) or ``"auto"`` (addresses on a
    loopback ``bind``, else ports).
    """
    if count < 1:
        raise ValueError("at least one node")
    if spread == "auto":
        try:
            loopback = ipaddress.IPv4Address(bind).is_loopback
        except ValueError:
            loopback = False
        spread = "addresses" if loopback else "ports"
    if spread == "ports":
        if port + count - 1 > 65535:
            raise ValueError(f"{count} ports from {port} run past 65535")
        return [Endpoint(bind, port + i) for i in range(count)]
    if spread != "addresses":
        raise ValueError(f"spread must be 'addresses', 'ports' or 'auto', got {spread!r}")
    first = ipaddress.IPv4Address(bind)
    last = first + (count - 1)
    if first.is_loopback and not last.is_loopback:
        raise ValueError(f"{count} addresses from {bind} leave 127.0.0.0/8")
    return [Endpoint(str(first + i), port) for i in range(count)]


class NodeProtocol(asyncio.DatagramProtocol):
    """The datagram protocol of one node's socket."""

    def __init__(
        self,
        node: MeterNode,
        announce_to: Sequence[Address] = (),
        access: LanAccess | None = None,
    ) -> None:
        self.node = node
        self.announce_to = list(announce_to)
        self.access = access
        # B1: an LV meter's second route is Wi-Fi; B2: an HV meter's first is Ethernet
        self.medium = Medium.WIFI if node.info.is_low_voltage else Medium.ETHERNET
        self.transport: asyncio.DatagramTransport | None = None
        self.sent = 0
        self.send_errors = 0
        self.refused = 0  # datagrams from unregistered devices, dropped

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        access = self.access
        if access is not None and not access.admit(self.node.supply_point_id, self.medium, addr[0]):
            self.refused += 1  # no reply at all (X5: logged by the access table)
            return
        for reply in self.node.handle(data, f"{addr[0]}:{addr[1]}"):
            self._send(reply, addr)
        for notice in self.node.pop_announcements():
            self.announce(notice)

    def error_received(self, exc: Exception) -> None:
        log.debug("node %s: socket error %s", self.node.supply_point_id, exc)

    def announce(self, frame: bytes | None = None) -> None:
        """Send an INF (default: the 0xD5 instance list) to multicast and ``announce_to``."""
        data = self.node.announcement() if frame is None else frame
        for addr in [(MULTICAST_GROUP, UDP_PORT), *self.announce_to]:
            self._send(data, addr)

    def _send(self, data: bytes, addr: Address) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        try:
            self.transport.sendto(data, addr)
            self.sent += 1
        except OSError as exc:  # e.g. no multicast route on this host
            self.send_errors += 1
            log.debug("node %s: cannot send to %s: %s", self.node.supply_point_id, addr, exc)


def _socket(endpoint: Endpoint) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((endpoint.host, endpoint.port))
        try:  # multicast INFs leave through the bound interface
            sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(endpoint.host)
            )
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        except OSError as exc:
            log.debug("no multicast interface for %s: %s", endpoint, exc)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class BRouteServer:
    """Nodes served on UDP endpoints in one event loop (SPEC B1, B2)."""

    announce_to: Sequence[Address] = ()
    access: LanAccess | None = None  # None: every source is answered
    protocols: list[NodeProtocol] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)

    async def start(self, nodes: Sequence[MeterNode], endpoints: Sequence[Endpoint]) -> None:
        """Bind every node to its endpoint and send its start-up 0xD5 INF."""
        if len(nodes) != len(endpoints):
            raise ValueError("one endpoint per node")
        loop = asyncio.get_running_loop()
        try:
            for node, endpoint in zip(nodes, endpoints, strict=True):
                sock = _socket(endpoint)
                bound = sock.getsockname()
                _, protocol = await loop.create_datagram_endpoint(
                    functools.partial(NodeProtocol, node, self.announce_to, self.access), sock=sock
                )
                self.protocols.append(protocol)
                self.endpoints.append(Endpoint(bound[0], bound[1]))
        except BaseException:
            self.close()
            raise
        for protocol in self.protocols:
            protocol.announce()

    def close(self) -> None:
        for protocol in self.protocols:
            if protocol.transport is not None:
                protocol.transport.close()

    @property
    def requests(self) -> int:
        return sum(p.node.requests for p in self.protocols)
