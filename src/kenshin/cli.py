"""The ``kenshin`` command line (typer + rich).

Bad arguments get a one-line error on stderr and exit code 2.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from kenshin.app.stores import StoreLocation, StoreMode, choose_store, open_store
from kenshin.core.ids import Area
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.errors import InvalidInput, KenshinError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kenshin.fleet.simulator import FleetConfig
    from kenshin.hes.service import HeadEnd

app = typer.Typer(
    name="kenshin",
    help="kenshin (検針): Japan's next-generation smart meter system.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
# typer raises click's UsageError (vendored in recent typer); find it through BadParameter
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)
out = Console()

MetersOpt = Annotated[
    int, typer.Option("--meters", "-n", min=1, max=30_000_000, help="Number of meters.")
]
SeedOpt = Annotated[int, typer.Option(min=0, help="Random seed: same seed, same fleet and values.")]
HostOpt = Annotated[str, typer.Option(help="Address the HTTP API listens on.")]
# the store: --store PATH.duckdb or --store postgresql://…; --db and --postgres are aliases
DEFAULT_STORE = Path("kenshin.duckdb")
UP_STORE = Path("data/kenshin-up.duckdb")


def _store_option(default: Path) -> Any:
    return typer.Option(
        "--store",
        help="The store: a DuckDB file PATH.duckdb or a PostgreSQL DSN (postgresql://user@host"
        ":port/db).",
        show_default=str(default),
    )


StoreOpt = Annotated[str | None, _store_option(DEFAULT_STORE)]
UpStoreOpt = Annotated[str | None, _store_option(UP_STORE)]
DbOpt = Annotated[Path | None, typer.Option("--db", help="DuckDB file (--store PATH).")]
PostgresOpt = Annotated[
    str | None, typer.Option("--postgres", help="PostgreSQL DSN (--store DSN), any libpq form.")
]
MqttOpt = Annotated[str, typer.Option("--mqtt", help="MQTT broker URL, mqtt://HOST:PORT.")]
AreaOpt = Annotated[str, typer.Option(help="Utility area: code 01–10 or name (tokyo).")]
TopicRootOpt = Annotated[
    str, typer.Option(help="First level of the MQTT topics: <root>/<area>/<collector>/up|down.")
]
MasterKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--master-key",
        help="A-route master key, 64 hex digits (default: $KENSHIN_AROUTE_MASTER_KEY, "
        "else the built-in simulation key).",
    ),
]
PortOpt = Annotated[int, typer.Option(min=1, max=65535, help="Port of the HTTP API.")]


def _parse_area(value: str) -> Area:
    try:
        return Area.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _parse_day(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected a date YYYY-MM-DD, got {value!r}") from None


@app.command()
def simulate(
    meters: MetersOpt = 1000,
    days: Annotated[int, typer.Option(min=1, max=3660, help="Simulated days.")] = 1,
    start: Annotated[
        str | None,
        typer.Option(help="First simulated day, YYYY-MM-DD (JST). Default: DAYS before today."),
    ] = None,
    seed: SeedOpt = 1,
    store: StoreOpt = None,
    db: DbOpt = None,
    area: AreaOpt = "tokyo",
    gen2_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of next-generation meters.")
    ] = 0.7,
    sample_5min: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of meters sending 5-min values (SPEC A2)."),
    ] = 0.10,
    overwrite: Annotated[bool, typer.Option(help="Replace the store if it exists.")] = False,
    aroute: Annotated[
        str,
        typer.Option(
            help="A-route: 'direct' (columnar, every value on time; fastest) or 'wire' "
            "(authenticated frames through the network model, deadlines and re-reads)."
        ),
    ] = "direct",
    postgres: PostgresOpt = None,
    loss: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.5,
            help="Share of interval values lost on the way (register reads still arrive); "
            "the daily VEE sweep estimates them.",
        ),
    ] = 0.0,
    archive: Annotated[
        Path | None,
        typer.Option(help="Parquet archive directory for closed months (monthly housekeeping)."),
    ] = None,
) -> None:
    """Simulate a fleet as fast as possible, store every delivered value in a new store, and
    validate and estimate each closed day (VEE)."""
    from kenshin.fleet.simulator import FleetConfig
    from kenshin.system import AROUTE_MODES, EmbeddedSystem

    if aroute not in AROUTE_MODES:
        raise typer.BadParameter(
            f"expected one of {', '.join(AROUTE_MODES)}", param_hint="--aroute"
        )
    first_day = _parse_day(start) or (dt.datetime.now(JST).date() - dt.timedelta(days=days))
    begin = dt.datetime(first_day.year, first_day.month, first_day.day, tzinfo=JST)
    config = FleetConfig(
        n_meters=meters,
        start=begin,
        seed=seed,
        area=_parse_area(area),
        gen2_share=gen2_share,
        sample_5min_share=sample_5min,
    )
    location = _store(store, db, postgres)
    opened = open_store(location, StoreMode.CREATE, overwrite=overwrite)
    console.print(f"building a fleet of {meters:,} meters ({config.area.name.title()} area)…")
    from kenshin.mdms.archive import ParquetArchive

    system = EmbeddedSystem(
        config,
        store=opened,
        aroute=aroute,
        loss=loss,
        archive=None if archive is None else ParquetArchive(archive),
    )
    end = begin + dt.timedelta(days=days)
    with Progress(
        TextColumn("[bold]simulating[/] {task.fields[now]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("simulate", total=None, now=begin.isoformat())

        def on_slot(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, now=system.fleet.now.isoformat())

        summary = system.run(end, on_slot)
    stored = system.store.reading_counts()
    sweeps = system.schedule.sweeps if system.schedule is not None else []
    lost = system.link.lost if system.link is not None else 0
    system.close()

    table = Table(title=f"kenshin simulate → {location.describe()}", show_header=False)
    table.add_row("meters", f"{summary.meters:,}")
    table.add_row("period", f"{summary.start.isoformat()} → {summary.end.isoformat()}")
    for res in sorted(stored, reverse=True):
        table.add_row(f"readings {res}-min", f"{stored[res]:,}")
    table.add_row("register reads", f"{summary.registers:,}")
    table.add_row("forward energy", f"{summary.forward_kwh:,.1f} kWh")
    table.add_row("reverse energy", f"{summary.reverse_kwh:,.1f} kWh")
    if aroute == "wire":
        table.add_row("frames sent by meters", f"{summary.frames_sent:,}")
        table.add_row("lost in the network (then re-read)", f"{summary.frames_lost:,}")
        table.add_row("frames accepted by the HES", f"{summary.frames_accepted:,}")
        table.add_row("frames refused", f"{summary.frames_rejected:,}")
        for duty, share in (summary.on_time or {}).items():
            table.add_row(f"on time {duty}", f"{share:.3%}")
    if lost:
        table.add_row("values lost on the way", f"{lost:,}")
    if sweeps:
        totals: dict[str, int] = {}
        for report in sweeps:
            for label, count in report.quality.items():
                totals[label] = totals.get(label, 0) + count
        table.add_row(
            f"VEE ({len(sweeps)} day(s), forward 30-min)",
            ", ".join(f"{k} {v:,}" for k, v in totals.items() if v),
        )
        table.add_row("gaps left to re-read", f"{sum(r.gaps for r in sweeps):,}")
    table.add_row("time taken", f"{summary.seconds:.1f} s")
    rate = summary.values / summary.seconds if summary.seconds else 0.0
    table.add_row("throughput", f"{rate:,.0f} readings/s")
    out.print(table)


@app.command()
def serve(
    store: StoreOpt = None,
    db: DbOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    postgres: PostgresOpt = None,
    broute_credentials: Annotated[
        Path | None,
        typer.Option(help="B-route credentials file (default: kenshin-broute.json by the DB)."),
    ] = None,
) -> None:
    """Serve the HTTP API over an existing store (read-only)."""
    import uvicorn

    from kenshin.api.app import create_app
    from kenshin.broute.credentials import DEFAULT_CREDENTIALS_FILE

    location = _store(store, db, postgres)
    opened = open_store(location, StoreMode.READ_ONLY)
    console.print(
        f"serving {location.describe()} on http://{host}:{port}  "
        f"(API docs: http://{host}:{port}/docs)"
    )
    try:
        # SPEC B4: the credentials issued over the API are kept next to the store
        credentials = broute_credentials or location.directory / DEFAULT_CREDENTIALS_FILE
        app_ = create_app(opened, broute_credentials=credentials)
        uvicorn.run(app_, host=host, port=port, log_level="warning")
    finally:
        opened.close()


@app.command()
def up(
    meters: MetersOpt = 2000,
    speed: Annotated[
        float, typer.Option(min=1.0, max=100_000.0, help="Simulated seconds per real second.")
    ] = 60.0,
    store: UpStoreOpt = None,
    db: DbOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    seed: SeedOpt = 1,
    backfill_hours: Annotated[
        int, typer.Option(min=0, max=24 * 31, help="Hours simulated at once before going live.")
    ] = 24,
    area: Annotated[str, typer.Option(help="Utility area: code 01–10 or name.")] = "tokyo",
    postgres: PostgresOpt = None,
) -> None:
    """Run the live system in one process: fleet in accelerated time, HES, MDMS and the API.
    The store is recreated at start (with PostgreSQL, the schema kenshin_up)."""
    from kenshin.live import run_live

    run_live(
        meters=meters,
        speed=speed,
        store=_store(store, db, postgres, default=UP_STORE),
        host=host,
        port=port,
        seed=seed,
        backfill_hours=backfill_hours,
        area=_parse_area(area),
        console=console,
    )


def _register_plan_network() -> None:
    from kenshin.netplan import plan_network_command

    app.command("plan-network")(plan_network_command)


_register_plan_network()


def _register_broute() -> None:
    from kenshin.broute.cli import broute_app

    app.add_typer(broute_app, name="broute")


_register_broute()


@app.command("archive")
def archive_cmd(
    archive: Annotated[Path, typer.Option(help="Parquet archive directory.")] = Path(
        "kenshin-archive"
    ),
    store: StoreOpt = None,
    db: DbOpt = None,
    postgres: PostgresOpt = None,
    hot_months: Annotated[
        int, typer.Option(min=1, help="Months (current one included) kept in the hot store.")
    ] = 2,
    retention_years: Annotated[
        int, typer.Option(min=1, help="Years kept in all (SPEC S1: 3).")
    ] = 3,
    now: Annotated[
        str | None, typer.Option(help="Run as of this JST date (YYYY-MM-DD); default today.")
    ] = None,
) -> None:
    """Compact closed months, move them to the Parquet archive, and delete what is past
    retention (SPEC S1). The system also runs this monthly."""
    from kenshin.mdms.archive import ParquetArchive
    from kenshin.mdms.housekeeping import RetentionPolicy, run_housekeeping

    opened = open_store(_store(store, db, postgres), StoreMode.OPEN)
    day = _parse_day(now) or dt.datetime.now(JST).date()
    moment = dt.datetime(day.year, day.month, day.day, tzinfo=JST)
    report = run_housekeeping(
        opened,
        ParquetArchive(archive),
        to_epoch_us(moment),
        RetentionPolicy(retention_years=retention_years, hot_months=hot_months),
    )
    opened.close()
    console.print(f"{report.summary()} → {archive}")
    for name in report.archived:
        console.print(f"  archived {name}")
    for name in report.deleted:
        console.print(f"  deleted {name} (past retention)")


@app.command("vee")
def vee_cmd(
    day: Annotated[str, typer.Option(help="JST day to validate and estimate, YYYY-MM-DD.")],
    store: StoreOpt = None,
    db: DbOpt = None,
    postgres: PostgresOpt = None,
    channel: Annotated[
        str,
        typer.Option(help="both (then also the S3 differences), active_forward or active_reverse."),
    ] = "both",
    resolutions: Annotated[
        str,
        typer.Option(help="Comma-separated minutes: 30, and 15 / 5 for the meters that send them."),
    ] = "30,15,5",
) -> None:
    """Run the VEE sweep of one day by hand, as the system does after midnight: labels,
    estimates, the gap list and, for both channels, the specified-meter differences."""
    from kenshin.api.params import parse_channel
    from kenshin.mdms.scheduler import SWEPT_CHANNELS, sweep_day

    target = _parse_day(day)
    assert target is not None
    channels = SWEPT_CHANNELS if channel == "both" else (parse_channel(channel),)
    sweepable = (Resolution.MIN30, Resolution.MIN15, Resolution.MIN5)
    try:
        chosen = tuple(Resolution.parse(m) for m in resolutions.split(","))
    except ValueError:
        chosen = ()
    if not chosen or any(r not in sweepable for r in chosen):
        raise typer.BadParameter(
            f"{resolutions!r}: give minutes among 30, 15, 5", param_hint="--resolutions"
        )
    opened = open_store(_store(store, db, postgres), StoreMode.OPEN)
    try:
        swept = sweep_day(
            opened,
            target,
            now_us=to_epoch_us(dt.datetime.now(JST)),
            channels=channels,
            resolutions=chosen,
        )
    finally:
        opened.close()
    for report in swept.sweeps:
        console.print(report.summary())
        for rule, count in report.rules.items():
            console.print(f"  {rule}: {count:,}")
    if swept.differences is not None:
        console.print(f"S3 differences {swept.differences.summary()}")


def _store(
    store: str | None, db: Path | None, postgres: str | None, default: Path = DEFAULT_STORE
) -> StoreLocation:
    return choose_store(store=store, db=db, postgres=postgres, default=default)


def _fleet_config(meters: int, seed: int, area: str, start: str | None, days: float) -> FleetConfig:
    from kenshin.fleet.simulator import FleetConfig

    first_day = _parse_day(start) or (
        dt.datetime.now(JST).date() - dt.timedelta(days=max(1, int(days)))
    )
    begin = dt.datetime(first_day.year, first_day.month, first_day.day, tzinfo=JST)
    return FleetConfig(n_meters=meters, start=begin, seed=seed, area=_parse_area(area))


StartOpt = Annotated[
    str | None,
    typer.Option(help="First simulated day, YYYY-MM-DD (JST). Default: DAYS before today."),
]


@app.command()
def install(
    meters: MetersOpt = 1000,
    seed: SeedOpt = 1,
    area: AreaOpt = "tokyo",
    start: StartOpt = None,
    days: Annotated[float, typer.Option(min=0.0, help="Days the fleet will run (for START).")] = 1,
    store: StoreOpt = None,
    db: DbOpt = None,
    postgres: PostgresOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the store if it exists.")] = False,
) -> None:
    """Install a simulated fleet's meters in a new store (the roster a head-end loads at start)."""
    from kenshin.services import install_fleet

    config = _fleet_config(meters, seed, area, start, days)
    location = _store(store, db, postgres)
    opened = open_store(location, StoreMode.CREATE, overwrite=overwrite)
    try:
        table = install_fleet(opened, config)
    finally:
        opened.close()
    console.print(
        f"installed {table.num_rows:,} meters in {location.describe()} (start {config.start})"
    )


