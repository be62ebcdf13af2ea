"""``kenshin broute``: serve simulated meters over ECHONET Lite on UDP (SPEC B1–B3).

``kenshin broute serve --meters 3`` builds a small fleet, simulates the last hours at once (so
the meters hold 30-minute and 1-minute history), then keeps it running in real or accelerated
time and serves one ECHONET Lite node per meter until Ctrl-C. Other B-route commands (a Wi-SUN
module) can be added to :data:`broute_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from kenshin.core.clock import AcceleratedClock
from kenshin.core.ids import Area
from kenshin.core.timeslots import JST, Resolution, from_epoch_us, to_epoch_us
from kenshin.errors import InvalidSetting, UnknownMeter

if TYPE_CHECKING:  # the fleet and the nodes load numpy and pyarrow: only when serving
    from kenshin.broute.node import MeterNode
    from kenshin.broute.udp import BRouteServer, Endpoint
    from kenshin.fleet.simulator import Fleet

broute_app = typer.Typer(
    name="broute",
    help="B-route: simulated smart meters as ECHONET Lite nodes (SPEC B1–B3).",
    no_args_is_help=True,
)
console = Console(stderr=True)
out = Console()
log = logging.getLogger(__name__)
STEP = dt.timedelta(minutes=5)  # the fleet's physics step


def build_fleet(
    n_meters: int, seed: int, area: Area, backfill_hours: int, now: dt.datetime | None = None
) -> Fleet:
    """A fleet started ``backfill_hours`` before the last 30-minute boundary and run up to it."""
    from kenshin.fleet.simulator import Fleet, FleetConfig

    step30 = Resolution.MIN30.microseconds
    origin_us = to_epoch_us(now or dt.datetime.now(JST)) // step30 * step30
    origin = from_epoch_us(origin_us)
    fleet = Fleet(
        FleetConfig(
            n_meters=n_meters,
            start=origin - dt.timedelta(hours=backfill_hours),
            seed=seed,
            area=area,
        )
    )
    while fleet.now < origin:
        fleet.step()
    return fleet


def choose_keys(fleet: Fleet, meter: list[str] | None, count: int) -> list[int]:
    """Keys of the meters to serve: the named supply points, or the first ``count``, with at
    least one HV meter among them when the fleet has one and more than one is served."""
    import numpy as np

    pop = fleet.population
    if meter:
        index = {str(s): i for i, s in enumerate(pop.supply_point_id)}
        missing = [m for m in meter if m not in index]
        if missing:
            raise UnknownMeter(
                f"no meter {', '.join(missing)} in this fleet ({len(pop)} meters, "
                "same --fleet-meters/--seed/--area as the system it comes from)"
            )
        return [index[m] for m in meter]
    keys = list(range(min(count, len(pop))))
    hv = np.flatnonzero(~pop.is_low_voltage)
    if count > 1 and len(hv) and not any(k in hv for k in keys):
        keys[-1] = int(hv[0])
    return keys


def node_table(nodes: list[MeterNode], endpoints: list[Endpoint]) -> Table:
    table = Table(title="ECHONET Lite nodes (UDP)")
    for column in ("address", "supply point id", "object", "meter", "gen", "kWh/count"):
        table.add_column(column, no_wrap=True)
    for node, endpoint in zip(nodes, endpoints, strict=True):
        info = node.info
        table.add_row(
            str(endpoint),
            info.supply_point_id,
            f"0x{node.meter.eoj}",
            info.meter_class.label,
            str(int(info.generation)),
            f"{info.kwh_per_count:g}",
        )
    return table


async def run_fleet(fleet: Fleet, clock: AcceleratedClock, stop: asyncio.Event) -> None:
    """Step the fleet whenever the clock passes the next 5-minute boundary."""
    while not stop.is_set():
        due = fleet.now + STEP
        wait = clock.wall_seconds_until(due)
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(wait, 1.0))
            continue
        fleet.step()
        await asyncio.sleep(0)


async def serve_nodes(
    fleet: Fleet,
    keys: list[int],
    endpoints: list[Endpoint],
    speed: float,
    stop: asyncio.Event,
    announce_to: list[tuple[str, int]] | None = None,
) -> BRouteServer:
    """Serve the nodes and run the fleet until ``stop`` is set; returns the (closed) server."""
    from kenshin.broute.node import build_nodes
    from kenshin.broute.state import FleetState
    from kenshin.broute.udp import BRouteServer

    clock = AcceleratedClock(fleet.now, speed)
    state = FleetState(fleet, clock)
    nodes = build_nodes(state, keys)
    server = BRouteServer(announce_to=announce_to or [])
    await server.start(nodes, endpoints)
    out.print(node_table(nodes, server.endpoints))
    console.print(
        f"simulated time {fleet.now:%Y-%m-%d %H:%M} JST at {speed:g}× · Ctrl-C stops",
        highlight=False,
    )
    try:
        await run_fleet(fleet, clock, stop)
    finally:
        server.close()
    return server


@broute_app.command()
def serve(
    meter: Annotated[
        list[str] | None,
        typer.Option("--meter", help="Supply point id to serve (repeatable)."),
    ] = None,
    meters: Annotated[
        int, typer.Option("--meters", "-n", min=1, max=5000, help="Serve the first N meters.")
    ] = 1,
    bind: Annotated[str, typer.Option(help="Address of the first node.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="UDP port (ECHONET: 3610).")] = 3610,
    spread: Annotated[
        str,
        typer.Option(help="Nodes on consecutive 'addresses' (same port), 'ports', or 'auto'."),
    ] = "auto",
    speed: Annotated[
        float, typer.Option(min=1.0, max=100_000.0, help="Simulated seconds per real second.")
    ] = 1.0,
    seed: Annotated[int, typer.Option(min=0, help="Random seed of the fleet.")] = 1,
    fleet_meters: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Size of the simulated fleet.")
    ] = 2000,
    area: Annotated[str, typer.Option(help="Utility area: code 01–10 or name.")] = "tokyo",
    backfill_hours: Annotated[
        int, typer.Option(min=2, max=24 * 7, help="Hours simulated at once before serving.")
    ] = 26,
) -> None:
    """Serve simulated meters as ECHONET Lite nodes (0x0288 LV, 0x028A HV) until Ctrl-C."""
    try:
        the_area = Area.parse(area)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--area") from None
    from kenshin.broute.udp import plan_endpoints

    count = len(meter) if meter else meters
    try:
        endpoints = plan_endpoints(bind, port, count, spread)
    except ValueError as exc:
        raise InvalidSetting(str(exc)) from None
    console.print(f"building a fleet of {fleet_meters:,} meters, simulating {backfill_hours} h…")
    fleet = build_fleet(max(fleet_meters, count), seed, the_area, backfill_hours)
    keys = choose_keys(fleet, meter, count)

    async def main() -> None:
        stop = asyncio.Event()
        try:
            await serve_nodes(fleet, keys, endpoints, speed, stop)
        except OSError as exc:
            raise InvalidSetting(f"cannot bind {bind}:{port}: {exc}") from None

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    console.print("stopped")
