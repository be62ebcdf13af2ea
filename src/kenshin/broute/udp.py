"""ECHONET Lite over UDP for simulated meter nodes (SPEC B1, B2): an asyncio adapter.

Each :class:`~kenshin.broute.node.MeterNode` gets its own UDP socket, bound to its own address
(many nodes on 127.0.0.x, all on port 3610: Linux routes all of 127/8 to the loopback
interface) or its own port. A reply goes to the request's source address and port. At start-up,
and whenever a Set changes an announced property, the node sends its INF to the ECHONET Lite
multicast group 224.0.23.0:3610 — where the host has no multicast route this fails and is
logged, nothing more — and to any extra ``announce_to`` addresses.

Multicast discovery (SPEC B1): a controller finds nodes by sending a request (typically a Get of
the node profile's 0xD6 instance list) to 224.0.23.0:3610. Sockets bound to unicast addresses
never see it, so the server opens one shared listener on the group — bound to the group address
itself (so it never takes the nodes' unicast datagrams), SO_REUSEADDR/SO_REUSEPORT, joined on the
nodes' interface (127.0.0.1 for loopback) — and hands each request to every node it addresses.
Each node answers from its own socket, unicast to the requester. Where the host refuses the
group (no multicast route, no permission) one warning is logged and the nodes serve unicast only.

Bad input is logged (debug) and dropped; the socket keeps serving.

Access (SPEC B1, B2, X5): with a :class:`~kenshin.broute.credentials.LanAccess`, a node answers
only the devices registered for its meter — over Wi-Fi for an LV meter, Ethernet for an HV one,
several devices up to the policy's limit — and drops datagrams from any other address unanswered;
each refusal is logged to ``kenshin.broute.access``. Without one, every source is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from kenshin.broute.credentials import LanAccess, Medium
from kenshin.broute.echonet import EOJ, ESV, UDP_PORT, decode
from kenshin.broute.node import MeterNode
from kenshin.errors import EchonetError

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


def _addressed(node: MeterNode, deoj: EOJ) -> bool:
    """Whether ``node`` answers a request to ``deoj``: one of its objects, or instance 0x00 of
    one of their classes (the rule of :meth:`MeterNode.handle`)."""
    return any(
        deoj == obj.eoj or (deoj.instance == 0 and deoj.class_id == obj.eoj.class_id)
        for obj in node.objects
    )


class MulticastProtocol(asyncio.DatagramProtocol):
    """The shared listener on 224.0.23.0 (SPEC B1): each multicast request goes to every node it
    addresses, which answers from its own socket, unicast to the requester."""

    def __init__(self, nodes: Sequence[NodeProtocol]) -> None:
        self.nodes = nodes
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0
        self.rejected = 0  # datagrams that were not valid ECHONET Lite

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received += 1
        try:
            frame = decode(data)
        except EchonetError as exc:
            self.rejected += 1
            log.debug("multicast: ignoring a datagram from %s:%d: %s", addr[0], addr[1], exc)
            return
        if not (frame.esv.is_request or frame.esv is ESV.INFC):
            return  # INFs (our nodes' own among them) and replies need no answer
        for protocol in self.nodes:
            # only the addressed nodes: the others would not answer, and with an allow-list
            # every unaddressed node would log a refusal
            if _addressed(protocol.node, frame.deoj):
                protocol.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("multicast listener: socket error %s", exc)


def multicast_interface(host: str) -> str:
    """The interface address to join the group on for nodes bound to ``host``: 127.0.0.1 for
    any loopback address, the address itself otherwise, 0.0.0.0 (the kernel's choice) for the
    wildcard or a name."""
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return "0.0.0.0"
    if address.is_loopback:
        return "127.0.0.1"
    return str(address)


def _multicast_socket(port: int, interfaces: Sequence[str]) -> socket.socket:
    """A socket on ``MULTICAST_GROUP:port`` that joined the group on ``interfaces``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):  # several servers on one host may all listen
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:  # bound to the group, the socket gets only group datagrams (Linux, BSD)
            sock.bind((MULTICAST_GROUP, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise
            sock.bind(("", port))  # Windows cannot bind a group address
        for interface in interfaces:
            mreq = socket.inet_aton(MULTICAST_GROUP) + socket.inet_aton(interface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    except BaseException:
        sock.close()
        raise
    return sock


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
    multicast: bool = True  # listen on 224.0.23.0 when the host allows it
    multicast_port: int | None = None  # None: the first node's port (3610 in practice)
    protocols: list[NodeProtocol] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)
    listener: MulticastProtocol | None = None  # the multicast listener, when it is open

    async def start(self, nodes: Sequence[MeterNode], endpoints: Sequence[Endpoint]) -> None:
        """Bind every node to its endpoint, open the multicast listener (when ``multicast`` and
        the host allows it) and send each node's start-up 0xD5 INF."""
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
            if self.multicast and self.protocols:
                await self._listen_multicast(loop)
        except BaseException:
            self.close()
            raise
        for protocol in self.protocols:
            protocol.announce()

    async def _listen_multicast(self, loop: asyncio.AbstractEventLoop) -> None:
        port = self.endpoints[0].port if self.multicast_port is None else self.multicast_port
        interfaces = sorted({multicast_interface(e.host) for e in self.endpoints})
        try:
            sock = _multicast_socket(port, interfaces)
            _, self.listener = await loop.create_datagram_endpoint(
                functools.partial(MulticastProtocol, self.protocols), sock=sock
            )
        except OSError as exc:  # no multicast route, no permission, port taken by a node
            hint = ""
            if exc.errno == errno.EADDRINUSE and any(
                e.port == port and ipaddress.IPv4Address(e.host).is_unspecified
                for e in self.endpoints
            ):
                hint = f" (a node holds 0.0.0.0:{port}: bind the nodes to a specific address)"
            log.warning(
                "multicast discovery off: cannot join %s:%d on %s (%s)%s; "
                "the nodes answer unicast only",
                MULTICAST_GROUP,
                port,
                ", ".join(interfaces),
                exc,
                hint,
            )
            return
        log.info(
            "multicast discovery on %s:%d via %s", MULTICAST_GROUP, port, ", ".join(interfaces)
        )

    def close(self) -> None:
        for protocol in self.protocols:
            if protocol.transport is not None:
                protocol.transport.close()
        if self.listener is not None and self.listener.transport is not None:
            self.listener.transport.close()

    @property
    def requests(self) -> int:
        return sum(p.node.requests for p in self.protocols)
