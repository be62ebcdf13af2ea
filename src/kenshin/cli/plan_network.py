"""``kenshin plan-network``: compare communication method mixes for an area (SPEC A6).

The planning is :mod:`kenshin.netplan`; this prints its report as a table and a bar chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kenshin.cli.options import SeedOpt, check_parent, meters_option
from kenshin.errors import InvalidSetting

if TYPE_CHECKING:
    from kenshin.netplan import MixResult, MixSpec


def render_report(results: Sequence[MixResult], console: Console) -> None:
    """A table of the figures and a text bar chart of the on-time shares."""
    from kenshin.netplan import (
        NINES_LEGEND,
        REPORT_TEXT_COLUMNS,
        bar_lines,
        report_header,
        report_row,
    )

    table = Table(title="A-route network plan (SPEC A6)", title_justify="left")
    for i, name in enumerate(report_header()):
        table.add_column(name, justify="left" if i < REPORT_TEXT_COLUMNS else "right")
    for r in results:
        label, *figures = report_row(r)
        table.add_row(escape(label), *figures)
    console.print(table)
    console.print(NINES_LEGEND)
    for line in bar_lines(results):
        console.print(escape(line), highlight=False)


def plan_network_command(
    meters: Annotated[int, meters_option(2_000_000, "Meters in the area.")] = 10_000,
    mix: Annotated[
        list[str] | None,
        typer.Option(
            "--mix",
            help="A method mix such as mesh=0.8,cellular=0.15,plc=0.05 (repeatable). "
            "Default: pure mesh, pure cellular, pure PLC and the default mix.",
        ),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=31, help="Days of traffic to simulate.")] = 1,
    seed: SeedOpt = 1,
    svg: Annotated[
        Path | None, typer.Option("--svg", help="Also write an SVG bar chart of on-time shares.")
    ] = None,
) -> None:
    """Compare communication method mixes for an area: on-time shares of A1–A3 (SPEC A6)."""
    from kenshin.aroute.network import NetworkConfig, parse_mix
    from kenshin.hes.policy import CollectionPolicy
    from kenshin.netplan import DEFAULT_COMPARISON, plan_network, write_svg

    if svg is not None:
        check_parent(svg, "--svg")

    try:
        parsed: list[MixSpec] = [NetworkConfig(shares=parse_mix(m)) for m in mix or []]
    except InvalidSetting as exc:
        raise typer.BadParameter(str(exc), param_hint="--mix") from None
    mixes = parsed or list(DEFAULT_COMPARISON)
    results = plan_network(meters, mixes, CollectionPolicy(), days=days, seed=seed)
    console = Console()
    render_report(results, console)
    if svg is not None:
        write_svg(results, svg)
        console.print(f"wrote {escape(str(svg))}")
