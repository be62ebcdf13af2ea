"""``kenshin drill faults``: the fault drill of :mod:`kenshin.app.drill` (private Mosquitto and
PostgreSQL, one fault per run, each compared with a clean run of the same seed), as a table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from kenshin.cli.options import SeedOpt, console, meters_option, out
from kenshin.control.planner import Rule

if TYPE_CHECKING:
    from kenshin.app.drill import Outcome

drill_app = typer.Typer(
    help="Drills: the service mode under injected faults.", no_args_is_help=True
)


@drill_app.command("faults")
def faults_command(
    meters: Annotated[int, meters_option(1_000_000)] = 20_000,
    days: Annotated[float, typer.Option(min=0.05, max=30, help="Simulated days per run.")] = 1,
    faults: Annotated[
        str,
        typer.Option(
            help="all, or fault names separated by commas: worker0-early, worker0-mid, "
            "worker0-late (worker0 for all three), the same for worker1, broker, database, "
            "disk-full."
        ),
    ] = "all",
    seed: SeedOpt = 1,
    worker_timeout: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="The fleet's --worker-timeout: seconds without progress before it gives up.",
        ),
    ] = 120.0,
    logs: Annotated[
        Path | None, typer.Option(help="Keep every process's output in this directory.")
    ] = None,
    start: Annotated[str, typer.Option(help="First simulated day, YYYY-MM-DD (JST).")] = (
        "2026-04-01"
    ),
) -> None:
    """Run the service mode (Mosquitto, `kenshin hes` workers, PostgreSQL or DuckDB, `kenshin
    fleet --speed max`) once clean and once per fault: kill -9 of a worker early, mid-stream or
    near the end; kill -9 of the broker; an immediate stop of the database; a full disk under
    the DuckDB worker. Each run's stored values are compared with the clean run's. Exit code 1
    if any fault lost a value, stored one twice, or made a process exit unexpectedly."""
    from kenshin.app.drill import DrillConfig, parse_faults, run_drill
    from kenshin.cli.options import parse_day

    parse_day(start, "--start")
    chosen = parse_faults(faults)
    config = DrillConfig(
        meters=meters,
        days=days,
        seed=seed,
        start=start,
        faults=tuple(chosen),
        worker_timeout_s=worker_timeout,
        logs=logs,
    )
    runs = len(chosen) + len({f.backend for f in chosen})  # and a clean run per backend
    started = time.monotonic()
    outcomes: list[Outcome] = []
    with console.status("[bold]fault drill[/]") as status:

        def report(line: str) -> None:
            done = len(outcomes)
            elapsed = time.monotonic() - started
            status.update(f"[bold]fault drill[/] run {done + 1}/{runs} ({elapsed:.0f} s): {line}")

        def finished(outcome: Outcome) -> None:
            outcomes.append(outcome)
            mark = "[green]ok[/]" if outcome.ok else "[red]FAILED[/]"
            if outcome.clean is None:
                mark = "[dim]clean[/]"
            console.print(
                f"{mark} {outcome.name}: {outcome.stored:,} values stored in "
                f"{outcome.seconds:.0f} s",
                highlight=False,
            )

        run_drill(config, report, finished)
    out.print(drill_table(outcomes, meters, days, time.monotonic() - started))
    bad = [o for o in outcomes if o.clean is not None and not o.ok]
    for o in outcomes:
        if o.extra:
            console.print(
                f"note: {o.name} stored {o.extra:,} pushed values the clean run did not "
                "(the runs were not alike)",
                highlight=False,
            )
        for line in o.exits:
            console.print(f"{o.name}: {line}", markup=False, highlight=False)
    if bad or any(o.exits for o in outcomes):
        names = ", ".join(o.name for o in bad) or "a clean run"
        console.print(f"kenshin: error: the drill failed: {names}", markup=False)
        raise typer.Exit(1)


def drill_table(outcomes: list[Outcome], meters: int, days: float, seconds: float) -> Table:
    """fault | stored distinct | clean | lost | twice | recovery s | exits."""
    table = Table(
        title=f"kenshin drill faults: {meters:,} meters × {days:g} day(s), {seconds:.0f} s",
        caption="lost: values pushed in the clean run and not stored; twice: rows beyond one "
        "per slot; recovery: restart → first frame accepted (broker) or first batch committed "
        "(database, the restarted worker)",
    )
    for name in ("fault", "stored distinct", "clean", "lost", "twice", "recovery s", "exits"):
        table.add_column(name, justify="left" if name == "fault" else "right")
    for o in outcomes:
        recovery = "—" if o.recovery_s is None else f"{o.recovery_s:.1f}"
        table.add_row(
            o.name,
            f"{o.stored:,}",
            "—" if o.clean is None else f"{o.clean:,}",
            "—" if o.clean is None else _count(o.lost),
            _count(o.twice),
            recovery,
            _count(len(o.exits)),
        )
    return table


def _count(n: int) -> str:
    return f"{n:,}" if n == 0 else f"[bold red]{n:,}[/]"


@drill_app.command("outage")
def outage_command(
    scenario: Annotated[
        str,
        typer.Option(
            help="A scenario of kenshin/outage/scenarios: transformer, feeder, substation, "
            "storm, collector, breakers, nested."
        ),
    ] = "storm",
    meters: Annotated[int, meters_option(100_000)] = 1000,
    seed: SeedOpt = 1,
    loss: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Random loss of uplink frames (0.02: 2 %).")
    ] = 0.0,
    hours: Annotated[
        float | None,
        typer.Option(min=1.0, max=72.0, help="Simulated hours (default: the scenario's, 4–5)."),
    ] = None,
) -> None:
    """Run a fleet with the scenario's faults through the A-route, the head-end and the outage
    engine, and score what the engine reported against the truth (issue 15)."""
    from kenshin.app.outage_drill import percentile, run_outage_drill

    started = time.monotonic()
    with console.status(f"[bold]outage drill[/] {scenario}, {meters:,} meters"):
        result = run_outage_drill(scenario, meters, seed, loss, hours=hours)
    table = Table(
        title=f"kenshin drill outage: {scenario}, {meters:,} meters, {loss:.0%} loss, "
        f"seed {seed}, {result.hours:g} h simulated in {time.monotonic() - started:.0f} s",
        caption="latency: confirmed − fault start; restoration: marked restored − power back",
    )
    for name in (
        "level",
        "faults",
        "reported",
        "found",
        "precision",
        "recall",
        "F1",
        "detect p50/p95 min",
        "restore p50/p95 min",
    ):
        table.add_column(name, justify="left" if name == "level" else "right")

    def minutes(values: list[float]) -> str:
        p50, p95 = percentile(values, 50), percentile(values, 95)
        return "—" if p50 is None or p95 is None else f"{p50 / 60:.0f} / {p95 / 60:.0f}"

    for level, score in result.levels.items():
        if not score.truth and not score.reported:
            continue
        table.add_row(
            level,
            str(score.truth),
            str(score.reported),
            str(score.matched),
            f"{score.precision:.2f}",
            f"{score.recall:.2f}",
            f"{score.f1:.2f}",
            minutes(score.detect_s),
            minutes(score.restore_s),
        )
    out.print(table)
    out.print(
        f"false outages on breaker trips or dead collectors: "
        f"{result.false_from_breakers_or_collectors}; nested drops found "
        f"{result.nested_found} of {result.nested_truth}"
        + (
            f" ({minutes(result.nested_after_s)} min after the parent came back)"
            if result.nested_after_s
            else ""
        )
        + f"; pings {result.pings:,} "
        f"({result.pings_per_event:.1f} per event)",
        highlight=False,
    )


@drill_app.command("control")
def control_command(
    target_mw: Annotated[
        float,
        typer.Option(min=0.001, max=10_000.0, help="The reduction to reach [MW]."),
    ] = 0.5,
    meters: Annotated[int, meters_option(100_000)] = 10_000,
    seed: SeedOpt = 1,
    rule: Annotated[
        Rule, typer.Option(help="few: a random few at the floor; all: one cap for all.")
    ] = Rule.FEW,
) -> None:
    """An emergency campaign over a simulated winter evening peak (18:00–20:00), run by the
    campaign desk of POST /api/v1/campaigns: asked and approved (an R4 emergency), planned from
    the mean of 5 like days, sent signed through the switching gate as emergency profiles,
    verified each half hour against held-out households and corrected; scored against the
    truth (issue 16)."""
    from kenshin.app.control_drill import run_control_drill

    started = time.monotonic()
    with console.status(f"[bold]control drill[/] {target_mw:g} MW, {meters:,} meters"):
        result = run_control_drill(target_mw, meters, seed, rule=rule)
    table = Table(
        title=f"kenshin drill control: {target_mw:g} MW over {meters:,} meters, seed {seed}, "
        f"{time.monotonic() - started:.0f} s",
        show_header=False,
    )
    table.add_row("target", f"{result.target_kw:,.0f} kW")
    table.add_row(
        "achieved (mean of 18:00–20:00)",
        f"{result.mean_kw:,.0f} kW ({result.error:+.1%})",
    )
    halves = [
        f"{sum(result.achieved_kw[i : i + 6]) / len(result.achieved_kw[i : i + 6]):,.0f}"
        for i in range(0, len(result.achieved_kw), 6)
    ]
    table.add_row("per half hour", " · ".join(halves) + " kW")
    table.add_row(
        "verified (30-min values vs households left alone)",
        " · ".join(f"{m:,.0f} (was {t:,.0f})" for m, t in result.verified) + " kW",
    )
    progress = result.campaign.progress
    a3 = [
        [p.achieved_kw for p in progress[i : i + 6] if p.achieved_kw is not None]
        for i in range(0, len(progress), 6)
    ]
    table.add_row(
        "A3 5-min estimate (per half hour)",
        " · ".join(f"{sum(v) / len(v):,.0f}" if v else "—" for v in a3) + " kW",
    )
    table.add_row(
        "households limited",
        f"{result.touched:,} (priority register: "
        f"{result.priority_touched}; left out: {result.campaign.excluded})",
    )
    corrections = " · ".join(f"{c.correction:.3f}" for c in result.campaign.checks)
    table.add_row("rule; corrections", f"{rule.value}; {corrections}")
    table.add_row("trips, lockouts", f"{result.trips:,}, {result.lockouts:,}")
    verdicts = ", ".join(f"{v} {n}" for v, n in sorted(result.verdicts.items()))
    table.add_row(
        "gate (requests by verdict)",
        f"{verdicts}; commands sent without passing it: {result.sent_without_passing}",
    )
    restored = "—" if result.restored_after_s is None else f"{result.restored_after_s / 60:.0f} min"
    table.add_row("all back to their contract after the period", restored)
    table.add_row("commands", f"{result.commands:,} ({result.failed:,} not acknowledged)")
    out.print(table)
