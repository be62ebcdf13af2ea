"""The B-route inside the running system (issue 13 item 1): ECHONET Lite nodes for meters of the
live fleet itself, so a HEMS reads the same registers the A-route delivers (SPEC B1, B3).

The nodes read the fleet through :class:`LockedFleetState`, under the lock the live runner
steps the fleet with, so an answer never mixes two steps; they run in an asyncio loop on a
thread of their own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from kenshin.broute.node import MeterNode, build_nodes
from kenshin.broute.state import FleetState
from kenshin.broute.udp import BRouteServer, Endpoint
from kenshin.core.clock import Clock
from kenshin.fleet.simulator import Fleet


class LockedFleetState(FleetState):
    """A :class:`FleetState` whose reads hold the lock the fleet is stepped under."""

    def __init__(self, fleet: Fleet, clock: Clock | None, lock: AbstractContextManager[Any]):
        super().__init__(fleet, clock)
        self._lock = lock

    def registers(self, key: int) -> tuple[int, int, int]:
        with self._lock:
            return super().registers(key)

    def power_w(self, key: int) -> int:
        with self._lock:
            return super().power_w(key)

    def currents_da(self, key: int) -> tuple[int, int]:
        with self._lock:
            return super().currents_da(key)

    def half_hour_registers(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return super().half_hour_registers(*args, **kwargs)

    def minute_registers(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return super().minute_registers(*args, **kwargs)


class LiveBRoute:
    """Nodes for ``keys`` of the live fleet on ``endpoints``, served until :meth:`stop`."""

    def __init__(
        self,
        fleet: Fleet,
        keys: Sequence[int],
        endpoints: Sequence[Endpoint],
        clock: Clock,
        lock: AbstractContextManager[Any],
        multicast: bool = False,
    ) -> None:
        self.nodes: list[MeterNode] = build_nodes(LockedFleetState(fleet, clock, lock), keys)
        self.server = BRouteServer(multicast=multicast)
        self._endpoints = list(endpoints)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kenshin-broute", daemon=True)

    def start(self, timeout_s: float = 10.0) -> list[Endpoint]:
        """Bind every node; the endpoints they got (a port 0 becomes a free one). A bind that
        fails (an address in use) is raised here, before anything else starts."""
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("the B-route nodes did not start")
        if self._error is not None:
            raise self._error
        return list(self.server.endpoints)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.start(self.nodes, self._endpoints))
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self.server.close()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def live_wisun(
    fleet: Fleet,
    key: int,
    registry: Any,
    clock: Clock,
    lock: AbstractContextManager[Any],
    dialect: str = "bp35a1",
) -> Any:
    """A virtual Wi-SUN module (SKSTACK on a pty) in front of meter ``key`` of the live fleet,
    checking B-route credentials against ``registry`` at each join: the registry the API issues
    into, so credentials issued through the API work at once (SPEC B2, B4)."""
    from kenshin.broute.wisun import serve_wisun

    node = MeterNode(LockedFleetState(fleet, clock, lock), key)
    return serve_wisun(node, registry, node.supply_point_id, dialect)
