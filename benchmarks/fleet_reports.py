"""Fleet-wide answers for one day (issue 13): the late/missing, estimated/suspect and gaps
reports of ``kenshin.mdms.reports``, and the export of the day to Parquet
(``kenshin.mdms.export``), over a DuckDB store of N meters × 1 day of 30-min values.

The day is ``_mdms_data.vee_day`` (3 % of values lost, a few spikes and negatives), 1 % of the
received values made to arrive two hours after their slot (late), stored, then swept by VEE
(estimates, suspects, gaps) as the system does after midnight. Each report is timed three times
(the median is reported), from the store to the coded Arrow table the API and the CLI label.
Anchor, in the same run: the plain scan of the day's rows (``read_window_versions``), which
every report of the day's values starts with.

Targets (issue 13): a day's late/estimated report for 100,000 meters ≤ 1 s; the export of
100,000 meters × 1 day of 30-min values to Parquet ≤ 5 s (timed once, file written and closed).

Usage: ``python benchmarks/fleet_reports.py [--meters 100000] [--json PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _figures import Figure, add_json_option, figures_table, record
from _mdms_data import vee_day
from kenshin.core.channels import Channel
from kenshin.core.schema import METERS_SCHEMA, TIMESTAMP
from kenshin.core.timeslots import Resolution
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.export import ExportRequest, export_days, write_export
from kenshin.mdms.reports import estimated_report, gaps_report, late_report
from kenshin.mdms.sweep import day_window, run_sweep
from vee_store_sweep import roster

DAY = dt.date(2026, 4, 15)
TARGET_S = 1.0
TARGET_EXPORT_S = 5.0
TARGET_METERS = 100_000
TWO_HOURS = 7_200_000_000


def median_of(run: Callable[[], pa.Table], repeats: int = 3) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        rows = run().num_rows
        times.append(time.perf_counter() - t)
    return statistics.median(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=TARGET_METERS)
    add_json_option(parser)
    args = parser.parse_args()
    console = Console(width=120)
    n = args.meters
    day = vee_day(n, DAY)
    readings = day.readings
    late = np.random.default_rng(11).random(readings.num_rows) < 0.01
    tx = np.asarray(readings.column("interval_end").cast(pa.int64()).to_numpy())
    tx = np.where(late, tx + TWO_HOURS, np.asarray(readings.column("tx_time").cast(pa.int64())))
    readings = readings.set_column(
        readings.column_names.index("tx_time"), "tx_time", pa.array(tx).cast(TIMESTAMP)
    )
    start, end = day_window(DAY)
    now = end + TWO_HOURS
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(Path(tmp) / "reports.duckdb")
        meters = roster(n)  # household-like units: 0.01 kWh counts, no multiplier
        for name, value in (("unit_exponent", -2), ("coefficient", 1)):
            index = METERS_SCHEMA.names.index(name)
            column = pa.array(np.full(n, value), METERS_SCHEMA.field(name).type)
            meters = meters.set_column(index, name, column)
        store.write_meters(meters)
        store.append(readings, day.registers)
        swept = run_sweep(store, DAY, now_us=now)
        console.print(f"stored and swept {n:,} meters × 1 day: {swept.summary()}")
        scan_s, scan_rows = median_of(
            lambda: store.read_window_versions(Channel.ACTIVE_FORWARD, Resolution.MIN30, start, end)
        )
        late_s, late_rows = median_of(lambda: late_report(store, DAY, now_us=now))
        est_s, est_rows = median_of(lambda: estimated_report(store, DAY))
        gaps_s, gaps_rows = median_of(lambda: gaps_report(store, DAY))
        target_file = Path(tmp) / "day.parquet"
        t = time.perf_counter()
        exported = write_export(
            export_days(store, ExportRequest(start, end)), target_file, "parquet"
        )
        export_s = time.perf_counter() - t
        size_mb = target_file.stat().st_size / 1e6
        store.close()
    at_size = n == TARGET_METERS
    target = f"≤ {TARGET_S:g} s at {TARGET_METERS:,} meters"
    anchor = f"scan of the day's rows {scan_s:.2f} s ({scan_rows:,} rows)"
    figures = [
        Figure(
            f"late/missing report, {n:,} meters × 1 day (DuckDB)",
            f"{late_s:.2f} s ({late_rows:,} cells)",
            anchor=anchor,
            ratio=f"{late_s / scan_s:.1f}",
            target=target,
            met=late_s <= TARGET_S if at_size else None,
        ),
        Figure(
            f"estimated/suspect report, {n:,} meters × 1 day (DuckDB)",
            f"{est_s:.2f} s ({est_rows:,} cells)",
            anchor=anchor,
            ratio=f"{est_s / scan_s:.1f}",
            target=target,
            met=est_s <= TARGET_S if at_size else None,
        ),
        Figure(f"gaps report, {n:,} meters (DuckDB)", f"{gaps_s:.2f} s ({gaps_rows:,} cells)"),
        Figure(
            f"export {n:,} meters × 1 day of 30-min values to Parquet (DuckDB)",
            f"{export_s:.2f} s ({exported:,} values, {size_mb:.1f} MB)",
            anchor=anchor,
            ratio=f"{export_s / scan_s:.1f}",
            target=f"≤ {TARGET_EXPORT_S:g} s at {TARGET_METERS:,} meters",
            met=export_s <= TARGET_EXPORT_S if at_size else None,
        ),
    ]
    console.print(figures_table(figures, "fleet-wide reports (median of 3) and export (once)"))
    record(args.json, figures)


if __name__ == "__main__":
    main()
