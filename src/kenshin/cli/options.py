"""What the commands share: each shared option is defined once here, with the parsers of days
and areas, the store option (``kenshin.app.stores``) and the two consoles (messages and progress
on stderr, results on stdout)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from kenshin.app.stores import DATA_DIR, StoreLocation, choose_store
from kenshin.core.ids import Area
from kenshin.core.timeslots import JST

if TYPE_CHECKING:
    from kenshin.aroute.mqtt import BrokerAddress
    from kenshin.fleet.simulator import FleetConfig

console = Console(stderr=True)
out = Console()


def progress_bar(title: str, unit: str) -> Progress:
    """A transient progress bar on stderr: ``title``, the bar, done/total ``unit``, time left."""
    return Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


# ---- the fleet

MAX_METERS = 30_000_000


def meters_option(maximum: int = MAX_METERS, help: str = "Number of meters.") -> Any:
    """``--meters`` / ``-n``; a command that cannot take 30 M meters gives its own ``maximum``."""
    return typer.Option("--meters", "-n", min=1, max=maximum, help=help)


MetersOpt = Annotated[int, meters_option()]
SeedOpt = Annotated[int, typer.Option(min=0, help="Random seed: same seed, same fleet and values.")]
AreaOpt = Annotated[str, typer.Option(help="Utility area: code 01–10 or name (tokyo).")]
StartOpt = Annotated[
    str | None,
    typer.Option(help="First simulated day, YYYY-MM-DD (JST). Default: DAYS before today."),
]
SpeedOpt = Annotated[
    float, typer.Option(min=1.0, max=100_000.0, help="Simulated seconds per real second.")
]

# ---- the store: --store PATH.duckdb or --store postgresql://…; --db and --postgres are aliases

DEFAULT_STORE = DATA_DIR / "kenshin.duckdb"
UP_STORE = DATA_DIR / "kenshin-up.duckdb"  # kenshin up's, recreated at start
OLD_DEFAULT_STORE = Path("kenshin.duckdb")  # the default before the data directory


def store_option(default: Path) -> Any:
    return typer.Option(
        "--store",
        help="The store: a DuckDB file PATH.duckdb or a PostgreSQL DSN (postgresql://user@host"
        ":port/db).",
        show_default=str(default),
    )


StoreOpt = Annotated[str | None, store_option(DEFAULT_STORE)]
UpStoreOpt = Annotated[str | None, store_option(UP_STORE)]
DbOpt = Annotated[Path | None, typer.Option("--db", help="DuckDB file (--store PATH).")]
PostgresOpt = Annotated[
    str | None, typer.Option("--postgres", help="PostgreSQL DSN (--store DSN), any libpq form.")
]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace the store if it exists.")]
Send15Opt = Annotated[
    bool,
    typer.Option(
        "--send-15min/--no-send-15min",
        help="SPEC A5 soft switch for the whole utility: next-generation meters send their "
        "15-min values (default: they record them only, and send 30-min values).",
    ),
]


def store_location(
    store: str | None, db: Path | None, postgres: str | None, default: Path = DEFAULT_STORE
) -> StoreLocation:
    """The store named by ``--store``, ``--db`` or ``--postgres`` (one of them), or ``default``;
    a warning when the DSN holds a password, which every local user sees in ``ps`` (X3)."""
    location = choose_store(store=store, db=db, postgres=postgres, default=default)
    moved = location.path == DEFAULT_STORE and not DEFAULT_STORE.exists()
    if moved and OLD_DEFAULT_STORE.exists():
        warn(
            f"the default store is {DEFAULT_STORE} now; {OLD_DEFAULT_STORE} here is from "
            f"an earlier version: pass --db {OLD_DEFAULT_STORE} or move it to {DATA_DIR}/"
        )
    if location.dsn is not None:
        from psycopg.conninfo import conninfo_to_dict

        if conninfo_to_dict(location.dsn).get("password"):  # choose_store parsed it already
            warn(
                "the password in the PostgreSQL DSN is visible to other local users in `ps`; "
                "put it in ~/.pgpass (mode 0600) or $PGPASSWORD instead"
            )
    return location


def warn(message: str) -> None:
    """One line on stderr, as the errors are."""
    console.print(f"kenshin: warning: {message}", markup=False, highlight=False, soft_wrap=True)


# ---- MQTT and the A-route

MqttOpt = Annotated[str, typer.Option("--mqtt", help="MQTT broker URL, mqtt://HOST:PORT.")]
TopicRootOpt = Annotated[
    str, typer.Option(help="First level of the MQTT topics: <root>/<area>/<collector>/up|down.")
]
MasterKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--master-key",
        help="A-route master key, 64 hex digits. Other local users see it in `ps`: prefer "
        "$KENSHIN_AROUTE_MASTER_KEY or --master-key-file.",
    ),
]
MasterKeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--master-key-file",
        help="File holding the A-route master key (64 hex digits); it must give group and "
        "others no access (chmod 600).",
    ),
]
DevKeyOpt = Annotated[
    bool,
    typer.Option(
        "--dev-key",
        help="A simulation: use the public development A-route key, under which anyone can "
        "forge frames (without a master key, the command refuses to run unless given this).",
    ),
]
DEV_KEY_NOTE = "the public development A-route key (--dev-key): frames are NOT protected"


def broker_url(url: str) -> BrokerAddress:
    """The broker of ``--mqtt`` (a bad URL is refused before anything else is done); a warning
    when the URL holds a password, which every local user sees in ``ps`` (X3)."""
    from urllib.parse import urlparse

    from kenshin.aroute.mqtt import MQTT_PASSWORD_ENV, BrokerAddress

    address = BrokerAddress.parse(url)
    if urlparse(url if "://" in url else f"mqtt://{url}").password is not None:
        warn(
            "the password in the --mqtt URL is visible to other local users in `ps`; "
            f"give mqtt://USER@HOST:PORT and the password in ${MQTT_PASSWORD_ENV} instead"
        )
    return address


def master_key_hex(master_key: str | None, master_key_file: Path | None, dev_key: bool) -> str:
    """The A-route master key of a service-mode command (``kenshin hes``, ``kenshin fleet``), as
    the hex its service takes: from ``--master-key-file``, ``$KENSHIN_AROUTE_MASTER_KEY`` or (with
    a warning: X3) ``--master-key``. The public development key only with ``--dev-key``, which
    says this is a simulation; without a key or that flag, a one-line error (exit code 2)."""
    from kenshin.aroute.keys import DEV_MASTER_KEY, MASTER_KEY_ENV, load_master_key
    from kenshin.errors import InvalidSetting

    given = [
        name
        for name, value in (
            ("--master-key", master_key),
            ("--master-key-file", master_key_file),
            (f"${MASTER_KEY_ENV}", os.environ.get(MASTER_KEY_ENV) or None),
        )
        if value is not None
    ]
    if dev_key:
        if given:
            raise InvalidSetting(
                f"--dev-key and {given[0]} both choose the A-route master key: give one"
            )
        return DEV_MASTER_KEY.hex()  # the command says so where it reports that it runs
    if not given:
        raise InvalidSetting(
            f"no A-route master key: set ${MASTER_KEY_ENV} or give --master-key-file PATH "
            "(64 hex digits, chmod 600); for a simulation, --dev-key uses the public "
            "development key"
        )
    key = load_master_key(master_key, path=master_key_file)
    if master_key is not None:
        warn(
            "--master-key is visible to other local users in `ps`; "
            f"use ${MASTER_KEY_ENV} or --master-key-file instead"
        )
    return key.hex()


# ---- the HTTP API

HostOpt = Annotated[str, typer.Option(help="Address the HTTP API listens on.")]
PortOpt = Annotated[int, typer.Option(min=1, max=65535, help="Port of the HTTP API.")]


# ---- parsers


def parse_area(value: str) -> Area:
    try:
        return Area.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--area") from None


def parse_day(value: str | None, hint: str | None = None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        message = f"expected a date YYYY-MM-DD, got {value!r}"
        raise typer.BadParameter(message, param_hint=hint) from None


def first_day(start: str | None, days: float) -> dt.datetime:
    """Midnight (JST) of ``--start``, or of ``days`` (at least one) before today."""
    day = parse_day(start, "--start") or (
        dt.datetime.now(JST).date() - dt.timedelta(days=max(1, int(days)))
    )
    return dt.datetime(day.year, day.month, day.day, tzinfo=JST)


def fleet_config(
    meters: int, seed: int, area: str, start: str | None, days: float, *, send_15min: bool = False
) -> FleetConfig:
    from kenshin.fleet.simulator import FleetConfig

    begin = first_day(start, days)
    return FleetConfig(
        n_meters=meters, start=begin, seed=seed, area=parse_area(area), send_15min=send_15min
    )


def check_parent(path: Path, option: str) -> None:
    """Refuse a file whose directory does not exist (a typo would otherwise make directories);
    kenshin's own data directory is made when needed."""
    from kenshin.errors import InvalidInput

    parent = path.parent
    if parent.is_dir() or parent.resolve() == DATA_DIR.resolve():
        return
    raise InvalidInput(f"{option} {path}: directory {parent} does not exist")


