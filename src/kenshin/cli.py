"""The ``kenshin`` command line (typer + rich).

Bad arguments get a one-line error on stderr and exit code 2.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from kenshin.core.ids import Area
from kenshin.core.timeslots import JST
from kenshin.errors import InvalidInput, KenshinError

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
    db: Annotated[Path, typer.Option(help="DuckDB file to create.")] = Path("kenshin.duckdb"),
    area: Annotated[str, typer.Option(help="Utility area: code 01–10 or name (tokyo).")] = "tokyo",
    gen2_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of next-generation meters.")
    ] = 0.7,
    sample_5min: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of meters sending 5-min values (SPEC A2)."),
    ] = 0.10,
    overwrite: Annotated[bool, typer.Option(help="Replace DB if it exists.")] = False,
) -> None:
    """Simulate a fleet as fast as possible and store every delivered value in DuckDB."""
    from kenshin.fleet.simulator import FleetConfig
    from kenshin.system import EmbeddedSystem

    first_day = _parse_day(start) or (dt.datetime.now(JST).date() - dt.timedelta(days=days))
    if db.exists():
        if not overwrite:
            raise typer.BadParameter(
                f"{db} already exists; pass --overwrite to replace it", param_hint="--db"
            )
        db.unlink()
        Path(f"{db}.wal").unlink(missing_ok=True)
    db.parent.mkdir(parents=True, exist_ok=True)
    begin = dt.datetime(first_day.year, first_day.month, first_day.day, tzinfo=JST)
    config = FleetConfig(
        n_meters=meters,
        start=begin,
        seed=seed,
        area=_parse_area(area),
        gen2_share=gen2_share,
        sample_5min_share=sample_5min,
    )
    console.print(f"building a fleet of {meters:,} meters ({config.area.name.title()} area)…")
    system = EmbeddedSystem(config, db)
    end = begin + dt.timedelta(days=days)
    with Progress(
        TextColumn("[bold]simulating[/] {task.fields[now]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("slots"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("simulate", total=days * 48, now=begin.isoformat())

        def on_slot(done: int, total: int) -> None:
            progress.update(task, completed=done, now=system.fleet.now.isoformat())

        summary = system.run(end, on_slot)
    stored = system.store.reading_counts()
    system.close()

    table = Table(title=f"kenshin simulate → {db}", show_header=False)
    table.add_row("meters", f"{summary.meters:,}")
    table.add_row("period", f"{summary.start.isoformat()} → {summary.end.isoformat()}")
    for res in sorted(stored, reverse=True):
        table.add_row(f"readings {res}-min", f"{stored[res]:,}")
    table.add_row("register reads", f"{summary.registers:,}")
    table.add_row("forward energy", f"{summary.forward_kwh:,.1f} kWh")
    table.add_row("reverse energy", f"{summary.reverse_kwh:,.1f} kWh")
    table.add_row("time taken", f"{summary.seconds:.1f} s")
    rate = summary.values / summary.seconds if summary.seconds else 0.0
    table.add_row("throughput", f"{rate:,.0f} readings/s")
    out.print(table)


@app.command()
def serve(
    db: Annotated[Path, typer.Option(help="Existing DuckDB store.")] = Path("kenshin.duckdb"),
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
) -> None:
    """Serve the HTTP API over an existing store."""
    import uvicorn

    from kenshin.api.app import create_app
    from kenshin.mdms.duckdb_store import DuckDBStore

    if not db.exists():
        raise typer.BadParameter(
            f"{db} does not exist; run 'kenshin simulate' first", param_hint="--db"
        )
    store = DuckDBStore(db, read_only=True)
    console.print(f"serving {db} on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    try:
        uvicorn.run(create_app(store), host=host, port=port, log_level="warning")
    finally:
        store.close()


@app.command()
def up(
    meters: MetersOpt = 2000,
    speed: Annotated[
        float, typer.Option(min=1.0, max=100_000.0, help="Simulated seconds per real second.")
    ] = 60.0,
    db: Annotated[Path, typer.Option(help="DuckDB file, recreated at start.")] = Path(
        "data/kenshin-up.duckdb"
    ),
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    seed: SeedOpt = 1,
    backfill_hours: Annotated[
        int, typer.Option(min=0, max=24 * 31, help="Hours simulated at once before going live.")
    ] = 24,
    area: Annotated[str, typer.Option(help="Utility area: code 01–10 or name.")] = "tokyo",
) -> None:
    """Run the live system in one process: fleet in accelerated time, HES, MDMS and the API."""
    from kenshin.live import run_live

    run_live(
        meters=meters,
        speed=speed,
        db=db,
        host=host,
        port=port,
        seed=seed,
        backfill_hours=backfill_hours,
        area=_parse_area(area),
        console=console,
    )


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
