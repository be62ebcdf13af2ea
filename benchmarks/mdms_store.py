"""Benchmark of the MDMS stores against the MDMS issue's figures, each against its limit in one run.

1. VEE + store on DuckDB: one JST day of 30-min forward values of ``--meters`` meters (default
   200,000: ~3 % lost, a few spikes and negatives, a register read at every boundary, history
   statistics of ``--history-days`` days computed beforehand, not timed). Timed: long Arrow rows →
   numpy → densify (values and registers) → run_vee → labelled Arrow rows of every cell
   (versions.readings_table) → DuckDBStore.append into a fresh file → CHECKPOINT.
   Reference: the same unlabelled input table, ``INSERT INTO t SELECT * FROM arrow_table`` into
   a fresh table of the same columns in a fresh file → CHECKPOINT (the faster of DuckDB's default
   and ``preserve_insertion_order = false``, which the store sets). Targets: ≥ 1,000,000
   readings/s and ≥ 0.3 of the raw insert. Both rates count the *input* rows, so the ratio is
   simply raw seconds ÷ VEE-path seconds for the same rows.
2. PostgreSQL: PostgresStore.append of ``--pg-rows`` of the labelled rows of (1) vs a raw
   ``COPY … FROM STDIN (FORMAT binary)`` of a pre-built buffer of the same rows in the same order
   into an identical partitioned table with the same index; fresh schema and a CHECKPOINT before
   each run, best of ``--repeat``. Target: ≥ 0.7.
3. Point reads, warm: ``store.read(ReadingQuery(meter, ACTIVE_FORWARD, MIN30, one month))`` for
   ``--samples`` random meters (a warm-up pass over them, then the measured pass); p50/p99.
   Targets (with 100,000 meters × 1 year stored): p99 ≤ 5 ms on DuckDB, ≤ 2 ms on PostgreSQL.
   The default sizes are smaller (see the printed configuration); ``--full`` stores the real
   size (1.75 B rows per backend: hours; DuckDB ~22 GB, PostgreSQL ~175 GB of disk, so on a
   machine with less use ``--pg-meters 100000 --pg-months 2``: full-size month partitions).
   DuckDB is loaded by daily appends in the head-end's slot order and read before and after
   DuckDBStore.compact; PostgreSQL is loaded server-side (generate_series into each month table,
   index built after, ATTACH PARTITION) in the physical order daily appends give.
4. A summary: figure, measured, target, met.

Usage: ``python benchmarks/mdms_store.py [--meters 200000] [--pg-rows 2000000] [--repeat 2]
[--duck-meters 20000] [--duck-months 2] [--pg-meters 20000] [--pg-months 2] [--samples 500]
[--full] [--only vee,pg,duck-read,pg-read] [--pg postgresql://postgres@127.0.0.1:5432]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mdms_data import SLOTS, VeeDay, month_day_rows, pg_month_sql, vee_day
from kenshin.core.channels import Channel
from kenshin.core.quality import Quality
from kenshin.core.schema import REGISTER_READS_SCHEMA
from kenshin.core.timeslots import JST, Resolution
from kenshin.mdms.duckdb_schema import READINGS_DDL
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.months import (
    month_start_us,
    parse_month,
    partition_name,
    row_bounds_text,
    row_months,
)
from kenshin.mdms.pgcopy import conform, encode_copy
from kenshin.mdms.postgres_schema import READING_COLUMNS
from kenshin.mdms.postgres_store import PostgresStore
from kenshin.mdms.store import ReadingQuery
from kenshin.mdms.sweep import validate_day_batch

console = Console(width=132)
DB = "kenshin_bench_mdms"
VEE_DAY = dt.date(2026, 4, 15)  # a Wednesday
FIRST_MONTH = parse_month("2026-04")
PIECE = 1 << 20
EMPTY_REGISTERS = REGISTER_READS_SCHEMA.empty_table()

summary: list[tuple[str, str, str, str]] = []


def met(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]NO[/]"


def fresh_file(directory: Path, name: str) -> Path:
    path = directory / name
    for leftover in (path, Path(f"{path}.wal")):
        leftover.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------- 1. VEE + store on DuckDB


def vee_and_store(day: VeeDay, path: Path) -> dict[str, float]:
    """The timed path of figure 1; seconds per stage."""
    times: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[stage] = now - clock
        clock = now

    keys = day.keys
    # the production path for a day that arrives at once (kenshin.mdms.sweep): densify, rules
    # and estimation, labels gathered back onto the received rows, one row per estimate
    batch = validate_day_batch(
        day.readings,
        day.registers,
        keys,
        VEE_DAY,
        now_us=int(time.time() * 1e6),
        stats=day.stats,
    )
    result = batch.result
    labelled = batch.readings
    lap("VEE: densify, rules, estimation, labels (validate_day_batch)")
    store = DuckDBStore(path)
    lap("open fresh store")
    store.append(labelled, EMPTY_REGISTERS)
    lap("DuckDBStore.append")
    store.checkpoint()
    lap("CHECKPOINT")
    store.close()
    times["_rows"] = labelled.num_rows
    vee_and_store.labelled = labelled  # type: ignore[attr-defined]
    vee_and_store.quality = result.quality_counts  # type: ignore[attr-defined]
    return times


def stage_sum(times: dict[str, float]) -> float:
    return sum(v for k, v in times.items() if k[0] != "_")


def raw_insert(table: pa.Table, path: Path, keep_order: bool) -> float:
    started = time.perf_counter()
    con = duckdb.connect(str(path))
    if not keep_order:
        con.execute("SET preserve_insertion_order = false")
    con.execute(f"CREATE TABLE t ({READINGS_DDL})")
    con.register("arrow_table", table)
    con.execute("BEGIN")
    con.execute("INSERT INTO t SELECT * FROM arrow_table")
    con.execute("COMMIT")
    con.execute("CHECKPOINT")
    seconds = time.perf_counter() - started
    con.close()
    return seconds


def figure_vee(args: argparse.Namespace, work: Path) -> pa.Table:
    n = args.meters
    console.print(f"[bold]1. VEE + store on DuckDB[/]: generating {n:,} meters × {SLOTS} slots …")
    started = time.perf_counter()
    day = vee_day(n, VEE_DAY, history_days=args.history_days)
    console.print(f"   data ready in {time.perf_counter() - started:.1f} s (not timed)")
    rows_in = day.readings.num_rows
    vee_runs, raw_runs = [], []
    for run in range(args.repeat):
        vee_runs.append(vee_and_store(day, fresh_file(work, "vee.duckdb")))
        fresh_file(work, "vee.duckdb")
        for keep_order in (True, False):
            raw_runs.append(
                (raw_insert(day.readings, fresh_file(work, "raw.duckdb"), keep_order), keep_order)
            )
            fresh_file(work, "raw.duckdb")
        console.print(
            f"   run {run + 1}/{args.repeat}: VEE path {stage_sum(vee_runs[-1]):.2f} s, "
            f"raw {', '.join(f'{s:.2f}' for s, _ in raw_runs[-2:])} s"
        )
    best = min(vee_runs, key=stage_sum)
    vee_s = stage_sum(best)
    raw_s, raw_kept = min(raw_runs)
    rate, raw_rate = rows_in / vee_s, rows_in / raw_s
    ratio = raw_s / vee_s

    out = Table(title=f"1. VEE + store, DuckDB: {n:,} meters × 1 day, best of {args.repeat}")
    for column in ("figure", "measured", "target", "met"):
        out.add_column(column)
    out.add_row("input long rows (unlabelled, RAW)", f"{rows_in:,}", "", "")
    out.add_row(
        "  lost / spikes / negatives",
        f"{day.lost:,} / {day.spikes:,} / {day.negatives:,}",
        "",
        "",
    )
    out.add_row("register reads (not stored, VEE input)", f"{day.registers.num_rows:,}", "", "")
    out.add_row("labelled rows stored (every cell)", f"{int(best['_rows']):,}", "", "")
    quality = vee_and_store.quality  # type: ignore[attr-defined]
    out.add_row(
        "  valid / estimated / suspect / missing",
        " / ".join(
            f"{quality[q]:,}"
            for q in (Quality.VALID, Quality.ESTIMATED, Quality.SUSPECT, Quality.MISSING)
        ),
        "",
        "",
    )
    for stage, seconds in best.items():
        if stage[0] != "_":
            out.add_row(f"  {stage} \\[s]", f"{seconds:.2f}", "", "")
    out.add_row("VEE path total \\[s]", f"{vee_s:.2f}", "", "")
    out.add_row("VEE + store \\[input readings/s]", f"{rate:,.0f}", "≥ 1,000,000", met(rate >= 1e6))
    out.add_row(
        f"raw INSERT … SELECT * FROM arrow + CHECKPOINT \\[rows/s] "
        f"(preserve_insertion_order={'default' if raw_kept else 'false'})",
        f"{raw_rate:,.0f}",
        "",
        "",
    )
    for seconds, kept in raw_runs[:2]:
        out.add_row(
            f"  raw, preserve_insertion_order={'default' if kept else 'false'} \\[s] (run 1)",
            f"{seconds:.2f}",
            "",
            "",
        )
    out.add_row("VEE + store ÷ raw insert", f"{ratio:.2f}", "≥ 0.3", met(ratio >= 0.3))
    console.print(out)
    summary.append(
        (
            f"VEE + store, DuckDB ({n:,} meters × 1 day)",
            f"{rate:,.0f} readings/s",
            "≥ 1,000,000",
            met(rate >= 1e6),
        )
    )
    summary.append(("VEE + store ÷ raw DuckDB insert", f"{ratio:.2f}", "≥ 0.3", met(ratio >= 0.3)))
    return vee_and_store.labelled  # type: ignore[attr-defined]


# ---------------------------------------------------------------- 2. PostgreSQL append vs COPY


def pg_checkpoint(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def pg_append(dsn: str, table: pa.Table) -> float:
    store = PostgresStore(dsn, schema=f"bench_{uuid.uuid4().hex[:12]}")
    try:
        pg_checkpoint(dsn)
        started = time.perf_counter()
        store.append(table, EMPTY_REGISTERS)
        return time.perf_counter() - started
    finally:
        store.drop_schema()
        store.close()


def pg_raw_copy(dsn: str, table: pa.Table) -> float:
    store = PostgresStore(dsn, schema=f"bench_{uuid.uuid4().hex[:12]}")
    try:
        store.ensure_partitions(
            "readings", row_months(table.column("interval_end").cast(pa.int64()).to_numpy())
        )
        buffer = encode_copy(conform(table, READING_COLUMNS, "readings"), READING_COLUMNS)
        statement = sql.SQL("COPY {}.readings ({}) FROM STDIN (FORMAT binary)").format(
            sql.Identifier(store.schema),
            sql.SQL(", ").join(sql.Identifier(c.name) for c in READING_COLUMNS),
        )
        with psycopg.connect(dsn) as conn:
            pg_checkpoint(dsn)
            started = time.perf_counter()
            with conn.cursor() as cur, cur.copy(statement) as copy:
                for offset in range(0, len(buffer), PIECE):
                    copy.write(buffer[offset : offset + PIECE])
            conn.commit()
            return time.perf_counter() - started
    finally:
        store.drop_schema()
        store.close()


def figure_pg_append(args: argparse.Namespace, dsn: str, labelled: pa.Table | None) -> None:
    rows = args.pg_rows
    if labelled is None or labelled.num_rows < rows:
        meters = -(-rows // SLOTS)
        console.print(f"   (generating the labelled rows of {meters:,} meters for figure 2)")
        figure_args = argparse.Namespace(**{**vars(args), "meters": meters, "repeat": 1})
        with tempfile.TemporaryDirectory(prefix="kenshin-mdms-") as tmp:
            day = vee_day(meters, VEE_DAY, history_days=figure_args.history_days)
            vee_and_store(day, Path(tmp) / "vee.duckdb")
            labelled = vee_and_store.labelled  # type: ignore[attr-defined]
    table = labelled.slice(0, rows)
    nulls = table.column("value").null_count
    console.print(f"[bold]2. PostgreSQL[/]: append vs raw binary COPY of {rows:,} labelled rows …")
    append_s, raw_s = [], []
    for run in range(args.repeat):
        append_s.append(pg_append(dsn, table))
        raw_s.append(pg_raw_copy(dsn, table))
        console.print(
            f"   run {run + 1}/{args.repeat}: "
            f"append {append_s[-1]:.2f} s, raw COPY {raw_s[-1]:.2f} s"
        )
    ours, raw = rows / min(append_s), rows / min(raw_s)
    ratio = ours / raw
    out = Table(
        title=f"2. PostgreSQL: {rows:,} labelled rows (VEE output order), best of {args.repeat}"
    )
    for column in ("figure", "measured", "target", "met"):
        out.add_column(column)
    out.add_row("rows (of which value NULL: MISSING)", f"{rows:,} ({nulls:,})", "", "")
    out.add_row("PostgresStore.append \\[rows/s]", f"{ours:,.0f}", "", "")
    out.add_row("raw binary COPY, pre-built buffer \\[rows/s]", f"{raw:,.0f}", "", "")
    out.add_row("append ÷ raw COPY", f"{ratio:.2f}", "≥ 0.7", met(ratio >= 0.7))
    console.print(out)
    summary.append(
        (
            f"PostgresStore.append ÷ raw COPY ({rows:,} rows)",
            f"{ratio:.2f} ({ours / 1e3:,.0f} k vs {raw / 1e3:,.0f} k rows/s)",
            "≥ 0.7",
            met(ratio >= 0.7),
        )
    )


# ---------------------------------------------------------------- 3. point reads


def month_query(meter: int) -> ReadingQuery:
    return ReadingQuery(
        int(meter),
        Channel.ACTIVE_FORWARD,
        Resolution.MIN30,
        month_start_us(FIRST_MONTH),
        month_start_us(FIRST_MONTH + 1),
    )


EXPECTED_ROWS = 30 * SLOTS  # April 2026


def timed_reads(read: Callable[[int], int], meters: np.ndarray) -> np.ndarray:
    """Warm-up pass over ``meters``, then the measured pass: milliseconds per read."""
    for meter in meters:
        read(int(meter))
    out = np.empty(len(meters))
    for i, meter in enumerate(meters):
        started = time.perf_counter()
        rows = read(int(meter))
        out[i] = (time.perf_counter() - started) * 1e3
        if rows != EXPECTED_ROWS:
            raise SystemExit(f"meter {meter}: {rows} rows read, expected {EXPECTED_ROWS}")
    return out


def percentiles(ms: np.ndarray) -> str:
    p50, p99 = np.percentile(ms, [50, 99])
    return f"p50 {p50:.2f} / p99 {p99:.2f} / max {ms.max():.2f}"


def days_of(months: int) -> list[int]:
    """Epoch µs of every JST midnight of ``months`` months from FIRST_MONTH."""
    first, last = month_start_us(FIRST_MONTH), month_start_us(FIRST_MONTH + months)
    return list(range(first, last, 86_400_000_000))


def figure_duck_reads(args: argparse.Namespace, work: Path) -> None:
    n, months = args.duck_meters, args.duck_months
    total = n * SLOTS * len(days_of(months))
    config = f"{n:,} meters × {months} months = {total / 1e6:,.1f} M rows stored"
    console.print(f"[bold]3a. DuckDB point reads[/] ({config}) …")
    path = fresh_file(work, "points.duckdb")
    store = DuckDBStore(path)
    rng = np.random.default_rng(11)
    started = time.perf_counter()
    append_s = 0.0
    for day_us in days_of(months):
        table = month_day_rows(n, day_us, rng)
        t = time.perf_counter()
        store.append(table, EMPTY_REGISTERS)
        append_s += time.perf_counter() - t
    store.checkpoint()
    load_s = time.perf_counter() - started
    console.print(f"   loaded in {load_s:.0f} s ({total / append_s / 1e6:.1f} M rows/s in append)")
    meters = rng.choice(n, size=min(args.samples, n), replace=False)

    def read(meter: int) -> int:
        return int(store.read(month_query(meter)).num_rows)

    src = store._source("readings", [FIRST_MONTH, FIRST_MONTH + 1])

    def plain(meter: int) -> int:  # the same rows without the versioning rule: the floor
        where = store._cell_where(month_query(meter))
        return int(store._arrow(f"SELECT * FROM {src} WHERE {where}").num_rows)

    before_meters = meters[: args.before_samples]
    before = timed_reads(read, before_meters)
    console.print(f"   before compaction: {percentiles(before)} ms")
    compact_s = []
    for month in store.months():
        t = time.perf_counter()
        store.compact(month)
        compact_s.append(time.perf_counter() - t)
    console.print(f"   compacted {len(compact_s)} months in {sum(compact_s):.0f} s")
    after = timed_reads(read, meters)
    floor = timed_reads(plain, meters)
    store.close()
    size_gb = path.stat().st_size / 1e9
    fresh_file(work, "points.duckdb")

    p99 = float(np.percentile(after, 99))
    out = Table(title=f"3a. DuckDB point reads: one meter × one month (1,440 values), {config}")
    for column in ("figure", "measured", "target", "met"):
        out.add_column(column)
    out.add_row("load: daily appends, slot order \\[s]", f"{load_s:.0f}", "", "")
    out.add_row(
        "compaction \\[s] (rows/s)",
        f"{sum(compact_s):.0f} ({total / sum(compact_s) / 1e6:.2f} M rows/s)",
        "",
        "",
    )
    out.add_row("file size \\[GB]", f"{size_gb:.2f}", "", "")
    out.add_row(
        f"read before compaction, warm, {len(before_meters)} meters \\[ms]",
        percentiles(before),
        "",
        "",
    )
    out.add_row(
        f"read after compaction, warm, {len(meters)} meters \\[ms]",
        percentiles(after),
        "p99 ≤ 5",
        met(p99 <= 5),
    )
    out.add_row("  same rows, plain SELECT (no versioning rule) \\[ms]", percentiles(floor), "", "")
    console.print(out)
    summary.append(
        (f"DuckDB point read p99, compacted ({config})", f"{p99:.2f} ms", "≤ 5 ms", met(p99 <= 5))
    )
    b99 = float(np.percentile(before, 99))
    summary.append(
        (f"  same, before compaction ({len(before_meters)} meters)", f"{b99:.2f} ms", "", "")
    )


def figure_pg_reads(args: argparse.Namespace, dsn: str) -> None:
    n, months = args.pg_meters, args.pg_months
    total = n * SLOTS * len(days_of(months))
    config = f"{n:,} meters × {months} months = {total / 1e6:,.1f} M rows stored"
    console.print(f"[bold]3b. PostgreSQL point reads[/] ({config}) …")
    schema = "bench_points"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    store = PostgresStore(dsn, schema=schema)
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for month in range(FIRST_MONTH, FIRST_MONTH + months):
            name = f"{schema}.{partition_name('readings', month)}"
            low, high = row_bounds_text(month)
            days = (month_start_us(month + 1) - month_start_us(month)) // 86_400_000_000
            midnight = dt.datetime.fromtimestamp(month_start_us(month) / 1e6, JST).isoformat()
            conn.execute(f"CREATE TABLE {name} (LIKE {schema}.readings INCLUDING DEFAULTS)")
            conn.execute(pg_month_sql(name, n, midnight, days))
            conn.execute(f"CREATE INDEX ON {name} (meter_key, channel, resolution, interval_end)")
            conn.execute(
                f"ALTER TABLE {schema}.readings ATTACH PARTITION {name} "
                f"FOR VALUES FROM ('{low}') TO ('{high}')"
            )
            conn.execute(f"VACUUM ANALYZE {name}")
            console.print(f"   {name} loaded ({time.perf_counter() - started:.0f} s)")
        size = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = %s "
            "AND c.relkind = 'r'",
            [schema],
        ).fetchone()
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(12)
    meters = rng.choice(n, size=min(args.samples, n), replace=False)

    def read(meter: int) -> int:
        return int(store.read(month_query(meter)).num_rows)

    def plain(meter: int) -> int:
        where, params = store._cell_where(month_query(meter))
        rows = store._fetch(
            sql.SQL("SELECT * FROM {}.readings WHERE " + where).format(sql.Identifier(schema)),
            params,
            "plain read",
        )
        return len(rows)

    ms = timed_reads(read, meters)
    floor = timed_reads(plain, meters)
    store.drop_schema()
    store.close()
    p99 = float(np.percentile(ms, 99))
    out = Table(title=f"3b. PostgreSQL point reads: one meter × one month (1,440 values), {config}")
    for column in ("figure", "measured", "target", "met"):
        out.add_column(column)
    out.add_row(
        "load: server-side generate_series, index after, ATTACH \\[s]", f"{load_s:.0f}", "", ""
    )
    out.add_row("tables + indexes \\[GB]", f"{float(size[0] or 0) / 1e9:.2f}", "", "")
    out.add_row(
        f"PostgresStore.read, warm, {len(meters)} meters \\[ms]",
        percentiles(ms),
        "p99 ≤ 2",
        met(p99 <= 2),
    )
    out.add_row(
        "  same rows, plain SELECT * via the store's connection \\[ms]", percentiles(floor), "", ""
    )
    console.print(out)
    summary.append(
        (f"PostgreSQL point read p99 ({config})", f"{p99:.2f} ms", "≤ 2 ms", met(p99 <= 2))
    )


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=200_000, help="figure 1 meters (× 48 slots)")
    parser.add_argument("--history-days", type=int, default=7)
    parser.add_argument("--pg-rows", type=int, default=2_000_000, help="figure 2 rows")
    parser.add_argument("--repeat", type=int, default=2, help="runs of figures 1 and 2 (best)")
    parser.add_argument("--duck-meters", type=int, default=20_000)
    parser.add_argument("--duck-months", type=int, default=2)
    parser.add_argument("--pg-meters", type=int, default=20_000)
    parser.add_argument("--pg-months", type=int, default=2)
    parser.add_argument("--samples", type=int, default=500, help="meters read per point-read test")
    parser.add_argument(
        "--before-samples", type=int, default=100, help="meters read before compaction (slow)"
    )
    parser.add_argument(
        "--full", action="store_true", help="point reads at 100,000 meters × 12 months (hours)"
    )
    parser.add_argument("--only", default="vee,pg,duck-read,pg-read")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--workdir", default=None, help="where DuckDB files go (default: /tmp)")
    args = parser.parse_args()
    if args.full:
        args.duck_meters = args.pg_meters = 100_000
        args.duck_months = args.pg_months = 12
    if min(args.duck_months, args.pg_months) < 2:
        parser.error("point reads need ≥ 2 months (a month's read touches the next month's table)")
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="kenshin-mdms-", dir=args.workdir))
    need_pg = bool(only & {"pg", "pg-read"})
    dsn = f"{args.pg}/{DB}"
    if need_pg:
        with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DB}")
    started = time.perf_counter()
    console.print(
        f"MDMS store benchmark: {os.cpu_count()} cores, DuckDB {duckdb.__version__}, "
        f"files in {work}"
    )
    try:
        labelled = figure_vee(args, work) if "vee" in only else None
        if "pg" in only:
            figure_pg_append(args, dsn, labelled)
        labelled = None
        if "duck-read" in only:
            figure_duck_reads(args, work)
        if "pg-read" in only:
            figure_pg_reads(args, dsn)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if need_pg:
            with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")

    out = Table(title=f"MDMS store figures ({time.perf_counter() - started:.0f} s)")
    for column in ("figure", "measured", "target", "met?"):
        out.add_column(column)
    for row in summary:
        out.add_row(*row)
    console.print(out)
    if not args.full and only & {"duck-read", "pg-read"}:
        console.print(
            "[yellow]Point reads ran at the reduced sizes above, not 100,000 meters × 1 year; "
            "--full for the real size.[/]"
        )


if __name__ == "__main__":
    main()
