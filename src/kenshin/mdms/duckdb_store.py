"""The embedded store: one DuckDB file, appended to from Arrow.

Measured on 2-core machines (ARCHITECTURE "Storage"): appends from Arrow run at millions of rows a
second, while a PRIMARY KEY makes loading several times slower, so the tables have no key: a
version is identified by (meter, channel, resolution, interval_end, tx_time), and what a read
returns is decided by :mod:`kenshin.mdms.versions`.

Readings and register reads live in one table per JST month (``readings_2026_04``), like the
PostgreSQL partitions: a closed month is compacted (rewritten sorted by meter, repeats dropped)
for fast point reads, archived to Parquet and dropped whole for retention (SPEC S1). DuckDB
connections are not thread-safe, so each thread works on its own cursor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kenshin.core.batches import CounterState, timestamps
from kenshin.core.channels import Channel
from kenshin.core.schema import (
    EVENTS_SCHEMA,
    METERS_SCHEMA,
    READINGS_SCHEMA,
    REGISTER_READS_SCHEMA,
)
from kenshin.core.timeslots import Resolution
from kenshin.errors import StoreError
from kenshin.mdms import versions
from kenshin.mdms.duckdb_schema import (
    DDL,
    KEEP_FIRST,
    METER_COLUMNS,
    READING_COLUMNS,
    READINGS_DDL,
    REGISTER_COLUMNS,
    REGISTERS_DDL,
    SORT,
    TIME_COLUMN,
    io_error,
)
from kenshin.mdms.duckdb_tables import DuckDBTables
from kenshin.mdms.months import (
    LAYOUT,
    partition_name,
    row_bounds_us,
    row_month_index,
    row_months_between,
)
from kenshin.mdms.store import MeterRange, ReadingQuery, meter_keys_sql, meter_range_sql
from kenshin.mdms.storebase import StoreBase
from kenshin.secrecy import private_umask

log = logging.getLogger(__name__)


class DuckDBStore(DuckDBTables, StoreBase):
    """Readings in a DuckDB file (or ``":memory:"``)."""

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        read_only: bool = False,
        threads: int | None = None,
        archive: Any = None,
        memory_limit: str = "40%",
        checkpoint_threshold: str = "1GB",
    ) -> None:
        self.path = str(path)
        self.archive = archive  # kenshin.mdms.archive.ParquetArchive, read for archived months
        # X3: DuckDB creates the file, and its .wal at the first tables, with the process umask,
        # so a new store is created under a private one (0600). DuckDB deletes the .wal at each
        # checkpoint and makes it again later under the process umask: the `kenshin` command
        # runs with 0o077 throughout (kenshin.cli.root.main).
        new_file = self.path != ":memory:" and not os.path.exists(self.path)
        private = private_umask if new_file else contextlib.nullcontext
        try:
            with private():
                self._con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.Error as exc:
            refused = io_error("opening it", self.path, exc)
            raise refused or StoreError(f"cannot open DuckDB store {self.path}: {exc}") from exc
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        # DuckDB's own default is 80 % of RAM; the sweep's arrays live in the same process
        # (about 5 GB at 1 M meters), so its cache gets less and it spills to disk sooner
        self._setting("memory_limit", memory_limit, new_file)
        # DuckDB folds its WAL into the file when it reaches 16 MB by default: at a billion
        # rows each fold rewrites the table's tail, and the nightly sweep's appends at
        # 1,000,000 meters cost 15.7 s for 4.6 M estimates (3.4 µs a row) against 1.9 s with
        # 1 GB (benchmarks/nightly_sweep.py --checkpoint-threshold). Durability is the WAL's
        # either way; a restart replays more of it.
        self._setting("checkpoint_threshold", checkpoint_threshold, new_file)
        # arrival order carries no meaning for long rows; dropping it speeds up appends
        self._con.execute("SET preserve_insertion_order = false")
        self._local = threading.local()
        self._write_lock = threading.Lock()
        if not read_only:
            with private():
                self._con.execute(DDL)
            self._migrate_single_tables()
        self._months: dict[str, set[int]] = {"readings": set(), "register_reads": set()}
        self._refresh_months()
        if not read_only:
            self._file_midnight_register_reads()
            self._refresh_views()

    def _setting(self, name: str, value: str, new_file: bool) -> None:
        """SET ``name``; a value DuckDB refuses is refused with its name, and a store file this
        call created is removed (bad input creates nothing)."""
        try:
            self._con.execute(f"SET {name} = ?", [value])
        except duckdb.Error as exc:
            self._con.close()
            if new_file:
                for leftover in (self.path, f"{self.path}.wal"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(leftover)
            raise StoreError(f"{name} {value!r}: {exc}") from exc

    @property
    def target(self) -> str:
        return f"DuckDB {self.path}"

    # ---- plumbing

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
        return cur

    @contextmanager
    def _transaction(self, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction on this thread's cursor; any failure rolls it back whole."""
        cur = self._cursor()
        with self._write_lock:
            cur.execute("BEGIN")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                # a failed COMMIT has ended the transaction already: the ROLLBACK's own error
                # ("no transaction is active") must not replace the cause
                with contextlib.suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
                with contextlib.suppress(duckdb.Error):
                    self._refresh_months()  # month tables created in the transaction are gone
                if isinstance(exc, duckdb.Error | KeyError | pa.ArrowInvalid):
                    refused = io_error(what, self.path, exc)
                    raise refused or StoreError(f"{what} in {self.path} failed: {exc}") from exc
                raise

    @staticmethod
    def _insert(
        cur: duckdb.DuckDBPyConnection,
        target: str,
        table: pa.Table,
        columns: str = "*",
        *,
        replace: bool = False,
        ignore: bool = False,
    ) -> None:
        """INSERT (OR REPLACE, OR IGNORE) the rows of an Arrow table, ``columns`` of them, into
        ``target``."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE" if ignore else "INSERT"
        cur.register("incoming_rows", table)
        try:
            cur.execute(f"{verb} INTO {target} SELECT {columns} FROM incoming_rows")
        except BaseException:
            # in the aborted transaction this raises "Current transaction is aborted", which
            # would hide the INSERT's own error (a full disk, say)
            with contextlib.suppress(duckdb.Error):
                cur.unregister("incoming_rows")
            raise
        cur.unregister("incoming_rows")

    def _arrow(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pa.Table:
        try:
            return self._cursor().sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(f"query on {self.path} failed: {exc}") from exc

    @contextmanager
    def _registered(self, name: str, table: pa.Table | None) -> Iterator[None]:
        """``table`` readable as ``name`` on this thread's cursor for the block (nothing
        when None)."""
        if table is None:
            yield
            return
        cur = self._cursor()
        cur.register(name, table)
        try:
            yield
        finally:
            cur.unregister(name)

    def _has_table(self, name: str) -> bool:
        found = (
            self._cursor()
            .execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name])
            .fetchall()
        )
        return bool(found and found[0][0])

    def _refresh_months(self) -> None:
        names = self._cursor().execute("SELECT table_name FROM duckdb_tables()").fetchall()
        for kind in self._months:
            self._months[kind] = set()
            prefix = f"{kind}_"
            for (name,) in names:
                rest = str(name)[len(prefix) :]
                if str(name).startswith(prefix) and len(rest) == 7 and rest[4] == "_":
                    year, month = int(rest[:4]), int(rest[5:])
                    self._months[kind].add((year - 1970) * 12 + month - 1)

    def _migrate_single_tables(self) -> None:
        """Stores written before month tables kept one ``readings`` table: split it once."""
        tables = {
            r[0] for r in self._con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        for kind, ddl in (("readings", READINGS_DDL), ("register_reads", REGISTERS_DDL)):
            if kind not in tables:
                continue
            columns = [r[0] for r in self._con.execute(f"DESCRIBE {kind}").fetchall()]
            select = READING_COLUMNS if kind == "readings" else REGISTER_COLUMNS
            if kind == "readings" and "failed_rule" not in columns:
                select = select.replace("failed_rule", "0::USMALLINT AS failed_rule")
            time = TIME_COLUMN[kind]
            rows = self._con.execute(
                f"SELECT DISTINCT epoch_us({time}) FROM {kind} WHERE {time} IS NOT NULL"
            ).fetchall()
            months = sorted(
                {int(m) for m in row_month_index(np.array([r[0] for r in rows], np.int64))}
            )
            for month in months:
                name = partition_name(kind, month)
                low, high = row_bounds_us(month)
                self._con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({ddl})")
                self._con.execute(
                    f"INSERT INTO {name} SELECT {select} FROM {kind} "
                    f"WHERE epoch_us({time}) >= {low} AND epoch_us({time}) < {high}"
                )
            self._con.execute(f"DROP TABLE {kind}")
            log.info("split %s of %s into %d month tables", kind, self.path, len(months))

    def _file_midnight_register_reads(self) -> None:
        """Stores of layout 1 filed the register read at 00:00 on the 1st under the month it
        starts; one month convention (``kenshin.mdms.months``) files it under the month it
        closes. Moved once; the layout is recorded in ``meta``."""
        if self.get_meta("layout") == LAYOUT:
            return
        with self._transaction("moving midnight register reads to their month") as cur:
            for month in sorted(self._months["register_reads"]):
                start = row_bounds_us(month)[0] - 1  # the midnight that starts the month
                name = partition_name("register_reads", month)
                moved = cur.execute(
                    f"SELECT count(*) FROM {name} WHERE read_at = make_timestamptz({start})"
                ).fetchall()[0][0]
                if not moved:
                    continue
                before = self._ensure_month("register_reads", month - 1)
                cur.execute(
                    f"INSERT INTO {before} SELECT * FROM {name} "
                    f"WHERE read_at = make_timestamptz({start})"
                )
                cur.execute(f"DELETE FROM {name} WHERE read_at = make_timestamptz({start})")
                log.info("moved %d register reads of %s to %s", moved, name, before)
            cur.execute("DELETE FROM meta WHERE key = 'layout'")
            cur.execute("INSERT INTO meta VALUES ('layout', ?)", [LAYOUT])

    def _refresh_views(self) -> None:
        """Views ``readings`` and ``register_reads`` over every month table: for ad-hoc SQL
        (the store itself reads the month tables it needs)."""
        for kind, ddl in (("readings", READINGS_DDL), ("register_reads", REGISTERS_DDL)):
            source = self._source(kind, self.months(kind))
            if source is None:  # an empty relation with the right columns
                columns = ", ".join(
                    f"NULL::{part.split(' ', 1)[1]} AS {part.split(' ', 1)[0]}"
                    for part in (p.strip() for p in ddl.split(","))
                )
                source = f"(SELECT {columns} WHERE false)"
            self._cursor().execute(f"CREATE OR REPLACE VIEW {kind} AS SELECT * FROM {source}")

    def months(self, kind: str = "readings") -> list[int]:
        """The JST months held in the hot store, ascending."""
        return sorted(self._months[kind])

    def _ensure_month(self, kind: str, month: int) -> str:
        name = partition_name(kind, month)
        if month not in self._months[kind]:
            ddl = READINGS_DDL if kind == "readings" else REGISTERS_DDL
            self._cursor().execute(f"CREATE TABLE IF NOT EXISTS {name} ({ddl})")
            self._months[kind].add(month)
            self._refresh_views()
        return name

    def _source(self, kind: str, months: list[int]) -> str | None:
        held = [partition_name(kind, m) for m in months if m in self._months[kind]]
        if not held:
            return None
        return "(" + " UNION ALL ".join(f"SELECT * FROM {t}" for t in held) + ")"

    # ---- writes

    def write_meters(self, meters: pa.Table) -> None:
        with self._transaction("writing meters") as cur:
            cur.execute("DELETE FROM meters")
            self._insert(cur, "meters", meters, METER_COLUMNS)

    def append(
        self,
        readings: pa.Table,
        registers: pa.Table,
        counters: CounterState | None = None,
        events: pa.Table | None = None,
    ) -> None:
        """Append values, and the head-end's replay windows that let them in, atomically."""
        with self._transaction("append") as cur:
            if events is not None and events.num_rows:
                self._insert(cur, "meter_events", events.cast(EVENTS_SCHEMA), ignore=True)
            if counters is not None and len(counters[0]):
                keys, last, bitmap = counters
                windows = pa.table(
                    {"meter_key": keys.astype(np.int32), "last": last, "bitmap": bitmap}
                )
                self._insert(cur, "frame_counters", windows, replace=True)
            self._insert_by_month(cur, "readings", readings, READING_COLUMNS)
            self._insert_by_month(cur, "register_reads", registers, REGISTER_COLUMNS)

    def _insert_by_month(
        self, cur: duckdb.DuckDBPyConnection, kind: str, table: pa.Table, columns: str
    ) -> None:
        if not table.num_rows:
            return
        time = TIME_COLUMN[kind]
        if table.column(time).null_count:
            raise StoreError(f"{kind} with no {time} cannot be stored")
        column = table.column(time).cast(pa.int64())
        bounds = pc.min_max(column)  # usually one month: no per-row month computed
        low, high = row_month_index(np.array([bounds["min"].as_py(), bounds["max"].as_py()]))
        if low == high:
            parts = [(int(low), table)]
        else:
            index = row_month_index(column.to_numpy())
            months = [int(m) for m in np.unique(index)]
            parts = [(m, table.filter(pa.array(index == m))) for m in months]
        for month, part in parts:
            self._insert(cur, self._ensure_month(kind, month), part, columns)

    def record_edits(self, readings: pa.Table, edits: pa.Table) -> None:
        """Append manual-edit versions and their audit rows in one transaction."""
        with self._transaction("recording edits") as cur:
            self._insert_by_month(cur, "readings", readings, READING_COLUMNS)
            self._insert(cur, "edits", versions.conform_to(edits, versions.EDITS_SCHEMA))

    def load_counters(self) -> CounterState:
        """The persisted replay windows: (meter keys, last, bitmap)."""
        table = self._arrow("SELECT meter_key, last, bitmap FROM frame_counters")
        return (
            table.column("meter_key").to_numpy().astype(np.int64),
            table.column("last").to_numpy().astype(np.int64),
            table.column("bitmap").to_numpy().astype(np.uint64),
        )

    # ---- reads

    def read_meters(self) -> pa.Table:
        return self._arrow(f"SELECT {METER_COLUMNS} FROM meters ORDER BY meter_key").cast(
            METERS_SCHEMA
        )

    def meter_count(self) -> int:
        # fetchall: an unfetched result would block the thread's cursor (DuckDB ≥ 2)
        rows = self._cursor().execute("SELECT count(*) FROM meters").fetchall()
        return int(rows[0][0]) if rows else 0

    def list_meters(self, offset: int, limit: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._arrow(
            f"SELECT {METER_COLUMNS} FROM meters ORDER BY meter_key LIMIT ? OFFSET ?",
            [limit, offset],
        ).to_pylist()
        return rows

    def find_meter(self, supply_point_id: str) -> dict[str, Any] | None:
        rows = self._arrow(
            f"SELECT {METER_COLUMNS} FROM meters WHERE supply_point_id = ?", [supply_point_id]
        ).to_pylist()
        return rows[0] if rows else None

    def _cell_where(self, query: ReadingQuery) -> str:
        return versions.duckdb_cell_where(query)

    def _hot_versions(self, query: ReadingQuery) -> pa.Table:
        """One plain scan of the month table(s), pruned by zone maps (the reading rule runs in
        numpy: two window passes in SQL cost several times more)."""
        source = self._source("readings", row_months_between(query.start_us, query.end_us))
        if source is None:
            return READINGS_SCHEMA.empty_table()
        table = self._arrow(
            f"SELECT {READING_COLUMNS} FROM {source} WHERE {self._cell_where(query)}"
        )
        return versions.conform_to(table, READINGS_SCHEMA)

    def read_window(
        self,
        channel: Channel,
        resolution: Resolution,
        start_us: int,
        end_us: int,
        as_of_us: int | None = None,
    ) -> pa.Table:
        """Current versions of every meter's cells with interval ends in ``(start, end]``
        (``versions.WINDOW_SCHEMA``): what a VEE sweep reads."""
        months = row_months_between(start_us, end_us)
        source = self._source("readings", months)
        if source is None:
            return versions.empty(versions.WINDOW_SCHEMA)
        where = (
            f"channel = {int(channel)} AND resolution = {int(resolution)} "
            f"AND interval_end > make_timestamptz({int(start_us)}) "
            f"AND interval_end <= make_timestamptz({int(end_us)})"
        )
        if as_of_us is not None:
            where += f" AND tx_time <= make_timestamptz({int(as_of_us)})"
        table = self._arrow(versions.current_sql(source, where, "meter_key, interval_end"))
        return versions.conform_to(table, versions.WINDOW_SCHEMA)

    def _hot_window_versions(
        self,
        channel: Channel,
        resolution: Resolution,
        start_us: int,
        end_us: int,
        meters: MeterRange | None = None,
        keys: npt.NDArray[np.int32] | None = None,
    ) -> pa.Table:
        """Every version row of every meter's cells in ``(start, end]``, unordered
        (``versions.VERSION_ROWS_SCHEMA``): a plain scan, for callers that apply the reading
        rule themselves (``versions.current_of``) where most cells hold one row; ``keys``
        (sorted) are a registered Arrow column the scan is semi-joined with."""
        source = self._source("readings", row_months_between(start_us, end_us))
        if source is None:
            return versions.empty(versions.VERSION_ROWS_SCHEMA)
        columns = ", ".join(versions.VERSION_ROWS_SCHEMA.names)
        wanted = None if keys is None else pa.table({"meter_key": pa.array(keys, pa.int32())})
        with self._registered("wanted_keys", wanted):
            table = self._arrow(
                f"SELECT {columns} FROM {source} "
                f"WHERE channel = {int(channel)} AND resolution = {int(resolution)} "
                f"AND interval_end > make_timestamptz({int(start_us)}) "
                f"AND interval_end <= make_timestamptz({int(end_us)})"
                + meter_range_sql(meters)
                + meter_keys_sql(keys)
            )
        return versions.conform_to(table, versions.VERSION_ROWS_SCHEMA)

    def read_cell_versions(
        self,
        channel: Channel,
        resolution: Resolution,
        meter_keys: npt.NDArray[np.int32],
        interval_ends_us: npt.NDArray[np.int64],
    ) -> pa.Table:
        """Every version row of exactly the cells named (``meter_keys[i]``,
        ``interval_ends_us[i]``), unordered (``versions.VERSION_ROWS_SCHEMA``): a join with
        the named cells, the window around them pruning the scan."""
        if not len(meter_keys):
            return versions.empty(versions.VERSION_ROWS_SCHEMA)
        first, last = int(interval_ends_us.min()), int(interval_ends_us.max())
        source = self._source("readings", row_months_between(first - 1, last))
        if source is None:
            return versions.empty(versions.VERSION_ROWS_SCHEMA)
        cells = pa.table(
            {
                "meter_key": pa.array(meter_keys, pa.int32()),
                "interval_end": timestamps(interval_ends_us),
            }
        )
        columns = ", ".join(f"r.{name}" for name in versions.VERSION_ROWS_SCHEMA.names)
        with self._registered("named_cells", cells):
            table = self._arrow(
                f"SELECT {columns} FROM {source} r "
                "JOIN named_cells c "
                "ON r.meter_key = c.meter_key AND r.interval_end = c.interval_end "
                f"WHERE r.channel = {int(channel)} AND r.resolution = {int(resolution)} "
                f"AND r.interval_end >= make_timestamptz({first}) "
                f"AND r.interval_end <= make_timestamptz({last})"
                + meter_range_sql((int(meter_keys.min()), int(meter_keys.max())), "r.")
            )
        return versions.conform_to(table, versions.VERSION_ROWS_SCHEMA)

    def written_days(
        self, channel: Channel, resolution: Resolution, start_us: int, end_us: int, since_us: int
    ) -> dict[int, int]:
        """Days of ``(start, end]`` (numbered from ``start``) that received rows after
        ``since``, with the newest transaction time of each (``versions.written_days_sql``)."""
        source = self._source("readings", row_months_between(start_us, end_us))
        if source is None:
            return {}
        statement = versions.written_days_sql(
            source,
            "epoch_us({0})",
            "//",
            channel=int(channel),
            resolution_min=int(resolution),
            start_us=start_us,
            start_literal=f"make_timestamptz({int(start_us)})",
            end_literal=f"make_timestamptz({int(end_us)})",
            since_literal=f"make_timestamptz({int(since_us)})",
        )
        return {int(d): int(tx) for d, tx in self._cursor().sql(statement).fetchall()}

    def _register_reads(
        self, channel: Channel, start_us: int, end_us: int, schema: pa.Schema, qualify: str = ""
    ) -> pa.Table:
        """The ``schema`` columns of the register reads at instants in ``[start, end]``."""
        months = row_months_between(start_us - 1, end_us)
        source = self._source("register_reads", months)
        if source is None:
            return versions.empty(schema)
        table = self._arrow(
            f"SELECT {', '.join(schema.names)} FROM {source} "
            f"WHERE channel = {int(channel)} AND read_at >= make_timestamptz({int(start_us)}) "
            f"AND read_at <= make_timestamptz({int(end_us)}) {qualify}"
        )
        return versions.conform_to(table, schema)

    def _hot_register_rows(
        self, channel: Channel, start_us: int, end_us: int, meters: MeterRange | None
    ) -> pa.Table:
        return self._register_reads(
            channel, start_us, end_us, versions.REGISTER_ROWS_SCHEMA, meter_range_sql(meters)
        )

    def read_register_window(self, channel: Channel, start_us: int, end_us: int) -> pa.Table:
        """The latest register read of every meter at each instant in ``[start, end]``."""
        return self._register_reads(
            channel,
            start_us,
            end_us,
            versions.REGISTER_WINDOW_SCHEMA,
            "QUALIFY row_number() OVER (PARTITION BY meter_key, read_at "
            "ORDER BY tx_time DESC, source DESC, register DESC NULLS LAST) = 1",
        )

    def latest_interval_end(
        self, meter_key: int, channel: Channel, resolution: Resolution
    ) -> int | None:
        for month in sorted(self._months["readings"], reverse=True):
            rows = (
                self._cursor()
                .execute(
                    f"SELECT epoch_us(max(interval_end)) FROM {partition_name('readings', month)} "
                    "WHERE meter_key = ? AND channel = ? AND resolution = ?",
                    [meter_key, int(channel), int(resolution)],
                )
                .fetchall()
            )
            if rows and rows[0][0] is not None:
                return int(rows[0][0])
        return None

    def reading_counts(self) -> dict[int, int]:
        source = self._source("readings", self.months())
        if source is None:
            return {}
        rows = (
            self._cursor()
            .execute(
                f"SELECT resolution, count(*) FROM {source} GROUP BY resolution ORDER BY resolution"
            )
            .fetchall()
        )
        return {int(r): int(c) for r, c in rows}

    # ---- housekeeping: compaction, export for the archive, retention

    def compact(self, month: int) -> int:
        """Rewrite one month sorted by meter, channel, resolution and time, without repeated
        versions (the history a read sees is unchanged); rows kept."""
        kept = 0
        for kind in ("readings", "register_reads"):
            if month not in self._months[kind]:
                continue
            name = partition_name(kind, month)
            with self._transaction(f"compacting {name}") as cur:
                cur.execute(
                    f"CREATE OR REPLACE TABLE {name}__compact AS SELECT * FROM {name} "
                    f"QUALIFY {KEEP_FIRST[kind]} ORDER BY {SORT[kind]}"
                )
                cur.execute(f"DROP VIEW IF EXISTS {kind}")
                cur.execute(f"DROP TABLE {name}")
                cur.execute(f"ALTER TABLE {name}__compact RENAME TO {name}")
                rows = int(cur.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0])
                cur.execute("DELETE FROM compacted WHERE kind = ? AND month = ?", [kind, month])
                cur.execute("INSERT INTO compacted VALUES (?, ?, ?)", [kind, month, rows])
            if kind == "readings":
                kept = rows
        with self._write_lock:
            self._refresh_views()
        return kept

    def needs_compaction(self, month: int) -> bool:
        """True when the month has rows that arrived since it was last compacted."""
        if month not in self._months["readings"]:
            return False
        rows = (
            self._cursor()
            .execute(
                f"SELECT (SELECT count(*) FROM {partition_name('readings', month)}), "
                "(SELECT max(rows) FROM compacted WHERE kind = 'readings' AND month = ?)",
                [month],
            )
            .fetchall()
        )
        return rows[0][1] is None or int(rows[0][0]) != int(rows[0][1])

    def export_month(self, kind: str, month: int) -> pa.Table:
        """Every distinct version of one month (for the archive), sorted by meter and time."""
        schema = READINGS_SCHEMA if kind == "readings" else REGISTER_READS_SCHEMA
        if month not in self._months[kind]:
            return schema.empty_table()
        name = partition_name(kind, month)
        table = self._arrow(
            f"SELECT * FROM {name} QUALIFY {KEEP_FIRST[kind]} ORDER BY {SORT[kind]}"
        )
        return versions.conform_to(table, schema)

    def drop_month(self, month: int) -> None:
        """Drop one month of readings and register reads (retention, after archiving)."""
        with self._write_lock:
            for kind in self._months:
                if month in self._months[kind]:
                    self._months[kind].discard(month)
                    self._refresh_views()
                    self._cursor().execute(f"DROP TABLE IF EXISTS {partition_name(kind, month)}")

    def checkpoint(self) -> None:
        with self._write_lock:
            try:
                self._cursor().execute("CHECKPOINT")
            except duckdb.Error as exc:
                refused = io_error("checkpoint", self.path, exc)
                raise refused or StoreError(f"checkpoint of {self.path} failed: {exc}") from exc

    def close(self) -> None:
        try:
            self._con.close()  # checkpoints the WAL into the file
        except duckdb.Error as exc:
            refused = io_error("closing it", self.path, exc)
            raise refused or StoreError(f"closing {self.path} failed: {exc}") from exc

    # ---- specified sub-meters (SPEC S3)
