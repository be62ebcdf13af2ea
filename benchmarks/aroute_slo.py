"""On-time delivery of the whole wire path with the default network model (issue: A-route/HES).

A 10,000-meter area, in one process: meters encrypt frames, the network model delays and loses
them, collectors bundle them, the head-end authenticates, stores and re-reads what was lost.
Prints the on-time share per duty (targets: A1 ≥ 99.9 %, A3 ≥ 99 %) and the cost per frame.

Usage: python benchmarks/aroute_slo.py [--meters 10000] [--days 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from rich.console import Console
from rich.table import Table

from _figures import Figure, add_json_option, record
from kenshin.app.system import build_system
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import FleetConfig
from kenshin.hes.policy import Duty

TARGETS = {Duty.A1: 0.999, Duty.A3: 0.99, Duty.A2: None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=1.0)
    add_json_option(parser)
    args = parser.parse_args()
    start = dt.datetime(2026, 4, 1, tzinfo=JST)
    system = build_system(FleetConfig(n_meters=args.meters, start=start, seed=1), aroute="wire")
    t0 = time.perf_counter()
    # one more hour so the day's last slots are judged
    summary = system.run(start + dt.timedelta(days=args.days, hours=1))
    seconds = time.perf_counter() - t0
    hes, field = system.hes, system.field
    assert hes is not None and field is not None
    table = Table(title=f"wire path, {args.meters:,} meters × {args.days:g} day, default network")
    for column in ("duty", "expected", "on time", "share", "target", "p50 / p99 delay"):
        table.add_column(column, justify="right")
    figures = []
    for duty, (on, expected) in sorted(hes.slo_totals().items()):
        days = [s for s in hes.slo() if s.duty is duty and s.expected]
        p50 = max((s.p50_delay_s or 0) for s in days)
        p99 = max((s.p99_delay_s or 0) for s in days)
        target = TARGETS[duty]
        table.add_row(
            duty.label,
            f"{expected:,}",
            f"{on:,}",
            f"{on / expected:.4%}",
            "—" if target is None else f"≥ {target:.1%}",
            f"≤ {p50:g} s / ≤ {p99:g} s",
        )
        figures.append(
            Figure(
                f"wire path: {duty.label} on time, "
                f"{args.meters:,} meters × {args.days:g} day, default network model",
                f"{on / expected:.3%} of {expected:,}",
                target="" if target is None else f"≥ {target:.1%}",
                met=None if target is None else on / expected >= target,
            )
        )
    console = Console()
    console.print(table)
    note = (
        f"frames sent {field.stats.frames_sent:,}, "
        f"lost in the network {field.stats.frames_lost:,}, "
        f"accepted {hes.stats.frames_accepted:,}, refused {hes.stats.frames_rejected_total}; "
        f"re-reads requested {hes.stats.rereads_requested:,}; "
        f"{summary.values:,} values stored; {seconds:.1f} s "
        f"({field.stats.frames_sent / seconds:,.0f} frames/s end to end)"
    )
    console.print(note)
    system.close()
    record(args.json, figures, details=[note])


if __name__ == "__main__":
    main()
