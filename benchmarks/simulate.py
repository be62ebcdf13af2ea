"""Benchmark of the thin path (issue: foundation): simulate → A-route → HES → MDMS → DuckDB.

Figures:
1. ``kenshin simulate`` of 100,000 meters × 1 day (30-min values of all meters, 15-min values of
   the next-generation ones, 5-min values of a 10 % sample) into a DuckDB file, end to end:
   building the fleet, simulating, storing, the day-end VEE sweep and S3 differences, the
   closing checkpoint. Target ≤ 30 s. The soft switch is on (SPEC A5; off by default): the
   heavier load of a utility after the move to 15-min settlement, which the README's figures are.
2. Its rate (readings in the store after the run ÷ that time) ÷ the rate of a raw insert of the
   same stored rows from one Arrow table into a fresh DuckDB file, measured in the same run:
   target ≥ 0.25. The register reads the run also stores are not counted.
3. ``--million``: peak memory (max RSS) and wall time of a ``kenshin simulate`` child process
   of 1,000,000 meters × 1 day: target ≤ 4 GiB (takes a few minutes). It runs with the
   command's defaults, so with the soft switch off (no 15-min values sent).

The end-to-end run is the command's: ``EmbeddedSystem`` built as ``kenshin simulate`` builds it
(DuckDB store, direct A-route, day-end sweep on), in this process so its parts can be timed.

Usage: ``python benchmarks/simulate.py [--meters 100000] [--days 1] [--million] [--json PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
from rich.console import Console

from _figures import Figure, add_json_option, figures_table, record
from kenshin.app.allocator import cap_malloc_arenas
from kenshin.app.system import build_system
from kenshin.fleet.simulator import FleetConfig
from kenshin.mdms.duckdb_store import DuckDBStore

TARGET_S = 30.0  # at 100,000 meters × 1 day
TARGET_RATIO = 0.25
TARGET_GIB = 4.0  # at 1,000,000 meters × 1 day
console = Console()


@dataclass
class EndToEnd:
    db: Path
    build_s: float  # fleet, meters table, store
    run_s: float  # simulating and storing, with the day-end ticks below
    schedule_s: float  # MdmsSchedule ticks: day-end VEE sweeps and S3 differences
    close_s: float  # last writes and checkpoint
    by_resolution: dict[int, int]
    registers: int
    days_swept: int
    swept_slots: int
    difference_cells: int

    @property
    def seconds(self) -> float:
        return self.build_s + self.run_s + self.close_s


def end_to_end(n_meters: int, days: int, workdir: Path) -> EndToEnd:
    db = workdir / "e2e.duckdb"
    t0 = time.perf_counter()
    config = FleetConfig(n_meters=n_meters, send_15min=True)  # the heavier case (SPEC A5)
    # as `kenshin simulate` builds it (cli.simulate): DuckDB store, direct A-route, no loss, no
    # archive; sweep=True is the default, spelled out: each closed day gets its VEE and S3 pass
    system = build_system(config, store=DuckDBStore(db), aroute="direct", loss=0.0, sweep=True)
    schedule = system.schedule
    assert schedule is not None
    ticks = schedule.tick
    schedule_s = 0.0

    def timed_tick(now_us: int, *, final: bool = False) -> None:
        nonlocal schedule_s
        started = time.perf_counter()
        ticks(now_us, final=final)
        schedule_s += time.perf_counter() - started

    schedule.tick = timed_tick  # type: ignore[method-assign]
    t1 = time.perf_counter()
    system.run(config.start + dt.timedelta(days=days))
    t2 = time.perf_counter()
    system.close()
    t3 = time.perf_counter()
    if not schedule.sweeps or not schedule.differences:
        raise SystemExit("the run did not sweep its days: the figure would not be the command's")
    with duckdb.connect(str(db), read_only=True) as con:
        by_resolution = dict(
            con.sql("SELECT resolution, count(*) FROM readings GROUP BY ALL").fetchall()
        )
        (registers,) = con.execute("SELECT count(*) FROM register_reads").fetchone() or (0,)
    return EndToEnd(
        db=db,
        build_s=t1 - t0,
        run_s=t2 - t1,
        schedule_s=schedule_s,
        close_s=t3 - t2,
        by_resolution={int(r): int(c) for r, c in sorted(by_resolution.items(), reverse=True)},
        registers=int(registers),
        days_swept=len(schedule.sweeps),
        swept_slots=sum(r.cells for r in schedule.sweeps + schedule.other_sweeps),
        difference_cells=sum(d.cells for d in schedule.differences),
    )


def raw_insert(source_db: Path, workdir: Path) -> tuple[float, int]:
    """(seconds, rows) to insert the rows stored in ``source_db`` from one Arrow table into a
    fresh DuckDB file, in one table of the store's own column types, checkpoint included."""
    with duckdb.connect(str(source_db), read_only=True) as con:
        columns = con.sql("DESCRIBE readings").fetchall()
        table = con.sql("SELECT * FROM readings").to_arrow_table()
    ddl = ", ".join(f"{name} {kind}" for name, kind, *_ in columns)
    con = duckdb.connect(str(workdir / "raw.duckdb"))
    con.execute(f"CREATE TABLE readings ({ddl})")
    started = time.perf_counter()
    con.register("incoming", table)
    con.execute("INSERT INTO readings SELECT * FROM incoming")
    con.execute("CHECKPOINT")
    seconds = time.perf_counter() - started
    (rows,) = con.execute("SELECT count(*) FROM readings").fetchone() or (0,)
    con.close()
    return seconds, int(rows)