@app.command()
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
    from kenshin.app.stores import open_replay_guard
    from kenshin.aroute.mqtt import BrokerAddress
    from kenshin.services import run_hes_worker

    BrokerAddress.parse(mqtt)  # a bad URL is refused before the store is opened
    location = _store(store, db, postgres)
    opened = open_store(location, StoreMode.OPEN)
    stop = threading.Event()
    lock = threading.Lock()  # the worker loop and the API's commands share the head-end
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def ready(head_end: HeadEnd) -> None:
        if metrics_port:
            start_http_server(metrics_port, registry=head_end.metrics.registry)
        if api_port:
            _serve_in_background(create_app(opened, hes=head_end, hes_lock=lock), api_port)
        console.print(
            f"head-end {worker_id} listening on {mqtt} (shared subscription), storing in "
            f"{location.describe()}"
            + (f", metrics on :{metrics_port}/metrics" if metrics_port else "")
            + (f", API on http://127.0.0.1:{api_port}/docs" if api_port else "")
        )

    try:
        head_end = run_hes_worker(
            mqtt,
            opened,
            worker_id=worker_id,
            replay=open_replay_guard(location),
            master_key=master_key,
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


def _serve_in_background(api: FastAPI, port: int) -> None:
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, name="kenshin-api", daemon=True).start()


