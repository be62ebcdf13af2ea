"""Benchmark of the thin path (issue: foundation): simulate → A-route → HES → MDMS → DuckDB.

Figures (printed as a table):
1. ``kenshin simulate`` of 100,000 meters × 1 day (30-min and 15-min values of all meters, 5-min
   values of a 10 % sample) into a DuckDB file: wall time, target ≤ 30 s.
2. End-to-end readings/s ÷ raw DuckDB insert rate of the same rows from one Arrow table, measured
   in the same run: target ≥ 0.25.
3. Peak memory (max RSS) of ``kenshin simulate`` for 1,000,000 meters × 1 day: target ≤ 4 GiB
   (``--million``; takes a few minutes).

Usage: ``python benchmarks/simulate.py [--meters 100000] [--million]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

from kenshin.fleet.simulator import FleetConfig
from kenshin.system import EmbeddedSystem

console = Console()


def end_to_end(n_meters: int, workdir: Path) -> tuple[float, float, int, Path]:
    """(seconds including fleet build, seconds simulating, rows stored, db path)."""
    db = workdir / "e2e.duckdb"
    started = time.perf_counter()
    config = FleetConfig(n_meters=n_meters)
    system = EmbeddedSystem(config, db)
    built = time.perf_counter()
    system.run(config.start + dt.timedelta(days=1))
    rows = sum(system.store.reading_counts().values())
    system.close()
    finished = time.perf_counter()
    return finished - started, finished - built, rows, db


def raw_insert(source_db: Path, workdir: Path) -> tuple[float, int]:
    """Seconds to insert the same rows from one Arrow table into a fresh DuckDB file."""
    with duckdb.connect(str(source_db), read_only=True) as con:
        table = con.sql("SELECT * FROM readings").to_arrow_table()
    target = workdir / "raw.duckdb"
    con = duckdb.connect(str(target))
    con.execute(
        "CREATE TABLE readings (meter_key INTEGER, channel UTINYINT, resolution UTINYINT, "
        "interval_end TIMESTAMPTZ, value INTEGER, quality UTINYINT, source UTINYINT, "
        "method UTINYINT, tx_time TIMESTAMPTZ)"
    )
    started = time.perf_counter()
    con.register("incoming", table)
    con.execute("INSERT INTO readings SELECT * FROM incoming")
    con.execute("CHECKPOINT")
    seconds = time.perf_counter() - started
    con.close()
    return seconds, table.num_rows


def peak_memory_gib(n_meters: int, workdir: Path) -> tuple[float, float]:
    """(max RSS [GiB], wall seconds) of a `kenshin simulate` child process."""
    db = workdir / "million.duckdb"
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kenshin",
            "simulate",
            "--meters",
            str(n_meters),
            "--days",
            "1",
            "--start",
            "2026-04-01",
            "--db",
            str(db),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument(
        "--million", action="store_true", help="also measure 1,000,000 meters' memory"
    )
    args = parser.parse_args()

    table = Table(title=f"kenshin simulate benchmark ({os.cpu_count()} cores)")
    for column in ("figure", "measured", "target", "met"):
        table.add_column(column)
    with tempfile.TemporaryDirectory(prefix="kenshin-bench-") as tmp:
        work = Path(tmp)
        console.print(f"simulating {args.meters:,} meters × 1 day…")
        total_s, sim_s, rows, db = end_to_end(args.meters, work)
        console.print("raw DuckDB insert of the same rows…")
        raw_s, raw_rows = raw_insert(db, work)
        assert raw_rows == rows
        e2e_rate, raw_rate = rows / total_s, rows / raw_s
        ratio = e2e_rate / raw_rate
        scale = args.meters / 100_000
        table.add_row(
            f"simulate {args.meters:,} × 1 day (incl. fleet build)",
            f"{total_s:.1f} s",
            f"≤ {30 * scale:.0f} s",
            "yes" if total_s <= 30 * scale else "NO",
        )
        table.add_row("  of which simulating + storing", f"{sim_s:.1f} s", "", "")
        table.add_row("rows stored", f"{rows:,}", "", "")
        table.add_row("end-to-end rate", f"{e2e_rate / 1e6:.2f} M rows/s", "", "")
        table.add_row(
            "raw DuckDB insert (one Arrow table)", f"{raw_rate / 1e6:.2f} M rows/s", "", ""
        )
        table.add_row(
            "end-to-end ÷ raw insert", f"{ratio:.2f}", "≥ 0.25", "yes" if ratio >= 0.25 else "NO"
        )
        if args.million:
            console.print("simulating 1,000,000 meters × 1 day in a child process…")
            gib, seconds = peak_memory_gib(1_000_000, work)
            table.add_row(
                "1,000,000 × 1 day: peak memory",
                f"{gib:.2f} GiB",
                "≤ 4 GiB",
                "yes" if gib <= 4 else "NO",
            )
            table.add_row("1,000,000 × 1 day: wall time", f"{seconds:.0f} s", "", "")
    console.print(table)


if __name__ == "__main__":
    main()
