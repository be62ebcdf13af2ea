"""``kenshin simulate``: a fleet simulated as fast as possible into a new store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kenshin.app.stores import StoreMode, open_store
from kenshin.cli.options import (
    AreaOpt,
    DbOpt,
    MetersOpt,
    OverwriteOpt,
    PostgresOpt,
    SeedOpt,
    Send15Opt,
    StartOpt,
    StoreOpt,
    console,
    first_day,
    out,
    parse_area,
    progress_bar,
    store_location,
)


def simulate(
    meters: MetersOpt = 1000,
    days: Annotated[int, typer.Option(min=1, max=3660, help="Simulated days.")] = 1,
    start: StartOpt = None,
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
    overwrite: OverwriteOpt = False,
    send_15min: Send15Opt = False,
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
            help="Share of meter messages lost on the way to the MDMS: a lost message takes "
            "a meter's values of a 30-min slot and the register reads at its end; the daily "
            "VEE sweep estimates them.",
        ),
    ] = 0.0,
    loss_burst: Annotated[
        float,
        typer.Option(
            min=1.0,
            max=10_000.0,
            help="Mean length of a run of lost messages, in 30-min slots (1: each lost on its "
            "own; 96: meters silent two days at a time).",
        ),
    ] = 1.0,
    archive: Annotated[
        Path | None,
        typer.Option(help="Parquet archive directory for closed months (monthly housekeeping)."),
    ] = None,
) -> None:
    """Simulate a fleet as fast as possible, store every delivered value in a new store, and
    validate and estimate each closed day (VEE)."""
    from kenshin.app.system import AROUTE_MODES, build_system
    from kenshin.fleet.simulator import FleetConfig

    if aroute not in AROUTE_MODES:
        raise typer.BadParameter(
            f"expected one of {', '.join(AROUTE_MODES)}", param_hint="--aroute"
        )
    begin = first_day(start, days)
    config = FleetConfig(
        n_meters=meters,
        start=begin,
        seed=seed,
        area=parse_area(area),
        gen2_share=gen2_share,
        sample_5min_share=sample_5min,
        send_15min=send_15min,
    )
    location = store_location(store, db, postgres)
    opened = open_store(location, StoreMode.CREATE, overwrite=overwrite)
    console.print(f"building a fleet of {meters:,} meters ({config.area.name.title()} area)…")
    from kenshin.mdms.archive import ParquetArchive

    system = build_system(
        config,
        store=opened,
        aroute=aroute,
        loss=loss,
        loss_burst=loss_burst,
        archive=None if archive is None else ParquetArchive(archive),
    )
    end = begin + dt.timedelta(days=days)
    with progress_bar("[bold]simulating[/] {task.fields[now]}", "steps") as progress:
        task = progress.add_task("simulate", total=None, now=begin.isoformat())

        def on_slot(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, now=system.fleet.now.isoformat())

        summary = system.run(end, on_slot, last=True)
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
        if summary.frames_in_flight:
            table.add_row("still on their way at the end", f"{summary.frames_in_flight:,}")
        table.add_row("frames accepted by the HES", f"{summary.frames_accepted:,}")
        table.add_row("frames refused", f"{summary.frames_rejected:,}")
        for duty, share in (summary.on_time or {}).items():
            table.add_row(f"on time {duty}", f"{share:.3%}")
    if lost and system.link is not None:
        table.add_row(
            "lost on the way to the MDMS",
            f"{system.link.lost_slots:,} meter messages ({lost:,} values; bursts of "
            f"{system.link.burst:g} slots on average)",
        )
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
