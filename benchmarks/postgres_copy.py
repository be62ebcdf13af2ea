"""Benchmark of the PostgreSQL store's append against a raw binary COPY of the same rows.

Figures (printed as a table):
1. ``PostgresStore.append`` of 2 M readings (one Arrow table → partitions on demand → binary COPY
   built with numpy → commit): rows/s.
2. Raw reference: ``COPY readings FROM STDIN (FORMAT binary)`` of a pre-built buffer of the same
   rows (written in 1 MB pieces, the fastest plain COPY measured), into the same kind of table
   (same columns, partitions already created, same index) → commit: rows/s. Measured twice: rows
   in the head-end's order (slot by slot) and rows pre-sorted in index order, as ``append`` sends
   them (index inserts are cheaper in that order).
3. append ÷ the faster raw COPY (the MDMS issue wants ≥ 0.7).
4. The client's share: sorting and encoding the table to PGCOPY with numpy, rows/s.

Rows look like the head-end's: 30-min values of ``--meters`` meters for consecutive slots, meters
in key order within a slot. Each run gets a fresh schema and starts after a CHECKPOINT, and the
best of ``--repeat`` runs counts.

Usage: ``python benchmarks/postgres_copy.py [--dsn postgresql://postgres@127.0.0.1:5432/test]
[--rows 2000000] [--meters 100000] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql
from rich.console import Console
from rich.table import Table

from kenshin.core.quality import Source
from kenshin.core.schema import READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.mdms.months import row_months
from kenshin.mdms.pgcopy import cluster, conform, copy_chunks, encode_copy
from kenshin.mdms.postgres_schema import READING_COLUMNS
from kenshin.mdms.postgres_store import PostgresStore

console = Console()
SLOT_US = 30 * 60 * 1_000_000
PIECE = 1 << 20
INDEX = ("meter_key", "channel", "resolution", "interval_end")
START_US = 1_775_055_600 * 1_000_000  # 2026-04-02 00:00 JST


def readings(n_rows: int, n_meters: int) -> pa.Table:
    rng = np.random.default_rng(1)
    index = np.arange(n_rows, dtype=np.int64)
    ends = START_US + (index // n_meters + 1) * SLOT_US
    ts = READINGS_SCHEMA.field("interval_end").type
    return pa.table(
        {
            "meter_key": pa.array((index % n_meters).astype(np.int32)),
            "channel": pa.array(np.ones(n_rows, np.uint8)),
            "resolution": pa.array(np.full(n_rows, 30, np.uint8)),
            "interval_end": pa.array(ends).cast(ts),
            "value": pa.array(rng.integers(0, 2_000, n_rows, dtype=np.int32)),
            "quality": pa.array(np.zeros(n_rows, np.uint8)),
            "source": pa.array(np.full(n_rows, int(Source.METER_PUSH), np.uint8)),
            "method": pa.array(np.zeros(n_rows, np.uint8)),
            "tx_time": pa.array(ends + 60_000_000).cast(ts),
        },
        schema=READINGS_SCHEMA,
    )


def checkpoint(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def run_append(dsn: str, table: pa.Table) -> float:
    """Seconds for one ``append`` into a fresh store."""
    store = PostgresStore(dsn, schema=f"bench_{uuid.uuid4().hex[:12]}")
    try:
        checkpoint(dsn)
        started = time.perf_counter()
        store.append(table, REGISTER_READS_SCHEMA.empty_table())
        return time.perf_counter() - started
    finally:
        store.drop_schema()
        store.close()


def run_raw(dsn: str, table: pa.Table) -> float:
    """Seconds for a plain binary COPY of a pre-built buffer into the same kind of table."""
    store = PostgresStore(dsn, schema=f"bench_{uuid.uuid4().hex[:12]}")
    try:
        months = row_months(table.column("interval_end").cast(pa.int64()).to_numpy())
        store.ensure_partitions("readings", months)
        buffer = memoryview(
            bytes(encode_copy(conform(table, READING_COLUMNS, "readings"), READING_COLUMNS))
        )
        statement = sql.SQL("COPY {}.readings ({}) FROM STDIN (FORMAT binary)").format(
            sql.Identifier(store.schema),
            sql.SQL(", ").join(sql.Identifier(c.name) for c in READING_COLUMNS),
        )
        with psycopg.connect(dsn) as conn:
            checkpoint(dsn)
            started = time.perf_counter()
            with conn.cursor() as cur, cur.copy(statement) as copy:
                for start in range(0, len(buffer), PIECE):
                    copy.write(buffer[start : start + PIECE])
            conn.commit()
            return time.perf_counter() - started
    finally:
        store.drop_schema()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    table = readings(args.rows, args.meters)
    presorted = cluster(table, INDEX)
    started = time.perf_counter()
    for _ in copy_chunks(
        cluster(conform(table, READING_COLUMNS, "readings"), INDEX), READING_COLUMNS
    ):
        pass
    client_s = time.perf_counter() - started
    append_s, raw_s, sorted_s = [], [], []
    for run in range(args.repeat):
        console.print(f"run {run + 1}/{args.repeat}: append…")
        append_s.append(run_append(args.dsn, table))
        console.print(f"run {run + 1}/{args.repeat}: raw COPY in slot order…")
        raw_s.append(run_raw(args.dsn, table))
        console.print(f"run {run + 1}/{args.repeat}: raw COPY in index order…")
        sorted_s.append(run_raw(args.dsn, presorted))
    ours = args.rows / min(append_s)
    raw, raw_sorted = args.rows / min(raw_s), args.rows / min(sorted_s)
    ratio = ours / max(raw, raw_sorted)

    out = Table(title=f"PostgreSQL append benchmark ({os.cpu_count()} cores, {args.rows:,} rows)")
    for column in ("figure", "measured", "target", "met"):
        out.add_column(column)
    out.add_row("PostgresStore.append", f"{ours / 1e3:.0f} k rows/s", "", "")
    out.add_row("raw binary COPY, slot order", f"{raw / 1e3:.0f} k rows/s", "", "")
    out.add_row("raw binary COPY, index order", f"{raw_sorted / 1e3:.0f} k rows/s", "", "")
    out.add_row(
        "append ÷ faster raw COPY", f"{ratio:.2f}", "≥ 0.7", "yes" if ratio >= 0.7 else "NO"
    )
    out.add_row(
        "  client side: sort + encode", f"{args.rows / client_s / 1e6:.1f} M rows/s", "", ""
    )
    console.print(out)


if __name__ == "__main__":
    main()