def check_port_free(host: str, port: int, option: str = "--port") -> None:
    """Refuse, before any work or any "serving on" line, a TCP port something listens on."""
    import errno
    import socket

    from kenshin.errors import PortInUse

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return  # an unresolvable host: the server says so itself
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"{option} {port}: port {port} on {host} is in use (another kenshin "
                    f"serve or up?); choose another with {option}"
                ) from None


# ---- the fleet-wide commands' choices (kenshin report, kenshin export)

ChannelOpt = Annotated[
    str, typer.Option(help="active_forward, active_reverse, reactive or voltage.")
]
ResolutionOpt = Annotated[str, typer.Option(help="30, 15, 5 or 1 [min].")]
OnlyAreaOpt = Annotated[str | None, typer.Option("--area", help="Only this area (code or name).")]
OnlyFeederOpt = Annotated[int | None, typer.Option("--feeder", min=0, help="Only this feeder.")]
OnlyTransformerOpt = Annotated[
    int | None, typer.Option("--transformer", min=0, help="Only this pole transformer.")
]
OnlyGenerationOpt = Annotated[
    int | None, typer.Option("--generation", min=1, max=2, help="Only this meter generation.")
]
OnlyCapabilityOpt = Annotated[
    str | None,
    typer.Option(
        "--capability",
        help="Only meters that can: switch, ampere_limit, min15, min5, min1, reactive, voltage, "
        "wisun, wifi, ethernet.",
    ),
]


def split_list(text: str, option: str) -> list[str]:
    """Items of an option given as ``A,B`` or ``@FILE`` (whitespace-separated in the file)."""
    from kenshin.errors import InvalidInput

    if text.startswith("@"):
        path = Path(text[1:])
        try:
            return path.read_text(encoding="utf-8").split()
        except OSError as exc:
            raise InvalidInput(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    return [t.strip() for t in text.split(",") if t.strip()]


ApiOpt = Annotated[
    str | None,
    typer.Option(
        "--api", help="The running system's URL (default $KENSHIN_API or http://127.0.0.1:8000)."
    ),
]


def api_client(api: str | None) -> Any:
    """A client of the running system's API (``kenshin connections``, ``kenshin campaign``)."""
    from kenshin.app.api_client import ApiClient, credentials

    return ApiClient(api, *credentials())
