"""The daily VEE sweep through the store: one JST day of 30-min forward values for N meters,
with ``--days`` days of history before it, on DuckDB (closed months compacted, the current one
in arrival order, as the system keeps them). Sweeps the day before DAY first with an empty
history cache (every day of the look-back is read from the store: what a restart costs), then
times each stage of ``kenshin.mdms.sweep.run_sweep`` for DAY as every later day is swept: the
day's rows, register reads, which history days changed, the rules, and writing the outcome;
the history statistics come from the day planes kept (kenshin.mdms.history).

Target (MDMS issue): a full daily sweep of 1,000,000 meters ≤ 60 s. The default size is smaller
(``--meters 200000``); the table prints the extrapolation to 1,000,000 meters next to it.

Usage: ``python benchmarks/vee_store_sweep.py [--meters 200000] [--days 28] [--history-days 28]
[--duckdb-memory 4GB]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from kenshin.core.batches import readings_table
from kenshin.core.quality import Quality, Source
from kenshin.core.schema import METERS_SCHEMA, REGISTER_READS_SCHEMA, TIMESTAMP
from kenshin.core.timeslots import Resolution
from kenshin.mdms import sweep as sweep_module
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.history import HistoryCache
from kenshin.mdms.months import month_of
from kenshin.mdms.sweep import day_window, run_sweep

DAY = dt.date(2026, 4, 29)  # a Wednesday; history reaches back into April
US30 = Resolution.MIN30.microseconds
TWO_HOURS = 7_200_000_000  # the sweep runs two hours into the next day, as the system does


def roster(n: int) -> pa.Table:
    columns = {}
    for field in METERS_SCHEMA:
        if field.name == "meter_key":
            columns[field.name] = pa.array(np.arange(n, dtype=np.int32))
        elif field.name == "supply_point_id":
            columns[field.name] = pa.array([f"{k:022d}" for k in range(n)])
        elif pa.types.is_boolean(field.type):
            columns[field.name] = pa.array(np.zeros(n, bool))
        else:
            columns[field.name] = pa.array(np.zeros(n, np.int64)).cast(field.type)
    return pa.table(columns, schema=METERS_SCHEMA)


def load(store: DuckDBStore, n: int, days: int, rng: np.random.Generator) -> int:
    """``days`` days before DAY and DAY itself, appended day by day in slot order (as the
    head-end delivers), 3 % of DAY's values lost; returns rows stored."""
    rows = 0
    profile = rng.integers(20, 200, size=(n, 1)).astype(np.int64)
    register = rng.integers(0, 10**7, size=n).astype(np.int64)
    for offset in range(days, -1, -1):
        day = DAY - dt.timedelta(days=offset)
        start, _ = day_window(day)
        values = profile + rng.integers(0, 30, size=(n, 48))
        keep = np.ones((n, 48), bool) if offset else rng.random((n, 48)) >= 0.03
        slot_major = np.argwhere(keep.T)  # (slot, meter) pairs in delivery order
        slots, meters = slot_major[:, 0], slot_major[:, 1]
        table = readings_table(
            meters,
            1,
            30,
            start + (slots + 1) * US30,
            values[meters, slots],
            None,
            int(Quality.VALID),
            int(Source.METER_PUSH),
            0,
            0,
            start + 86_400_000_000 + 600_000_000,
        )
        cum = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(values, axis=1)], axis=1)
        regs = (register[:, None] + cum) % 10**8
        register = regs[:, -1]
        r_meters = np.repeat(np.arange(n), 49)
        r_at = np.tile(start + np.arange(49) * US30, n)
        registers = pa.Table.from_arrays(
            [
                pa.array(r_meters.astype(np.int32)),
                pa.array(np.ones(n * 49, np.uint8)),
                pa.array(r_at).cast(TIMESTAMP),
                pa.array(regs.ravel().astype(np.int32)),
                pa.array(np.full(n * 49, int(Source.METER_PUSH), np.uint8)),
                pa.array(np.full(n * 49, start + 86_400_000_000)).cast(TIMESTAMP),
            ],
            schema=REGISTER_READS_SCHEMA,
        )
        store.append(table, registers)
        rows += table.num_rows
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=28, help="days of history stored")
    parser.add_argument("--history-days", type=int, default=None, help="sweep look-back")
    parser.add_argument(
        "--duckdb-memory", default="40%", help="DuckDB memory_limit (4GB at 1 M meters)"
    )
    args = parser.parse_args()
    console = Console(width=120)
    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(Path(tmp) / "sweep.duckdb", memory_limit=args.duckdb_memory)
        store.write_meters(roster(args.meters))
        started = time.perf_counter()
        rows = load(store, args.meters, args.days, rng)
        loaded = time.perf_counter() - started
        # as the system does: only closed months are compacted (sorted by meter); the month
        # being swept is in arrival order, so reading one day of it skips the other days
        for month in store.months():
            if month < month_of(day_window(DAY)[0]):
                store.compact(month)
        compacted = time.perf_counter() - started - loaded
        stages: dict[str, float] = {}
        for name in (
            "written_days",
            "read_window_versions",
            "read_register_rows",
            "append",
            "replace_gaps",
        ):
            original = getattr(store, name)

            def timed(*a: object, _f: object = original, _n: str = name, **k: object) -> object:
                t = time.perf_counter()
                out = _f(*a, **k)  # type: ignore[operator]
                stages[_n] = stages.get(_n, 0.0) + time.perf_counter() - t
                return out

            setattr(store, name, timed)
        vee = sweep_module.run_vee

        def timed_vee(*a: object, **k: object) -> object:
            t = time.perf_counter()
            out = vee(*a, **k)  # type: ignore[arg-type]
            stages["run_vee"] = time.perf_counter() - t
            return out

        sweep_module.run_vee = timed_vee  # type: ignore[assignment]
        # the day before, with no history kept yet: every plane of the look-back is read from
        # the store (what a restart costs), then DAY as every later day is swept
        history = HistoryCache()
        t = time.perf_counter()
        run_sweep(
            store,
            DAY - dt.timedelta(days=1),
            now_us=day_window(DAY)[0] + TWO_HOURS,
            history_days=args.history_days,
            history=history,
        )
        cold = time.perf_counter() - t
        cold_reads = history.planes_read
        stages.clear()
        t = time.perf_counter()
        report = run_sweep(
            store,
            DAY,
            now_us=day_window(DAY)[1] + TWO_HOURS,
            history_days=args.history_days,
            history=history,
        )
        total = time.perf_counter() - t
        store.close()
    table = Table(
        title=f"VEE sweep through DuckDB: {args.meters:,} meters, {args.days} days stored"
    )
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_row("load (not timed in the sweep)", f"{loaded:.1f} ({rows:,} rows)")
    table.add_row("compaction (not timed)", f"{compacted:.1f}")
    table.add_row(f"first sweep, {cold_reads} history days read from the store", f"{cold:.2f}")
    table.add_row("next day's sweep:", "")
    for name, seconds in stages.items():
        table.add_row(f"  {name}", f"{seconds:.2f}")
    table.add_row(
        "  the rest: history planes, densify, compare", f"{total - sum(stages.values()):.2f}"
    )
    table.add_row("sweep total", f"{total:.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    table.add_row("peak memory of the process (load included) [GiB]", f"{peak:.1f}")
    scale = 1_000_000 / args.meters
    table.add_row(
        "extrapolated to 1,000,000 meters (linear)", f"{total * scale:.0f}  (target ≤ 60)"
    )
    console.print(table)
    console.print(report.summary())


if __name__ == "__main__":
    main()
