"""Service mode: ``kenshin install`` (the meter roster), ``kenshin hes`` (a head-end worker on
MQTT) and ``kenshin fleet`` (simulated meters, network and collectors publishing to a broker)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from kenshin.app.stores import StoreMode, open_store
from kenshin.cli.options import (
    DEV_KEY_NOTE,
    AreaOpt,
    DbOpt,
    DevKeyOpt,
    MasterKeyFileOpt,
    MasterKeyOpt,
    MetersOpt,
    MqttOpt,
    OverwriteOpt,
    PostgresOpt,
    SeedOpt,
    Send15Opt,
    StartOpt,
    StoreOpt,
    TopicRootOpt,
    broker_url,
    check_port_free,
    console,
    fleet_config,
    master_key_hex,
    out,
    parse_area,
    progress_bar,
    store_location,
)

# a run whose frames the head-end refuses beyond this share failed (single refusals happen:
# a frame forged on the way, a replay an attacker tried)
REFUSED_IN_BULK = 0.01


if TYPE_CHECKING:
    from fastapi import FastAPI

    from kenshin.hes.service import HeadEnd


def replayed_in_bulk(refused: int, held: int, resent_frames: int, forwarded: int) -> bool:
    """Whether the head-end's answers say this fleet sends a period it had sent before (a lost
    ``--state`` file, another master key): more than ``REFUSED_IN_BULK`` of the frames forwarded
    refused as replays, or that many values the store held already.

    Frames the fleet published again after a broker restart come back so when their first copy
    was not lost: refused while their counters are in the replay window, as values held already
    when they are older. They are taken off the refusals; after such a restart the held values
    cannot be told apart from theirs, so only the refusals judge."""
    bulk = REFUSED_IN_BULK * max(1, forwarded)
    if max(0, refused - resent_frames) > bulk:
        return True
    return resent_frames == 0 and held > bulk


def install(
    meters: MetersOpt = 1000,
    seed: SeedOpt = 1,
    area: AreaOpt = "tokyo",
    start: StartOpt = None,
    days: Annotated[float, typer.Option(min=0.0, help="Days the fleet will run (for START).")] = 1,
    store: StoreOpt = None,
    db: DbOpt = None,
    postgres: PostgresOpt = None,
    overwrite: OverwriteOpt = False,
    send_15min: Send15Opt = False,
) -> None:
    """Install a simulated fleet's meters in a new store (the roster a head-end loads at start;
    the head-end takes the fleet's soft switch from it)."""
    from kenshin.app.services import install_fleet

    config = fleet_config(meters, seed, area, start, days, send_15min=send_15min)
    location = store_location(store, db, postgres)
    opened = open_store(location, StoreMode.CREATE, overwrite=overwrite)
    try:
        table = install_fleet(opened, config)
    finally:
        opened.close()
    console.print(
        f"installed {table.num_rows:,} meters in {location.describe()} (start {config.start})"
    )


