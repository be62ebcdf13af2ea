"""``kenshin broute``: serve simulated meters over ECHONET Lite (SPEC B1–B4, X5).

``kenshin broute serve --meters 3`` builds a small fleet, simulates the last hours at once (so
the meters hold 30-minute and 1-minute history), then keeps it running in real or accelerated
time and serves one ECHONET Lite node per meter on UDP until Ctrl-C; ``--allow`` restricts the
nodes to registered device addresses (Wi-Fi / Ethernet, B1, B2); the nodes also answer requests
multicast to 224.0.23.0 (discovery, B1) unless ``--no-multicast``.

``kenshin broute wisun --meter ID`` serves one meter behind a virtual Wi-SUN module on a pty;
``kenshin broute credentials --meter ID`` issues or shows its B-route ID and password (B4), kept in
a JSON file (``data/kenshin-broute.json``, next to the default store ``data/kenshin.duckdb``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from kenshin.app.pacing import Pacer
from kenshin.app.stores import DATA_DIR
from kenshin.broute.credentials import (
    DEFAULT_CREDENTIALS_FILE,
    BrouteCredentials,
    CredentialRegistry,
    LanAccess,
)
from kenshin.cli.options import AreaOpt, SeedOpt, SpeedOpt, check_parent, console, out, parse_area
from kenshin.core.clock import AcceleratedClock
from kenshin.core.ids import Area, validate_supply_point_id
from kenshin.core.timeslots import JST, Resolution, from_epoch_us, to_epoch_us
from kenshin.errors import InvalidInput, InvalidSetting, UnknownMeter

if TYPE_CHECKING:  # the fleet and the nodes load numpy and pyarrow: only when serving
    from kenshin.broute.node import MeterNode
    from kenshin.broute.udp import BRouteServer, Endpoint
    from kenshin.broute.wisun import WisunServer
    from kenshin.fleet.simulator import Fleet

broute_app = typer.Typer(
    name="broute",
    help="B-route: simulated smart meters as ECHONET Lite nodes (SPEC B1–B4).",
    no_args_is_help=True,
)
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


AttachStoreOpt = Annotated[
    str | None,
    typer.Option(
        help="Serve the fleet this store (PATH.duckdb or DSN) was made for, brought to the "
        "newest slot it holds: the registers the A-route stored there (instead of a fleet of "
        "its own from --fleet-meters/--seed/--area).",
    ),
]


def attached_fleet(store: str) -> Fleet:
    """The fleet of the store named, at the newest slot it holds (SPEC B3: the same registers
    on both routes)."""
    from kenshin.app.services import fleet_of_store
    from kenshin.app.stores import StoreMode, choose_store, open_store

    location = choose_store(store=store, db=None, postgres=None, default=Path(store))
    opened = open_store(location, StoreMode.READ_ONLY)
    try:
        console.print(
            f"attaching to {location.describe()}: simulating its fleet to its newest slot…"
        )
        return fleet_of_store(opened)
    finally:
        opened.close()


def choose_keys(fleet: Fleet, meter: list[str] | None, count: int) -> list[int]:
    """Keys of the meters to serve: the named supply points, or the first ``count``, with at
    least one HV meter among them when the fleet has one and more than one is served."""
    import numpy as np

    pop = fleet.population
    if meter:
        found = pop.keys_of(meter)
        missing = [m for m, key in zip(meter, found, strict=True) if key is None]
        if missing:
            raise UnknownMeter(
                f"no meter {', '.join(missing)} in this fleet ({len(pop)} meters, "
                "same --fleet-meters/--seed/--area as the system it comes from)"
            )
        return [key for key in found if key is not None]
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
    pacer = Pacer(clock, poll_s=1.0)
    while await pacer.wait_for_async(fleet.now + STEP, stop):
        fleet.step()
        await asyncio.sleep(0)


def keep_stepping(
    fleet: Fleet,
    clock: AcceleratedClock,
    stop: threading.Event,
    lock: AbstractContextManager[Any] | None = None,
) -> None:
    """:func:`run_fleet` for a thread: step the fleet (holding ``lock``) until ``stop`` is set."""
    # the pty thread reads the fleet under the same lock
    Pacer(clock, poll_s=1.0).run(fleet.step, lambda: fleet.now + STEP, stop, lock)


async def serve_nodes(
    fleet: Fleet,
    keys: list[int],
    endpoints: list[Endpoint],
    speed: float,
    stop: asyncio.Event,
    announce_to: list[tuple[str, int]] | None = None,
    access: LanAccess | None = None,
    multicast: bool = True,
) -> BRouteServer:
    """Serve the nodes and run the fleet until ``stop`` is set; returns the (closed) server."""
    from kenshin.broute.node import build_nodes
    from kenshin.broute.state import FleetState
    from kenshin.broute.udp import BRouteServer

    clock = AcceleratedClock(fleet.now, speed)
    state = FleetState(fleet, clock)
    nodes = build_nodes(state, keys)
    server = BRouteServer(announce_to=announce_to or [], access=access, multicast=multicast)
    await server.start(nodes, endpoints)
    out.print(node_table(nodes, server.endpoints))
    if server.listener is not None and server.listener.transport is not None:
        group, group_port = server.listener.transport.get_extra_info("sockname")[:2]
        console.print(f"multicast discovery: requests to {group}:{group_port}", highlight=False)
    elif multicast:  # the reason was logged as a warning
        console.print("multicast discovery unavailable here: unicast only", highlight=False)
    if access is not None:
        allowed = ", ".join(sorted(access.devices(nodes[0].supply_point_id))) or "nobody"
        console.print(f"answering only registered devices: {allowed}", highlight=False)
    console.print(
        f"simulated time {fleet.now:%Y-%m-%d %H:%M} JST at {speed:g}× · Ctrl-C stops",
        highlight=False,
    )
    try:
        await run_fleet(fleet, clock, stop)
    finally:
        server.close()
    return server


# the fleet behind the nodes: the same options for `serve` and `wisun`
FleetMetersOpt = Annotated[
    int, typer.Option(min=1, max=1_000_000, help="Size of the simulated fleet.")
]
BackfillOpt = Annotated[
    int, typer.Option(min=2, max=24 * 7, help="Hours simulated at once before serving.")
]


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
    speed: SpeedOpt = 1.0,
    seed: SeedOpt = 1,
    fleet_meters: FleetMetersOpt = 2000,
    area: AreaOpt = "tokyo",
    backfill_hours: BackfillOpt = 26,
    store: AttachStoreOpt = None,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow",
            help="Answer only this device IP address (repeatable; Wi-Fi/Ethernet, SPEC B1/B2).",
        ),
    ] = None,
    multicast: Annotated[
        bool,
        typer.Option(
            "--multicast/--no-multicast",
            help="Also answer requests sent to 224.0.23.0 (discovery) when the host allows it.",
        ),
    ] = True,
) -> None:
    """Serve simulated meters as ECHONET Lite nodes (0x0288 LV, 0x028A HV) until Ctrl-C."""
    the_area = parse_area(area)
    from kenshin.broute.udp import plan_endpoints

    count = len(meter) if meter else meters
    try:
        endpoints = plan_endpoints(bind, port, count, spread)
    except ValueError as exc:
        raise InvalidSetting(str(exc)) from None
    for address in allow or []:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            message = f"not an IP address: {address!r}"
            raise typer.BadParameter(message, param_hint="--allow") from None
    if store is not None:
        fleet = attached_fleet(store)
    else:
        console.print(
            f"building a fleet of {fleet_meters:,} meters, simulating {backfill_hours} h…"
        )
        fleet = build_fleet(max(fleet_meters, count), seed, the_area, backfill_hours)
    keys = choose_keys(fleet, meter, count)
    access = None
    if allow:
        access = LanAccess()
        for key in keys:
            for address in allow:
                access.register(str(fleet.population.supply_point_id[key]), address)

    async def main() -> None:
        stop = asyncio.Event()
        try:
            await serve_nodes(
                fleet, keys, endpoints, speed, stop, access=access, multicast=multicast
            )
        except OSError as exc:
            raise InvalidSetting(f"cannot bind {bind}:{port}: {exc}") from None

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    console.print("stopped")


# ---------------------------------------------------------------------------------------------
# Wi-SUN and credentials (SPEC B1, B2, B4)

CredentialsOpt = Annotated[
    Path,
    typer.Option(
        "--credentials",
        help="JSON file of issued B-route credentials (mode 0600).",
    ),
]


def credentials_table(creds: BrouteCredentials, title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", no_wrap=True)
    table.add_row("supply point id", creds.supply_point_id)
    table.add_row("B-route ID", creds.route_id)
    table.add_row("password", creds.password)
    table.add_row("issued at", f"{creds.issued_at.astimezone(JST):%Y-%m-%d %H:%M:%S} JST")
    return table


@broute_app.command()
def credentials(
    meter: Annotated[str, typer.Option("--meter", help="Supply point id (22 digits).")],
    reissue: Annotated[
        bool, typer.Option("--reissue", help="Issue new ones; the old ones stop working.")
    ] = False,
    path: CredentialsOpt = DATA_DIR / DEFAULT_CREDENTIALS_FILE,
    store: Annotated[
        str | None,
        typer.Option(help="Issue only for a meter installed in this store (PATH.duckdb or DSN)."),
    ] = None,
    fleet_meters: FleetMetersOpt = 2000,
    seed: SeedOpt = 1,
    area: AreaOpt = "tokyo",
) -> None:
    """Issue (or show) a meter's B-route ID and password (SPEC B4), only for an installed
    meter: one of ``--store``'s roster, or else of the fleet ``broute serve`` and ``wisun``
    simulate with the same ``--fleet-meters/--seed/--area``."""
    check_parent(path, "--credentials")
    try:
        validate_supply_point_id(meter)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="--meter") from None
    _check_installed(meter, store, fleet_meters, seed, parse_area(area))
    registry = CredentialRegistry(path)
    try:
        current = None if reissue else registry.current(meter)
        creds = current or registry.issue(meter)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="--meter") from None
    if current is not None:
        title = "B-route credentials (already issued)"
    else:
        title = "B-route credentials (new: give them to the customer)"
    out.print(credentials_table(creds, title))
    console.print(f"kept in {path}", highlight=False)


def _check_installed(
    meter: str, store: str | None, fleet_meters: int, seed: int, area: Area
) -> None:
    """Refuse credentials for a supply point that is no installed meter (a typo would hand a
    customer a pair that opens nothing)."""
    if store is not None:
        from kenshin.app.stores import StoreMode, choose_store, open_store

        location = choose_store(store=store, db=None, postgres=None, default=Path(store))
        opened = open_store(location, StoreMode.READ_ONLY)
        try:
            known = opened.find_meter(meter) is not None
        finally:
            opened.close()
        if not known:
            raise InvalidInput(
                f"--meter {meter}: no such meter in {location.describe()}; credentials are "
                "issued for installed meters only"
            )
        return
    from kenshin.fleet.simulator import Fleet, FleetConfig

    fleet = Fleet(
        FleetConfig(
            n_meters=fleet_meters, start=dt.datetime(2026, 4, 1, tzinfo=JST), seed=seed, area=area
        )
    )
    if fleet.population.keys_of([meter])[0] is None:
        raise InvalidInput(
            f"--meter {meter}: no such meter in the simulated fleet ({fleet_meters:,} meters, "
            f"seed {seed}, {area.name.lower()}); credentials are issued for installed meters "
            "only (--store names a store's)"
        )


@broute_app.command()
def wisun(
    meter: Annotated[str, typer.Option("--meter", help="Supply point id of the meter to serve.")],
    dialect: Annotated[
        str, typer.Option(help="Module to emulate: bp35a1 (single-stack) or bp35c2 (dual).")
    ] = "bp35a1",
    speed: SpeedOpt = 1.0,
    seed: SeedOpt = 1,
    fleet_meters: FleetMetersOpt = 2000,
    area: AreaOpt = "tokyo",
    backfill_hours: BackfillOpt = 26,
    store: AttachStoreOpt = None,
    lifetime: Annotated[
        float, typer.Option(min=1.0, help="PANA session lifetime [s] (then EVENT 29).")
    ] = 86_400.0,
    path: CredentialsOpt = DATA_DIR / DEFAULT_CREDENTIALS_FILE,
) -> None:
    """Serve one meter behind a virtual Wi-SUN module (SKSTACK IP) on a pty until Ctrl-C."""
    from kenshin.broute.skstack import DIALECTS

    if dialect not in DIALECTS:
        raise typer.BadParameter(f"one of {', '.join(DIALECTS)}", param_hint="--dialect")
    try:
        validate_supply_point_id(meter)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="--meter") from None
    the_area = parse_area(area)
    if store is not None:
        fleet = attached_fleet(store)
    else:
        console.print(
            f"building a fleet of {fleet_meters:,} meters, simulating {backfill_hours} h…"
        )
        fleet = build_fleet(fleet_meters, seed, the_area, backfill_hours)
    (key,) = choose_keys(fleet, [meter], 1)
    server, clock = start_wisun(fleet, key, CredentialRegistry(path), dialect, speed, lifetime)
    with server:
        out.print(credentials_table(server.credentials, "B-route credentials (SPEC B4)"))
        out.print(
            f"virtual {dialect.upper()} on [bold]{server.device_path}[/bold] "
            f"(meter {server.meter.ip}, channel {server.meter.channel:02X}, "
            f"PAN ID {server.meter.pan_id:04X})"
        )
        console.print(
            f"simulated time {fleet.now:%Y-%m-%d %H:%M} JST at {speed:g}× · credentials in "
            f"{path} · Ctrl-C stops",
            highlight=False,
        )
        stop = threading.Event()
        with contextlib.suppress(KeyboardInterrupt):
            keep_stepping(fleet, clock, stop, server.meter.lock)
    console.print("stopped")


def start_wisun(
    fleet: Fleet,
    key: int,
    registry: CredentialRegistry,
    dialect: str,
    speed: float,
    lifetime: float | None,
) -> tuple[WisunServer, AcceleratedClock]:
    """The meter ``key`` as a node behind :func:`~kenshin.broute.wisun.serve_wisun`, and the
    accelerated clock the fleet should follow (see :func:`keep_stepping`)."""
    from kenshin.broute.node import MeterNode
    from kenshin.broute.state import FleetState
    from kenshin.broute.wisun import serve_wisun

    clock = AcceleratedClock(fleet.now, speed)
    node = MeterNode(FleetState(fleet, clock), key)
    server = serve_wisun(node, registry, node.supply_point_id, dialect, session_lifetime=lifetime)
    return server, clock
