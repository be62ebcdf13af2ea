"""Memory of the head-end's command book in a long run (issue: architecture, command retention).

The in-process wire system (``kenshin up``'s fleet of 2,000 meters) runs for a simulated day while
commands arrive at a steady rate through the head-end's command API (``hes.commands.request``, as
``POST /api/v1/meters/{id}/commands`` does), next to the re-reads the head-end requests itself.
Every few simulated hours it prints the command records and audit entries the book holds and the
process RSS: once commands are older than ``keep_finished`` the book forgets them, so the records
level off instead of growing with the number of commands.

The head-end keeps finished commands for 24 h; to see the plateau within one simulated day this
benchmark gives its book a shorter ``keep_finished`` (``--keep-hours``, default 4).
``--keep-hours 24 --hours 72`` shows the head-end's own policy. RSS grows with the run whatever
the commands do (readings in the in-memory DuckDB store, the duty trackers): ``--per-minute 0``
measures that baseline, ``--keep-hours 1000`` the book without retention.

Usage: python benchmarks/commands_memory.py [--meters 2000] [--hours 24] [--per-minute 10]
       [--keep-hours 4] [--every 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from kenshin.app.system import build_system
from kenshin.aroute.frames import CommandKind
from kenshin.core.meterspec import MeterClass
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.fleet.simulator import FleetConfig
from kenshin.hes.commands import CommandBook

# what operators send: ampere limits (40 and 60 A: every LV meter with a switch takes them),
# the soft switch, closing a switch; HV and EHV meters refuse all but the soft switch (R5)
KINDS = (
    (CommandKind.SET_AMPERE_LIMIT, (40,)),
    (CommandKind.SET_AMPERE_LIMIT, (60,)),
    (CommandKind.SET_SOFT_SWITCH, (30,)),
    (CommandKind.SWITCH_CLOSE, ()),
)


def rss_mib() -> float:
    """The process's resident memory now (not the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=2_000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--per-minute", type=int, default=10, help="API commands a minute")
    parser.add_argument("--keep-hours", type=float, default=4.0, help="keep_finished")
    parser.add_argument("--every", type=int, default=2, help="report every N simulated hours")
    args = parser.parse_args()
    start = dt.datetime(2026, 4, 1, tzinfo=JST)
    system = build_system(
        FleetConfig(n_meters=args.meters, start=start, seed=1), aroute="wire", sweep=False
    )
    hes = system.hes
    assert hes is not None
    old = hes.commands
    policy = dataclasses.replace(old.policy, keep_finished=dt.timedelta(hours=args.keep_hours))
    # the same specs and the head-end's live route array (the collector each meter is heard via)
    hes.commands = CommandBook(old.meter_specs, old.collector_of, policy)
    book = hes.commands
    rng = np.random.default_rng(7)
    lv = np.flatnonzero(hes.meter_class < MeterClass.HV)

    table = Table(
        title=f"command book, {args.meters:,} meters, wire path, {args.per_minute} API "
        f"commands/min, keep_finished {args.keep_hours:g} h"
    )
    for column in (
        "sim h",
        "requested",
        "re-reads",
        "forgotten",
        "records held",
        "audit entries",
        "idem. keys",
        "queue entries",
        "RSS MiB",
    ):
        table.add_column(column, justify="right")

    def report(hour: int) -> None:
        held = book.held()
        table.add_row(
            f"{hour}",
            f"{requested:,}",
            f"{hes.stats.rereads_requested:,}",
            f"{book.pruned:,}",
            f"{held['records']:,}",
            f"{held['audit_entries']:,}",
            f"{held['idempotency_keys']:,}",
            f"{held['queues']:,}",
            f"{rss_mib():,.0f}",
        )

    requested = 0
    steps_per_hour = 12  # wire mode steps 5 minutes
    t0 = time.perf_counter()
    report(0)
    for step in range(1, args.hours * steps_per_hour + 1):
        system.run_step()  # the head-end ticks every simulated minute inside the step
        now_us = to_epoch_us(hes.clock.now())
        for i in range(5 * args.per_minute):  # the step's five minutes of API requests, at once
            # mostly LV meters, as operators would; every tenth anywhere (HV refuses switching)
            key = int(rng.choice(lv) if i % 10 else rng.integers(args.meters))
            kind, value = KINDS[int(rng.integers(len(KINDS)))]
            book.request(key, kind, value, now_us, idempotency_key=f"bench-{requested}")
            requested += 1
        if step % (args.every * steps_per_hour) == 0:
            system.mdms.flush()
            report(step // steps_per_hour)
    seconds = time.perf_counter() - t0
    console = Console(width=120)
    console.print(table)
    counts = {state.label: n for state, n in book.counts().items() if n}
    console.print(
        f"commands at the end: {counts}; acks ignored {dict(book.ignored_acks)}; "
        f"{seconds:.1f} s for {args.hours} simulated hours"
    )
    system.close()


if __name__ == "__main__":
    main()
