"""``kenshin up``: the live system in one process, with its status line.

:class:`kenshin.app.live.LiveRunner` keeps the fleet (the wire A-route, in-process) caught up with
an accelerated clock on a worker thread; uvicorn serves the API from the same store; this module
prints the status line. Ctrl-C stops the server, then the runner, then flushes and closes the
store.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from rich.console import Console

from kenshin.app.live import UP_SCHEMA, LiveRunner
from kenshin.app.stores import StoreLocation, StoreMode, open_store
from kenshin.app.system import build_system
from kenshin.control.signing import CONTROL_KEY_FILE, ControlSigner
from kenshin.core.clock import AcceleratedClock
from kenshin.core.ids import Area
from kenshin.core.timeslots import JST, Resolution, from_epoch_us, to_epoch_us
from kenshin.fleet.simulator import FleetConfig


def run_live(
    *,
    meters: int,
    speed: float,
    store: StoreLocation,
    host: str,
    port: int,
    seed: int,
    backfill_hours: int,
    area: Area,
    console: Console,
    send_15min: bool = False,
    broute_meters: int = 0,
    broute_bind: str = "127.0.0.1",
    broute_port: int = 3610,
    wisun: str | None = None,
) -> None:
    import uvicorn

    from kenshin.api.app import create_app
    from kenshin.app.access import cut_broute_devices, ensure_local_admin, token_hint
    from kenshin.app.figures import mdms_figures, outage_figures
    from kenshin.security.service import Security

    step = Resolution.MIN30.microseconds
    now_us = to_epoch_us(dt.datetime.now(JST)) // step * step
    origin = from_epoch_us(now_us)
    start = origin - dt.timedelta(hours=backfill_hours)
    # recreated at start; on PostgreSQL in a schema of its own: never another system's data
    opened = open_store(store, StoreMode.CREATE, overwrite=True, schema=UP_SCHEMA)
    console.print(f"storing in {store.describe(UP_SCHEMA)} (recreated)")

    console.print(f"building a fleet of {meters:,} meters, simulating the last {backfill_hours} h…")
    # the business system's control key: it signs switching commands, the meters check them
    control = ControlSigner.from_file(store.directory / CONTROL_KEY_FILE)
    system = build_system(
        FleetConfig(n_meters=meters, start=start, seed=seed, area=area, send_15min=send_15min),
        store=opened,
        aroute="wire",
        outages=True,  # the outage engine runs live (issue 15)
        control=control,
    )
    if backfill_hours:
        system.run(origin)
    clock = AcceleratedClock(origin, speed)
    runner = LiveRunner(system, clock)
    # one credential registry for the API and the Wi-SUN module: what the API issues works at once
    from kenshin.broute.credentials import DEFAULT_CREDENTIALS_FILE, CredentialRegistry

    registry = CredentialRegistry(store.directory / DEFAULT_CREDENTIALS_FILE)
    broute = module = None
    try:
        broute = _start_broute(
            system, clock, runner, broute_meters, broute_bind, broute_port, console
        )
        module = _start_wisun(system, clock, runner, wisun, registry, console)
    except BaseException:
        if broute is not None:
            broute.stop()
        system.close()
        raise
    runner.start()

    security = Security(system.store, system.store)
    admin = ensure_local_admin(security, store.directory)
    cut_broute_devices(
        security, registry, lambda: [] if module is None else [module.meter.sessions]
    )
    app = create_app(
        system.store,
        security=security,
        status=runner.status,
        hes=system.hes,
        hes_lock=runner.lock,
        clock=system.clock.now,  # manual edits carry the simulated time
        broute_credentials=registry,
        control=control,
        campaigns=system.campaigns,  # run at every step of the fleet (issue 16)
        figures=lambda: {
            **mdms_figures(system.mdms, system.schedule),
            **outage_figures(system.outages),
        },
    )
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    reporter = threading.Thread(
        target=_report, args=(runner, console, server), name="kenshin-status", daemon=True
    )
    console.print(
        f"kenshin is up: http://{host}:{port}/api/v1/health  ·  API docs http://{host}:{port}/docs"
        f"  ·  {speed:g}× time  ·  Ctrl-C stops"
    )
    console.print(token_hint(admin, f"http://{host}:{port}"), soft_wrap=True, highlight=False)
    reporter.start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how the live system is meant to stop
    finally:
        runner.stop()
        if broute is not None:
            broute.stop()
        if module is not None:
            module.close()
        system.close()
        console.print(f"stopped; the store is in {store.describe(UP_SCHEMA)}")


def _start_broute(
    system: Any,
    clock: AcceleratedClock,
    runner: LiveRunner,
    count: int,
    bind: str,
    port: int,
    console: Console,
) -> Any:
    """ECHONET Lite nodes for the first ``count`` meters of the live fleet (an HV one among
    them when there is one), or None; a bind that fails is one line."""
    if not count:
        return None
    from kenshin.app.live_broute import LiveBRoute
    from kenshin.broute.udp import plan_endpoints
    from kenshin.cli.broute import choose_keys, node_table
    from kenshin.errors import InvalidSetting

    try:
        endpoints = plan_endpoints(bind, port, count)
    except ValueError as exc:
        raise InvalidSetting(f"--broute-bind/--broute-port: {exc}") from None
    keys = choose_keys(system.fleet, None, count)
    broute = LiveBRoute(system.fleet, keys, endpoints, clock, runner.lock)
    try:
        served = broute.start()
    except OSError as exc:
        raise InvalidSetting(f"cannot serve the B-route on {bind}:{port}: {exc}") from None
    console.print(node_table(broute.nodes, served))
    return broute


def _start_wisun(
    system: Any,
    clock: AcceleratedClock,
    runner: LiveRunner,
    meter: str | None,
    registry: Any,
    console: Console,
) -> Any:
    """The virtual Wi-SUN module in front of ``meter`` of the live fleet, or None."""
    if meter is None:
        return None
    from kenshin.app.live_broute import live_wisun
    from kenshin.cli.broute import choose_keys, credentials_table
    from kenshin.errors import InvalidInput, UnknownMeter

    try:
        (key,) = choose_keys(system.fleet, [meter], 1)
    except UnknownMeter:
        raise InvalidInput(
            f"--wisun {meter}: no such meter in the live fleet ({len(system.fleet.population):,} "
            "meters; GET /api/v1/meters lists them)"
        ) from None
    module = live_wisun(system.fleet, key, registry, clock, runner.lock)
    console.print(credentials_table(module.credentials, "B-route credentials (SPEC B4)"))
    console.print(f"virtual Wi-SUN module (BP35A1) for {meter} on {module.device_path}")
    return module


def _status_text(status: dict[str, Any]) -> str:
    shares = "  ".join(
        f"{duty} {share:.2%}" for duty, share in sorted(status["on_time_share"].items())
    )
    text = (
        f"simulated {status['simulated_time']}  ·  frames {status['frames_accepted']:,}"
        f" ({status['frames_rejected']:,} refused)  ·  readings stored "
        f"{status['readings_stored']:,}  ·  on time {shares or '—'}  ·  VEE days "
        f"{status['vee_days_swept']}, gaps {status['gaps_to_reread']:,}"
    )
    if status.get("customers_out") is not None:
        out = status["customers_out"]
        text += f"  ·  out {out:,}" if not out else f"  ·  [bold red]customers out {out:,}[/]"
    if status.get("outage_storm"):
        text += "  ·  [yellow]storm mode: only last gasps and pings accuse[/]"
    # a step is 5 simulated minutes: behind by more is a machine too slow for --speed
    if status["simulation_lag_s"] > 600:
        text += (
            f"  ·  [yellow]{status['simulation_lag_s'] / 60:,.0f} simulated min behind "
            f"{status['speed']:g}× (lower --speed)[/]"
        )
    if status["simulation_error"]:
        text += f"  ·  [red]error: {status['simulation_error']}[/]"
    return text


def _report(runner: LiveRunner, console: Console, server: Any) -> None:
    """One status line, updated in place on a terminal, a plain line now and then otherwise."""
    if console.is_terminal:
        with console.status(_status_text(runner.status())) as line:
            while not runner.stop_event.wait(1.0):
                status = runner.status()
                line.update(_status_text(status))
                if status["simulation_error"]:
                    server.should_exit = True
        return
    while not runner.stop_event.wait(10.0):
        status = runner.status()
        console.print(f"[dim]{_status_text(status)}[/]")
        if status["simulation_error"]:
            server.should_exit = True