@app.command()
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
    topic_root: TopicRootOpt = "kenshin",
) -> None:
    """Run simulated meters, network and collectors, publishing to a broker (see `kenshin hes`)."""
    from kenshin.aroute.mqtt import BrokerAddress
    from kenshin.services import run_fleet

    BrokerAddress.parse(mqtt)  # before the fleet is built
    try:
        pace = None if speed == "max" else float(speed)
    except ValueError:
        raise typer.BadParameter("expected a number or 'max'", param_hint="--speed") from None
    if pace is not None and pace <= 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    config = _fleet_config(meters, seed, area, start, days)
    with Progress(
        TextColumn("[bold]fleet[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("5-min steps"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("fleet", total=None)
        result = run_fleet(
            mqtt,
            config,
            days,
            speed=pace,
            master_key=master_key,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
            topic_root=topic_root,
        )
    table = Table(title=f"kenshin fleet → {mqtt}", show_header=False)
    f = result.field
    table.add_row("meters", f"{meters:,}")
    table.add_row("simulated until", result.simulated_until)
    table.add_row("frames sent by meters", f"{f.frames_sent:,}")
    table.add_row("lost in the network", f"{f.frames_lost:,}")
    table.add_row("forwarded by collectors", f"{f.frames_forwarded:,} in {f.envelopes:,} envelopes")
    table.add_row("downlink frames", f"{f.downlink_frames:,} ({f.downlink_refused:,} refused)")
    table.add_row("time taken", f"{result.seconds:.1f} s")
    rate = f.frames_forwarded / result.seconds if result.seconds else 0.0
    table.add_row("throughput", f"{rate:,.0f} frames/s")
    out.print(table)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors and exit code 2 for bad arguments."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="kenshin", standalone_mode=False)
    except _UsageError as exc:
        message = exc.format_message()  # type: ignore[attr-defined]
        if message:  # empty when typer has printed the help instead
            console.print(
                f"kenshin: error: {message}", markup=False, highlight=False, soft_wrap=True
            )
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except InvalidInput as exc:
        console.print(f"kenshin: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KenshinError as exc:
        console.print(f"kenshin: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
