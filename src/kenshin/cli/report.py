"""``kenshin report late|estimated|gaps|events --day D``: the API's fleet-wide answers from a store,
as a table, CSV or JSON (``kenshin.mdms.reports``)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.table import Table

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
    out,
    parse_day,
    store_location,
)
from kenshin.core.timeslots import JST, to_epoch_us

FORMATS = ("table", "csv", "json")
TABLE_ROWS = 20  # a terminal shows the summary and the first rows; --format csv for all


def report_command(
    kind: Annotated[str, typer.Argument(help="late, estimated, gaps or events.")],
    day: Annotated[str, typer.Option(help="JST day, YYYY-MM-DD.")],
    store: StoreOpt = None,
    db: DbOpt = None,
    postgres: PostgresOpt = None,
    channel: ChannelOpt = "active_forward",
    resolution: ResolutionOpt = "30",
    area: OnlyAreaOpt = None,
    feeder: OnlyFeederOpt = None,
    transformer: OnlyTransformerOpt = None,
    generation: OnlyGenerationOpt = None,
    capability: OnlyCapabilityOpt = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table (summary and first rows), csv or json.")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of the terminal.")
    ] = None,
) -> None:
    """A day's late and missing values, estimated and suspect values, open gaps or meter events,
    for the whole fleet or the meters chosen, by meter and slot (as GET /api/v1/reports/KIND)."""
    from kenshin.api.report_routes import csv_bytes, meter_filter, plain, report_table
    from kenshin.errors import InvalidInput
    from kenshin.mdms.reports import REPORT_KINDS, labelled, summary

    if kind not in REPORT_KINDS:
        raise InvalidInput(f"no report {kind!r}; reports: {', '.join(REPORT_KINDS)}")
    if output_format not in FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    if output is not None and output_format == "table":
        raise InvalidInput("--output takes --format csv or json")
    if output is not None and not output.parent.is_dir():
        raise InvalidInput(f"--output {output}: directory {output.parent} does not exist")
    target = parse_day(day, "--day")
    assert target is not None
    meters = meter_filter(
        area=area,
        feeder=feeder,
        transformer=transformer,
        generation=generation,
        capability=capability,
    )
    opened = open_store(store_location(store, db, postgres), StoreMode.READ_ONLY)
    try:
        table = report_table(
            opened,
            kind,
            target,
            now_us=to_epoch_us(dt.datetime.now(JST)),
            channel=channel,
            resolution=resolution,
            meters=meters,
        )
    finally:
        opened.close()
    counts = summary(kind, table)
    shown = labelled(kind, table)
    if output_format == "csv":
        data = csv_bytes(shown)
    elif output_format == "json":
        body = {"report": kind, "day": target.isoformat(), "summary": counts}
        body["items"] = plain(shown).to_pylist()
        data = (json.dumps(body, ensure_ascii=False, indent=1) + "\n").encode()
    else:
        _print_table(kind, target, counts, plain(shown))
        return
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        output.write_bytes(data)
        console.print(f"{kind} {target}: {table.num_rows:,} rows → {output}", soft_wrap=True)


def _print_table(kind: str, day: dt.date, counts: dict[str, Any], shown: pa.Table) -> None:
    extra = ", ".join(
        f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
        for k, v in counts.items()
        if k not in ("cells", "events", "meters")
    )
    what = "events" if kind == "events" else "values"
    out.print(
        f"{kind} {day}: {shown.num_rows:,} {what} of {counts['meters']:,} meters"
        + (f" ({extra})" if extra else "")
    )
    if shown.num_rows == 0:
        return
    table = Table(*shown.column_names)
    for row in shown.slice(0, TABLE_ROWS).to_pylist():
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    out.print(table)
    if shown.num_rows > TABLE_ROWS:
        out.print(f"… {shown.num_rows - TABLE_ROWS:,} more (--format csv for all)")