def hes(
    mqtt: MqttOpt = "mqtt://127.0.0.1:1883",
    store: StoreOpt = None,
    db: DbOpt = None,
    postgres: PostgresOpt = None,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Serve Prometheus /metrics on this port.")
    ] = None,
    worker_id: Annotated[
        str, typer.Option(help="Stable MQTT client id: a restarted worker gets its backlog.")
    ] = "hes-1",
    duties: Annotated[
        bool,
        typer.Option(
            help="Keep the deadlines, re-reads, commands and polls, watching every envelope "
            "(one worker per deployment; the others --no-duties)."
        ),
    ] = True,
    master_key: MasterKeyOpt = None,
    master_key_file: MasterKeyFileOpt = None,
    dev_key: DevKeyOpt = False,
    topic_root: TopicRootOpt = "kenshin",
    api_port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="Serve the HTTP API (readings, SLOs, commands, polls) here."
        ),
    ] = None,
) -> None:
    """Run a head-end worker: authenticate, store and acknowledge collector envelopes from MQTT.
    With a DuckDB store, one worker only; with PostgreSQL, any number."""
    import signal
    import threading

    from prometheus_client import start_http_server

    from kenshin.api.app import create_app
    from kenshin.app.services import run_hes_worker
    from kenshin.app.stores import open_replay_guard

    # a bad URL or a missing key is refused before the store is opened
    broker = broker_url(mqtt)
    location = store_location(store, db, postgres)
    key = master_key_hex(master_key, master_key_file, dev_key)
    for option, port in (("--metrics-port", metrics_port), ("--api-port", api_port)):
        if port:
            check_port_free("0.0.0.0" if option == "--metrics-port" else "127.0.0.1", port, option)
    opened = open_store(location, StoreMode.OPEN)
    stop = threading.Event()
    lock = threading.Lock()  # the worker loop and the API's commands share the head-end
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def ready(head_end: HeadEnd) -> None:
        if metrics_port:
            start_http_server(metrics_port, registry=head_end.metrics.registry)
        if api_port:
            from kenshin.app.access import ensure_local_admin, token_hint
            from kenshin.app.figures import mdms_figures
            from kenshin.mdms.service import MeterDataService
            from kenshin.security.service import Security

            sink = head_end.sink  # the worker's MDMS writer: its figures on /metrics too
            figures = (
                (lambda: mdms_figures(sink, None)) if isinstance(sink, MeterDataService) else None
            )
            security = Security(opened, opened)
            admin = ensure_local_admin(security, location.directory)
            from kenshin.control.signing import CONTROL_KEY_FILE, ControlSigner

            # the business system's key: `kenshin fleet` reads its public half (.pub) for the
            # meters
            control = ControlSigner.from_file(location.directory / CONTROL_KEY_FILE)
            if head_end.commands.x1 is not None:  # emergencies signed by it lift X1's ceiling
                head_end.commands.x1.control_key = control.public_key
            from kenshin.app.services import start_campaign_desk

            campaigns = start_campaign_desk(opened, head_end, control, lock, stop)
            app = create_app(
                opened,
                hes=head_end,
                hes_lock=lock,
                figures=figures,
                security=security,
                control=control,
                campaigns=campaigns,
            )
            serve_in_background(app, api_port)
            if admin.registered:
                console.print(token_hint(admin, f"http://127.0.0.1:{api_port}"), soft_wrap=True)
        console.print(
            f"head-end {worker_id} listening on {broker} (shared subscription), storing in "
            f"{location.describe()}"
            + (f", metrics on :{metrics_port}/metrics" if metrics_port else "")
            + (f", API on http://127.0.0.1:{api_port}/docs" if api_port else "")
            + (f"; {DEV_KEY_NOTE}" if dev_key else "")
        )

    try:
        head_end = run_hes_worker(
            mqtt,
            opened,
            worker_id=worker_id,
            replay=open_replay_guard(opened),
            master_key=key,
            duties=duties,
            stop=stop,
            on_ready=ready,
            topic_root=topic_root,
            lock=lock,
        )
    except KeyboardInterrupt:
        return
    finally:
        opened.close()
    st = head_end.stats
    console.print(
        f"stopped: {st.frames_accepted:,} frames accepted, {st.frames_rejected_total:,} refused, "
        f"{st.values_stored:,} values stored; {st.envelopes:,} envelopes, at most "
        f"{st.largest_batch} at once"
    )


def serve_in_background(api: FastAPI, port: int) -> None:
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, name="kenshin-api", daemon=True).start()