def peak_memory(n_meters: int, days: int, workdir: Path) -> tuple[float, float, int]:
    """(max RSS [GiB], wall seconds, readings stored) of a `kenshin simulate` child process."""
    db = workdir / "million.duckdb"
    command = [sys.executable, "-m", "kenshin", "simulate", "--meters", str(n_meters)]
    command += ["--days", str(days), "--start", "2026-04-01", "--db", str(db)]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, its children included
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"kenshin simulate failed ({child.returncode}): {' '.join(command)}")
    with duckdb.connect(str(db), read_only=True) as con:
        (rows,) = con.execute("SELECT count(*) FROM readings").fetchone() or (0,)
    return usage.ru_maxrss / 2**20, seconds, int(rows)  # ru_maxrss is in KiB on Linux


def millions(rows: float) -> str:
    return f"{rows / 1e6:.2f} M"


def main() -> None:
    cap_malloc_arenas()  # as the kenshin command does, before any thread starts
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument(
        "--million", action="store_true", help="also measure 1,000,000 meters' memory"
    )
    parser.add_argument(
        "--million-meters",
        type=int,
        default=1_000_000,
        help="fleet of the --million run (smaller only to check that the run works)",
    )
    parser.add_argument("--workdir", type=Path, help="where the DuckDB files go (default: temp)")
    add_json_option(parser)
    args = parser.parse_args()

    size = f"{args.meters:,} meters × {args.days} day"
    at_target_size = args.meters == 100_000 and args.days == 1
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="kenshin-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        console.print(f"kenshin simulate, {size}…")
        e2e = end_to_end(args.meters, args.days, work)
        console.print("raw DuckDB insert of the same rows…")
        raw_s, rows = raw_insert(e2e.db, work)
        if rows != sum(e2e.by_resolution.values()):
            raise SystemExit(f"raw insert holds {rows:,} rows, the store {e2e.by_resolution}")
        e2e_rate, raw_rate = rows / e2e.seconds, rows / raw_s
        breakdown = ", ".join(f"{res}-min {millions(n)}" for res, n in e2e.by_resolution.items())
        details = [
            f"readings stored (counted in the store after the run): {breakdown}; "
            f"{millions(e2e.registers)} register reads also stored, not counted",
            f"end to end {e2e.seconds:.1f} s = fleet build {e2e.build_s:.1f} s + run "
            f"{e2e.run_s:.1f} s (day-end VEE + S3 differences {e2e.schedule_s:.1f} s of it: "
            f"{e2e.days_swept} day(s), {e2e.swept_slots:,} slots swept, "
            f"{e2e.difference_cells:,} differences) + close and checkpoint {e2e.close_s:.1f} s",
            f"anchor: the same {rows:,} rows read back from the store, inserted from one Arrow "
            f"table into one table of the store's column types in a fresh DuckDB file, "
            f"checkpoint included: {raw_s:.2f} s",
        ]
        figures += [
            Figure(
                f"`kenshin simulate` {size}, end to end",
                f"{e2e.seconds:.1f} s ({millions(rows)} readings)",
                target=f"≤ {TARGET_S:.0f} s at 100,000 × 1 day",
                met=e2e.seconds <= TARGET_S if at_target_size else None,
            ),
            Figure("  of which day-end VEE sweep + S3 differences", f"{e2e.schedule_s:.1f} s"),
            Figure(
                "end-to-end rate ÷ raw DuckDB insert of the same rows",
                f"{millions(e2e_rate)} rows/s",
                anchor=f"raw insert {millions(raw_rate)} rows/s",
                ratio=f"{e2e_rate / raw_rate:.2f}",
                target=f"≥ {TARGET_RATIO}",
                met=e2e_rate / raw_rate >= TARGET_RATIO,
            ),
        ]
        if args.million:
            big = args.million_meters
            console.print(f"kenshin simulate, {big:,} meters × {args.days} day (child)…")
            gib, seconds, million_rows = peak_memory(big, args.days, work)
            figures.append(
                Figure(
                    f"peak RSS, `kenshin simulate` {big:,} × {args.days} day (child process)",
                    f"{gib:.2f} GiB ({seconds:.0f} s, {millions(million_rows)} readings)",
                    target=f"≤ {TARGET_GIB:.0f} GiB at 1,000,000 × 1 day",
                    met=gib <= TARGET_GIB if big == 1_000_000 and args.days == 1 else None,
                )
            )
    console.print(figures_table(figures, f"kenshin simulate benchmark ({os.cpu_count()} cores)"))
    for line in details:
        console.print(line)
    record(args.json, figures, details=details)


if __name__ == "__main__":
    main()
