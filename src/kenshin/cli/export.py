"""``kenshin export``: current values of many meters over a period to Parquet or CSV
(``kenshin.mdms.export``), archived months included."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from kenshin.app.stores import StoreMode, open_store
from kenshin.cli.options import (
    ChannelOpt,
    DbOpt,
    OnlyAreaOpt,
    OnlyCapabilityOpt,
    OnlyFeederOpt,
    OnlyGenerationOpt,
    OnlyTransformerOpt,
    PostgresOpt,
    ResolutionOpt,
    StoreOpt,
    console,
    progress_bar,
    split_list,
    store_location,
)


def export_command(
    start: Annotated[
        str, typer.Option(help="Exclusive start: a JST date (00:00) or ISO-8601 date-time.")
    ],
    end: Annotated[
        str | None, typer.Option(help="Inclusive end, same forms; default start + 1 day.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="The file to write; default kenshin-export-START-END.FORMAT here."),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format", help="parquet or csv; default from the output's suffix, else parquet."
        ),
    ] = None,
    store: StoreOpt = None,
    db: DbOpt = None,
    postgres: PostgresOpt = None,
    channel: ChannelOpt = "active_forward",
    resolution: ResolutionOpt = "30",
    meters: Annotated[
        str | None,
        typer.Option(help="Supply point ids, comma-separated, or @FILE with one per line."),
    ] = None,
    area: OnlyAreaOpt = None,
    feeder: OnlyFeederOpt = None,
    transformer: OnlyTransformerOpt = None,
    generation: OnlyGenerationOpt = None,
    capability: OnlyCapabilityOpt = None,
    as_of: Annotated[
        str | None, typer.Option(help="What was known at this time (SPEC S2); default now.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the output file if it exists.")] = False,
) -> None:
    """Export the current values of every meter, or those chosen, over a period, with supply
    point ids, values in kWh (kvarh, V), and names for quality, source, method and VEE rules;
    archived months included. One JST day at a time, so a month of a large fleet fits."""
    from kenshin.api.params import parse_channel, parse_instant, parse_resolution
    from kenshin.api.report_routes import meter_filter
    from kenshin.core.timeslots import to_epoch_us
    from kenshin.errors import InvalidInput
    from kenshin.mdms.export import FORMATS, ExportRequest, export_days, write_export

    start_ts = parse_instant("--start", start)
    end_ts = start_ts + dt.timedelta(days=1) if end is None else parse_instant("--end", end)
    if end_ts <= start_ts:
        raise InvalidInput(f"--end ({end_ts.isoformat()}) must be after --start")
    chan, res = parse_channel(channel), parse_resolution(resolution)
    as_of_us = None if as_of is None else to_epoch_us(parse_instant("--as-of", as_of))
    chosen_format = output_format or (
        output.suffix.lstrip(".").lower() if output is not None and output.suffix else "parquet"
    )
    if chosen_format not in FORMATS:
        raise InvalidInput(f"--format must be parquet or csv, got {chosen_format!r}")
    if output is None:
        output = Path(f"kenshin-export-{start_ts.date()}-{end_ts.date()}.{chosen_format}")
    if not output.parent.is_dir():
        raise InvalidInput(f"--output {output}: directory {output.parent} does not exist")
    if output.exists() and not overwrite:
        raise InvalidInput(f"--output {output} exists; pass --overwrite to replace it")
    wanted = _read_ids(meters)
    choose = meter_filter(
        area=area,
        feeder=feeder,
        transformer=transformer,
        generation=generation,
        capability=capability,
    )
    opened = open_store(store_location(store, db, postgres), StoreMode.READ_ONLY)
    try:
        roster = choose.apply(opened.read_meters())
        keys = np.asarray(roster.column("meter_key").to_numpy(False), np.int64)
        if wanted is not None:
            ids = roster.column("supply_point_id").to_pylist()
            known = dict(zip(ids, keys.tolist(), strict=True))
            unknown = [w for w in wanted if w not in known]
            if unknown:
                more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
                raise InvalidInput(
                    f"--meters: no meter {unknown[0]}{more} among the "
                    f"{'chosen' if choose.any else 'installed'} meters; nothing written"
                )
            keys = np.sort(np.array([known[w] for w in wanted], np.int64))
        request = ExportRequest(
            to_epoch_us(start_ts), to_epoch_us(end_ts), chan, res, as_of_us, keys
        )
        days = len(request.days())
        with progress_bar("[bold]exporting[/]", "days") as progress:
            task = progress.add_task("export", total=days)
            rows = write_export(
                export_days(opened, request, roster),
                output,
                chosen_format,
                on_day=lambda _: progress.advance(task),
            )
    finally:
        opened.close()
    console.print(
        f"{rows:,} values of {len(keys):,} meters, {start_ts.isoformat()} to "
        f"{end_ts.isoformat()} → {output}",
        soft_wrap=True,
    )


def _read_ids(text: str | None) -> list[str] | None:
    """Supply point ids from ``A,B`` or ``@FILE`` (one per line), each checked."""
    from kenshin.core.ids import validate_supply_point_id
    from kenshin.errors import InvalidInput, InvalidSupplyPointId

    if text is None:
        return None
    raw = split_list(text, "--meters")
    if not raw:
        raise InvalidInput("--meters names no supply point id")
    for spid in raw:
        try:
            validate_supply_point_id(spid)
        except InvalidSupplyPointId as exc:
            raise InvalidInput(f"--meters: {exc}") from None
    return list(dict.fromkeys(raw))