def fleet(
    mqtt: MqttOpt = "mqtt://127.0.0.1:1883",
    meters: MetersOpt = 1000,
    days: Annotated[float, typer.Option(min=0.01, max=3660, help="Simulated days.")] = 1,
    speed: Annotated[
        str, typer.Option(help="Simulated seconds per real second, or 'max' (as fast as possible).")
    ] = "max",
    seed: SeedOpt = 1,
    area: AreaOpt = "tokyo",
    start: StartOpt = None,
    master_key: MasterKeyOpt = None,
    master_key_file: MasterKeyFileOpt = None,
    dev_key: DevKeyOpt = False,
    topic_root: TopicRootOpt = "kenshin",
    send_15min: Send15Opt = False,
    worker_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds without progress from the head-end workers (or the broker) before "
            "the fleet gives up: while it waits for them to store its backlog, and at the end.",
        ),
    ] = 120.0,
    state: Annotated[
        Path | None,
        typer.Option(
            help="The meters' state between runs (frame counters, where time stopped): a run "
            "goes on from where the last one stopped. Default: data/fleet-ROOT-AREA-SEED.npz.",
            show_default=False,
        ),
    ] = None,
    control_key: Annotated[
        Path | None,
        typer.Option(
            help="The business system's control public key (PEM) the meters check switching "
            "commands with. Default: data/kenshin-control.key.pub when it exists (`kenshin hes "
            "--api-port` writes it); without one the meters refuse every switching command.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run simulated meters, network and collectors, publishing to a broker (see `kenshin hes`).
    A second run goes on where the first stopped, as real meters do (their frame counters keep
    rising). It never has more than 800 envelopes unstored by the workers, and fails (exit 1)
    unless the workers report every envelope stored."""
    from kenshin.app.services import run_fleet
    from kenshin.app.stores import DATA_DIR
    from kenshin.errors import TransportError
    from kenshin.fleet.state import FleetState

    broker = broker_url(mqtt)  # before the fleet is built
    try:
        pace = None if speed == "max" else float(speed)
    except ValueError:
        raise typer.BadParameter("expected a number or 'max'", param_hint="--speed") from None
    if pace is not None and pace <= 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    state_path = state or DATA_DIR / f"fleet-{topic_root}-{parse_area(area).code}-{seed}.npz"
    if start is None:  # a fleet with a state goes on from it: its first day is the state's
        held = FleetState.load(state_path)
        if held is not None:
            start = str(held.settings.get("start", ""))[:10] or None
    config = fleet_config(meters, seed, area, start, days, send_15min=send_15min)
    key = master_key_hex(master_key, master_key_file, dev_key)
    from kenshin.control.signing import CONTROL_KEY_FILE, load_public_key, public_key_path

    default_public = public_key_path(DATA_DIR / CONTROL_KEY_FILE)
    public = control_key or (default_public if default_public.exists() else None)
    meters_key = None if public is None else load_public_key(public)
    # the development key is said on the progress bar and in the summary, not on a line of its
    # own before the broker is reached: an error is then the only line
    title = "[bold]fleet[/] [red](development key: frames NOT protected)[/]" if dev_key else ""
    with progress_bar(title or "[bold]fleet[/]", "5-min steps") as progress:
        task = progress.add_task("fleet", total=None)
        result = run_fleet(
            mqtt,
            config,
            days,
            speed=pace,
            master_key=key,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
            topic_root=topic_root,
            worker_timeout_s=worker_timeout,
            on_wait=lambda line: progress.console.print(line, markup=False, highlight=False),
            state_path=state_path,
            control_key=meters_key,
        )
    table = Table(title=f"kenshin fleet → {broker}", show_header=False)
    f = result.field
    table.add_row("meters", f"{meters:,}")
    if dev_key:
        table.add_row("A-route key", DEV_KEY_NOTE)
    if result.resumed_from is not None:
        table.add_row("went on from", f"{result.resumed_from} ({state_path})")
    table.add_row("simulated until", result.simulated_until)
    table.add_row("frames sent by meters", f"{f.frames_sent:,}")
    table.add_row("lost in the network", f"{f.frames_lost:,}")
    table.add_row("forwarded by collectors", f"{f.frames_forwarded:,} in {f.envelopes:,} envelopes")
    table.add_row("downlink frames", f"{f.downlink_frames:,} ({f.downlink_refused:,} refused)")
    table.add_row("envelopes published", f"{result.published:,}")
    table.add_row("reported stored by the workers", f"{result.stored:,}")
    table.add_row("frames refused by the head-end", f"{result.refused:,}")
    if result.resent_frames:
        table.add_row("frames published again (broker restart)", f"{result.resent_frames:,}")
    table.add_row("values it held already (old frames)", f"{result.held:,}")
    table.add_row("time taken", f"{result.seconds:.1f} s")
    rate = f.frames_forwarded / result.seconds if result.seconds else 0.0
    table.add_row("throughput", f"{rate:,.0f} frames/s")
    out.print(table)
    if replayed_in_bulk(result.refused, result.held, result.resent_frames, f.frames_forwarded):
        raise TransportError(
            f"the head-end refused {result.refused:,} of {f.frames_forwarded:,} frames "
            f"forwarded and held {result.held:,} of their values already (a fleet that started "
            "over a period it had sent: keep its --state file; or another master key)"
        )
    if not result.accounted:
        raise TransportError(
            f"{result.unaccounted:,} of {result.published:,} envelopes unaccounted for: no "
            f"head-end worker reported them stored within {worker_timeout:g} s of its last "
            "progress (are the workers running? the broker may have dropped them)"
        )
