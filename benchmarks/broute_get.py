"""Benchmark of the B-route ECHONET Lite nodes over loopback UDP (SPEC B1, B2).

The nodes run in a child process (one asyncio loop: one core); the client runs in this process
with plain sockets. ``--pin`` pins the server to CPU 0 and the client to CPU 1; on a shared
machine that can land on a busy CPU, so it is off by default. The load average is printed:
round-trip tails on a busy host measure the scheduler, not the node.

Figures (printed as a table):
1. One node: Get 0xE0 round trip, one request at a time, p50/p99; target p99 ≤ 2 ms.
2. 1,000 nodes in one process (ports on 127.0.0.1): Get 0xE0 transactions served per second,
   with ``--window`` requests in flight spread over the nodes; target ≥ 5,000/s.

Usage: ``python benchmarks/broute_get.py [--nodes 1000] [--seconds 5] [--window 256]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import time
from multiprocessing.connection import Connection

import numpy as np
from rich.console import Console
from rich.table import Table

from kenshin.broute.echonet import CONTROLLER, EOJ, ESV, Frame, Property, encode


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


def _serve(n_nodes: int, conn: Connection, pin: bool) -> None:
    """Child process: a fleet, ``n_nodes`` nodes on free ports, serve until told to stop."""
    import datetime as dt

    from kenshin.broute.node import build_nodes
    from kenshin.broute.state import FleetState
    from kenshin.broute.udp import BRouteServer, Endpoint
    from kenshin.core.timeslots import JST
    from kenshin.fleet.simulator import Fleet, FleetConfig

    if pin:
        _pin(0)
    fleet = Fleet(FleetConfig(n_meters=max(n_nodes, 10), start=dt.datetime(2026, 4, 1, tzinfo=JST)))
    for _ in range(24):
        fleet.step()
    nodes = build_nodes(FleetState(fleet), range(n_nodes))

    async def main() -> None:
        server = BRouteServer()
        await server.start(nodes, [Endpoint("127.0.0.1", 0) for _ in nodes])
        conn.send(
            [
                (e.host, e.port, n.info.is_low_voltage)
                for e, n in zip(server.endpoints, nodes, strict=True)
            ]
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)  # any message: stop
        conn.send(server.requests)
        server.close()

    asyncio.run(main())


def _get(tid: int, deoj: EOJ) -> bytes:
    return encode(Frame(tid, CONTROLLER, deoj, ESV.GET, (Property(0xE0),)))


def round_trips(target: tuple[str, int], count: int) -> np.ndarray:
    """Latencies [ms] of ``count`` sequential Get round trips."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    sock.connect(target)
    out = np.empty(count)
    for i in range(count):
        data = _get(i & 0xFFFF, EOJ.lv_smart_meter(0))
        t = time.perf_counter()
        sock.send(data)
        sock.recv(512)
        out[i] = (time.perf_counter() - t) * 1000.0
    sock.close()
    return out


def throughput(
    targets: list[tuple[str, int, bool]], seconds: float, window: int
) -> tuple[int, int]:
    """(replies, requests) with ``window`` requests in flight for ``seconds``.

    LV nodes get Get 0xE0 (cumulative energy), HV nodes Get 0xE2 (the same with a timestamp).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    lv = _get(1, EOJ.lv_smart_meter(0))
    hv = encode(Frame(1, CONTROLLER, EOJ.hv_smart_meter(0), ESV.GET, (Property(0xE2),)))
    plan = [(lv if is_lv else hv, (host, port)) for host, port, is_lv in targets]
    sent = received = 0
    nxt = 0
    end = time.perf_counter() + seconds
    for _ in range(window):
        sock.sendto(*plan[nxt % len(plan)])
        nxt += 1
        sent += 1
    while time.perf_counter() < end:
        try:
            sock.recv(512)
        except TimeoutError:  # a lost datagram: put another one in flight
            sock.sendto(*plan[nxt % len(plan)])
            nxt += 1
            sent += 1
            continue
        received += 1
        sock.sendto(*plan[nxt % len(plan)])
        nxt += 1
        sent += 1
    sock.close()
    return received, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--round-trips", type=int, default=5000)
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, client on CPU 1")
    args = parser.parse_args()
    if args.pin:
        _pin(1)
    ctx = mp.get_context("spawn")
    table = Table(title="B-route ECHONET Lite over loopback UDP")
    for column in ("figure", "value", "target"):
        table.add_column(column)

    for n_nodes in (1, args.nodes):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(n_nodes, child, args.pin), daemon=True)
        proc.start()
        targets = parent.recv()
        if n_nodes == 1:
            target = targets[0][:2]
            round_trips(target, 200)  # warm-up
            ms = round_trips(target, args.round_trips)
            p50, p99, p999 = np.percentile(ms, [50, 99, 99.9])
            table.add_row("1 node: Get round trip p50", f"{p50:.3f} ms", "")
            table.add_row("1 node: Get round trip p99", f"{p99:.3f} ms", "≤ 2 ms")
            table.add_row("1 node: Get round trip p99.9", f"{p999:.3f} ms", "")
        else:
            throughput(targets, 0.5, args.window)  # warm-up
            received, sent = throughput(targets, args.seconds, args.window)
            table.add_row(
                f"{n_nodes:,} nodes, one process: Get/s served",
                f"{received / args.seconds:,.0f}",
                "≥ 5,000/s",
            )
            table.add_row("  replies / requests", f"{received:,} / {sent:,}", "")
        parent.send("stop")
        parent.recv()
        proc.join(5)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table.add_row("host: CPUs, 1-min load average", f"{os.cpu_count()}, {load:.2f}", "")
    Console().print(table)


if __name__ == "__main__":
    main()
