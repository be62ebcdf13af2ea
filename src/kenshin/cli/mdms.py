"""``kenshin vee`` and ``kenshin archive``: the MDMS's daily and monthly work, run by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kenshin.app.stores import StoreMode, open_store, remember_archive
from kenshin.cli.options import DbOpt, PostgresOpt, StoreOpt, console, parse_day, store_location
from kenshin.core.timeslots import JST, Resolution, to_epoch_us

if TYPE_CHECKING:
    from kenshin.mdms.store import ReadingStore


def archive_command(
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

    day = parse_day(now, "--now") or dt.datetime.now(JST).date()
    moment = dt.datetime(day.year, day.month, day.day, tzinfo=JST)
    opened = open_store(store_location(store, db, postgres), StoreMode.OPEN)
    try:
        # recorded first: every later opening of the store reads archived months from there
        remember_archive(opened, archive)
        report = run_housekeeping(
            opened,
            ParquetArchive(archive),
            to_epoch_us(moment),
            RetentionPolicy(retention_years=retention_years, hot_months=hot_months),
        )
    finally:
        opened.close()
    console.print(f"{report.summary()} → {archive}")
    for name in report.archived:
        console.print(f"  archived {name}")
    for name in report.deleted:
        console.print(f"  deleted {name} (past retention)")


def vee_command(
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
    passes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Passes (a channel at a resolution each) swept side by side; default: two "
            "(1: one after another).",
        ),
    ] = None,
) -> None:
    """Run the VEE sweep of one day by hand, as the system does after midnight: labels,
    estimates, the gap list and, for both channels, the specified-meter differences."""
    from kenshin.api.params import parse_channel
    from kenshin.app.services import fleet_settings
    from kenshin.mdms.scheduler import SWEPT_CHANNELS, sweep_day

    target = parse_day(day, "--day")
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
    opened = open_store(store_location(store, db, postgres), StoreMode.OPEN)
    try:
        _refuse_a_day_without_values(opened, target)
        swept = sweep_day(
            opened,
            target,
            now_us=to_epoch_us(dt.datetime.now(JST)),
            channels=channels,
            resolutions=chosen,
            # 15-min values are owed only where the fleet's soft switch sent them (SPEC A5)
            send_15min=bool(fleet_settings(opened).get("send_15min", False)),
            passes_at_once=passes,
        )
    finally:
        opened.close()
    for report in swept.sweeps:
        console.print(report.summary())
        for rule, count in report.rules.items():
            console.print(f"  {rule}: {count:,}")
    if swept.differences is not None:
        console.print(f"S3 differences {swept.differences.summary()}")


def _refuse_a_day_without_values(store: ReadingStore, day: dt.date) -> None:
    """A day the store holds no value of is a typo or a day before the fleet: swept, it would
    write every meter's every slot as missing and as a gap to re-read."""
    from kenshin.core.channels import Channel
    from kenshin.errors import InvalidInput
    from kenshin.mdms.months import month_name
    from kenshin.mdms.sweep import day_window

    start, end = day_window(day)
    if store.written_days(Channel.ACTIVE_FORWARD, Resolution.MIN30, start, end, 0):
        return
    months = sorted({month_name(m).replace("_", "-") for m in store.months()})
    if not months:
        held = "it holds no values yet"
    elif len(months) == 1:
        held = f"it holds {months[0]}"
    else:
        held = f"it holds {months[0]} … {months[-1]}"
    raise InvalidInput(
        f"--day {day}: the store holds no values of that day ({held}); nothing swept"
    )
