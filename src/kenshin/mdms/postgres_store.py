"""The service-mode store: PostgreSQL, appended to by binary COPY built from Arrow with numpy.

Same semantics as :class:`kenshin.mdms.duckdb_store.DuckDBStore` (the store tests run on both):
long rows never updated in place, "current" = latest ``tx_time``, ``as_of`` = a filter on
``tx_time``. Layout (``docs/postgres.md``):

- every table lives in one schema (``kenshin`` by default), so a test can use a throwaway schema
  and :meth:`PostgresStore.drop_schema` it;
- ``readings`` and ``register_reads`` are range-partitioned by the **JST calendar month** their
  ``interval_end`` / ``read_at`` belongs to (:mod:`kenshin.mdms.months`: the value ending at
  midnight on the 1st is the month before's): ``readings_2026_04`` holds
  ``(2026-04-01 00:00+09, 2026-05-01 00:00+09]``, written ``FROM ('2026-04-01
  00:00:00.000001+09') TO ('2026-05-01 00:00:00.000001+09')``. Partitions are created on
  demand before each COPY, serialized between processes by an advisory lock;
- one index per partitioned table, for point reads of one meter:
  ``(meter_key, channel, resolution, interval_end)``.

Appends encode the Arrow columns into the PGCOPY binary format with numpy (one structured array
per chunk, no Python loop per row) and send each chunk with one ``copy.write``; one transaction
per :meth:`PostgresStore.append`.

Thread safety: every thread gets its own connection (opened on first use; connections of threads
that have ended are closed when the next one opens), so the MDMS writer thread and API threads use
one store concurrently.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pyarrow as pa
from psycopg import sql

from kenshin.core.batches import CounterState
from kenshin.core.channels import Channel
from kenshin.core.schema import (
    AUDIT_SCHEMA,
    COMMAND_LOG_SCHEMA,
    OUTAGES_SCHEMA,
    READINGS_SCHEMA,
    REGISTER_READS_SCHEMA,
)
from kenshin.core.timeslots import Resolution
from kenshin.errors import StoreError
from kenshin.mdms.months import (
    parse_month,
    partition_name,
    row_bounds_text,
    row_months,
    row_months_between,
    table_row_months,
)
from kenshin.mdms.pgcopy import (
    CopyColumn,
    cluster,
    conform,
    copy_chunks,
)
from kenshin.mdms.postgres_reads import CONTENT_COLUMNS, US_COLUMN, PostgresReads, to_datetime
from kenshin.mdms.postgres_schema import (
    EDIT_COLUMNS,
    GAP_COLUMNS,
    METER_COLUMNS,
    METER_INDEXED,
    READING_COLUMNS,
    READINGS_INDEX,
    REGISTER_COLUMNS,
    REGISTERS_INDEX,
    SPECIFIED_COLUMNS,
    check_layout,
    ddl,
    meter_indexes,
    schema_complete,
)
from kenshin.mdms.store import MeterRange
from kenshin.postgres import (
    ThreadConnections,
    check_schema,
    connect,
    ddl_lock,
    describe_dsn,
    store_error,
)

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)


# --------------------------------------------------------------------------------------------
# the store


class PostgresStore(PostgresReads):
    """Readings in PostgreSQL, every table in ``schema``.

    ``dsn`` is a libpq connection string or URI, e.g. ``postgresql://postgres@127.0.0.1:5432/test``.
    The schema and its tables are created if missing (unless ``read_only``).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "kenshin",
        read_only: bool = False,
        connect_timeout: int = 10,
        archive: Any = None,
    ) -> None:
        self._s = check_schema(schema)
        self.dsn = dsn
        self.schema = schema
        self.archive = archive  # kenshin.mdms.archive.ParquetArchive, read for archived months
        self.read_only = read_only
        self._target = f"{describe_dsn(dsn)} (schema {schema})"
        self._lock = threading.Lock()  # the partitions known
        self._connections = ThreadConnections(
            dsn, application_name="kenshin", connect_timeout=connect_timeout, read_only=read_only
        )
        self._partitions: set[tuple[str, int]] = set()
        self._texts: dict[str, str] = {}
        conn = self._conn()  # fail here, not on first use, when the server is not reachable
        try:
            if read_only:
                found = conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]
                ).fetchone()
                if found is None:
                    raise StoreError(f"no kenshin store in {self.target}: the schema is missing")
            else:
                with conn.transaction():
                    if not schema_complete(conn, schema):
                        self._ddl_lock(conn)
                        for statement in ddl(schema):
                            conn.execute(statement)
                    check_layout(conn, schema, self.target)
        except psycopg.Error as exc:
            self.close()
            raise store_error(f"cannot set up the store in {self.target}", exc) from exc
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({self.target})"

    @property
    def target(self) -> str:
        return self._target

    # ---- connections

    def _conn(self) -> psycopg.Connection[Any]:
        if self._connections.closed:
            raise StoreError(f"the store {self.target} is closed")
        return self._connections.get()

    def connection(self) -> psycopg.Connection[Any]:
        """The calling thread's connection. A head-end worker's replay guard shares it, so the
        windows its admissions changed commit in the same transaction as their values
        (:class:`kenshin.aroute.replay_postgres.PostgresReplayGuard`)."""
        return self._conn()

    def _ddl_lock(self, conn: psycopg.Connection[Any]) -> None:
        ddl_lock(conn, self.schema)

    def _table(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(self._s, sql.Identifier(name))

    # ---- partitions

    def ensure_partitions(self, parent: str, months: Sequence[int]) -> list[str]:
        """Create the monthly partitions of ``parent`` that are missing; their names."""
        try:
            return self._ensure_partitions(parent, months)
        except psycopg.Error as exc:
            raise store_error(
                f"creating partitions of {parent} in {self.target} failed", exc
            ) from exc

    def _ensure_partitions(self, parent: str, months: Sequence[int]) -> list[str]:
        wanted = [m for m in months if (parent, m) not in self._partitions]
        if not wanted:
            return []
        created = self._create_partitions(parent, wanted)
        with self._lock:
            self._partitions.update((parent, m) for m in wanted)
        return created

    def _create_partitions(self, parent: str, wanted: list[int]) -> list[str]:
        conn = self._conn()
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            return self._create_partitions_on(conn, parent, wanted)
        # inside a head-end worker's held transaction (its replay guard shares this connection):
        # a new partition locks its parent until commit, which would stall every reader of the
        # table meanwhile; create it on a connection of its own, committed at once
        with connect(self.dsn, application_name="kenshin-ddl", connect_timeout=10) as own:
            own.execute("SET lock_timeout = '30s'")  # never wait forever on this thread's locks
            return self._create_partitions_on(own, parent, wanted)

    def _create_partitions_on(
        self, conn: psycopg.Connection[Any], parent: str, wanted: list[int]
    ) -> list[str]:
        created = []
        with conn.transaction():
            # CREATE TABLE IF NOT EXISTS ... PARTITION OF still fails when two sessions create
            # the same partition at once (DuplicateTable, or a unique violation in the
            # catalogs): take turns, and look at what exists only while holding the lock
            self._ddl_lock(conn)
            rows = conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = %s::regclass",
                [f"{self.schema}.{parent}"],
            ).fetchall()
            existing = {r[0] for r in rows}
            for month in wanted:
                name = partition_name(parent, month)
                if name in existing:
                    continue
                low, high = row_bounds_text(month)
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
                    ).format(
                        self._table(name), self._table(parent), sql.Literal(low), sql.Literal(high)
                    )
                )
                created.append(name)
        return created

    def _partitions_before_reading(self, parent: str, months: Sequence[int]) -> None:
        """Inside a transaction (a head-end worker's, which holds its replay windows until the
        values are written) a read of ``parent`` locks it until commit, and a partition the
        same batch needs, created on a connection of its own, would wait for that lock until
        its timeout, batch after batch. The batch compared is about to be written: its
        partitions are made before the read."""
        idle = self._conn().info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if months and not idle and not self.read_only:
            self.ensure_partitions(parent, months)

    def read_cell_versions(
        self,
        channel: Channel,
        resolution: Resolution,
        meter_keys: npt.NDArray[np.int32],
        interval_ends_us: npt.NDArray[np.int64],
    ) -> pa.Table:
        self._partitions_before_reading("readings", row_months(interval_ends_us))
        return super().read_cell_versions(channel, resolution, meter_keys, interval_ends_us)

    def read_register_rows(
        self, channel: Channel, start_us: int, end_us: int, meters: MeterRange | None = None
    ) -> pa.Table:
        self._partitions_before_reading("register_reads", row_months_between(start_us - 1, end_us))
        return super().read_register_rows(channel, start_us, end_us, meters)

    def partitions(self, parent: str = "readings") -> list[str]:
        """Names of the partitions of ``parent``, in order."""
        rows = self._fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            [f"{self.schema}.{parent}"],
            "list partitions",
        )
        return [str(r[0]) for r in rows]

    # ---- writes

    def write_meters(self, meters: pa.Table) -> None:
        table = cluster(conform(meters, METER_COLUMNS, "meters"), ["meter_key"])
        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                # TRUNCATE, not DELETE: no dead rows after each rewrite; readers wait for the
                # commit and then see the new roster whole. Building the indexes after the COPY
                # is faster than filling them row by row (measured: a third less for 1 M meters).
                cur.execute(sql.SQL("TRUNCATE {}").format(self._table("meters")))
                for column in METER_INDEXED:
                    cur.execute(
                        sql.SQL("DROP INDEX IF EXISTS {}").format(self._table(f"meters_{column}"))
                    )
                self._copy(cur, "meters", table, METER_COLUMNS)
                for statement in meter_indexes(self.schema):
                    cur.execute(statement)
        except psycopg.Error as exc:
            raise store_error(f"writing meters to {self.target} failed", exc) from exc

    def append(
        self,
        readings: pa.Table,
        registers: pa.Table,
        counters: CounterState | None = None,
        events: pa.Table | None = None,
    ) -> None:
        """Append values and, in the same transaction, the replay windows ``counters`` and the
        meter ``events``."""
        readings = conform(readings, READING_COLUMNS, "readings")
        registers = conform(registers, REGISTER_COLUMNS, "register reads")
        has_counters = counters is not None and len(counters[0]) > 0
        has_events = events is not None and events.num_rows > 0
        if not (readings.num_rows or registers.num_rows or has_counters or has_events):
            return
        readings = cluster(readings, READINGS_INDEX)
        registers = cluster(registers, REGISTERS_INDEX)
        months = table_row_months(readings, "interval_end")
        register_months = table_row_months(registers, "read_at")
        try:
            for attempt in range(2):
                self._ensure_partitions("readings", months)
                self._ensure_partitions("register_reads", register_months)
                conn = self._conn()
                try:
                    with conn.transaction(), conn.cursor() as cur:
                        if readings.num_rows:
                            self._copy(cur, "readings", readings, READING_COLUMNS)
                        if registers.num_rows:
                            self._copy(cur, "register_reads", registers, REGISTER_COLUMNS)
                        if counters is not None and has_counters:
                            self._save_counters(cur, counters)
                        if events is not None and has_events:
                            self._save_events(cur, events)
                    return
                except psycopg.errors.CheckViolation:  # "no partition of relation ... for row"
                    if attempt:
                        raise
                    # a partition this store created was dropped since (another process,
                    # housekeeping): look again and retry once
                    with self._lock:
                        self._partitions.clear()
        except psycopg.Error as exc:
            raise store_error(f"append to {self.target} failed", exc) from exc

    def save_principal(self, name: str, document: str) -> None:
        self._execute(
            sql.SQL(
                "INSERT INTO {} (name, document) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET document = excluded.document"
            ).format(self._table("principals")),
            [name, document],
            "save a principal",
        )

    def append_command_log(self, rows: pa.Table) -> None:
        self._append_log("command_log", COMMAND_LOG_SCHEMA, rows, "the command log")

    def save_control_record(self, kind: str, record_id: int, document: str) -> None:
        self._execute(
            sql.SQL(
                "INSERT INTO {} (kind, record_id, document) VALUES (%s, %s, %s) "
                "ON CONFLICT (kind, record_id) DO UPDATE SET document = excluded.document"
            ).format(self._table("control_records")),
            [kind, record_id, document],
            "save a control record",
        )

    def save_outages(self, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        names = [f.name for f in OUTAGES_SCHEMA]
        times = {"started", "confirmed", "restored"}
        columns = []
        for name in names:
            column = rows.column(name)
            if name in times:
                us = column.cast(pa.int64()).to_pylist()
                columns.append([None if v is None else to_datetime(v) for v in us])
            else:
                columns.append(column.to_pylist())
        updates = ", ".join(f"{n} = excluded.{n}" for n in names[1:])
        try:
            with self._conn().transaction(), self._conn().cursor() as cur:
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {} ("
                        + ", ".join(names)
                        + ") VALUES ("
                        + ", ".join(["%s"] * len(names))
                        + ") ON CONFLICT (event_id) DO UPDATE SET "
                        + updates
                    ).format(self._table("outages")),
                    list(zip(*columns, strict=True)),
                )
        except psycopg.Error as exc:
            raise store_error(f"saving outage events in {self.target} failed", exc) from exc

    def append_audit(self, rows: pa.Table) -> None:
        self._append_log("audit", AUDIT_SCHEMA, rows, "the audit trail")

    def _append_log(self, table: str, schema: pa.Schema, rows: pa.Table, what: str) -> None:
        """Append rows to an append-only log whose first column is its time."""
        if not rows.num_rows:
            return
        first, *names = [f.name for f in schema]
        at = [to_datetime(v) for v in rows.column(first).cast(pa.int64()).to_pylist()]
        values = zip(at, *(rows.column(n).to_pylist() for n in names), strict=True)
        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    sql.SQL(
                        f"INSERT INTO {{}} ({first}, "
                        + ", ".join(names)
                        + ") VALUES ("
                        + ", ".join(["%s"] * (len(names) + 1))
                        + ")"
                    ).format(self._table(table)),
                    list(values),
                )
        except psycopg.Error as exc:
            raise store_error(f"appending to {what} of {self.target} failed", exc) from exc

    def _save_events(self, cur: psycopg.Cursor[Any], events: pa.Table) -> None:
        # few rows (events are rare): one statement that keeps the first copy of each event
        us = {n: events.column(n).cast(pa.int64()).to_pylist() for n in ("occurred", "tx_time")}
        rows = zip(
            events.column("meter_key").to_pylist(),
            events.column("code").to_pylist(),
            [to_datetime(v) for v in us["occurred"]],
            events.column("detail").to_pylist(),
            [to_datetime(v) for v in us["tx_time"]],
            strict=True,
        )
        cur.executemany(
            sql.SQL(
                "INSERT INTO {} (meter_key, code, occurred, detail, tx_time) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
            ).format(self._table("meter_events")),
            list(rows),
        )

    def _save_counters(self, cur: psycopg.Cursor[Any], counters: CounterState) -> None:
        keys, last, bitmap = counters
        cur.execute(
            sql.SQL(
                "INSERT INTO {}.frame_counters (meter_key, last, bitmap) "
                "SELECT * FROM unnest(%s::integer[], %s::bigint[], %s::bigint[]) "
                "ON CONFLICT (meter_key) DO UPDATE SET last = excluded.last, "
                "bitmap = excluded.bitmap"
            ).format(sql.Identifier(self.schema)),
            [
                keys.astype(np.int64).tolist(),
                last.astype(np.int64).tolist(),
                np.asarray(bitmap, dtype=np.uint64).view(np.int64).tolist(),
            ],
        )

    def load_counters(self) -> CounterState:
        rows = self._fetch(
            sql.SQL("SELECT meter_key, last, bitmap FROM {}.frame_counters").format(
                sql.Identifier(self.schema)
            ),
            [],
            "replay windows",
        )
        keys = np.array([r[0] for r in rows], dtype=np.int64)
        last = np.array([r[1] for r in rows], dtype=np.int64)
        bitmap = np.array([r[2] for r in rows], dtype=np.int64).view(np.uint64)
        return keys, last, bitmap

    def _copy(
        self,
        cur: psycopg.Cursor[Any],
        name: str,
        table: pa.Table,
        columns: Sequence[CopyColumn],
    ) -> None:
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            self._table(name), sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
        )
        with cur.copy(statement) as copy:
            for chunk in copy_chunks(table, columns):
                copy.write(chunk)

    def set_meta(self, key: str, value: str) -> None:
        self._execute(
            sql.SQL(
                "INSERT INTO {} (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ).format(self._table("meta")),
            [key, value],
            "set_meta",
        )

    # ---- reads

    def months(self, kind: str = "readings") -> list[int]:
        """The JST months with a partition of ``kind``, ascending."""
        return sorted(parse_month(name[len(kind) + 1 :]) for name in self.partitions(kind))

    def record_edits(self, readings: pa.Table, edits: pa.Table) -> None:
        """Append manual-edit versions and their audit rows in one transaction."""
        readings = conform(readings, READING_COLUMNS, "readings")
        edits = conform(edits, EDIT_COLUMNS, "edits")
        self._ensure_partitions("readings", table_row_months(readings, "interval_end"))
        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                self._copy(cur, "readings", readings, READING_COLUMNS)
                self._copy(cur, "edits", edits, EDIT_COLUMNS)
        except psycopg.Error as exc:
            raise store_error(f"recording edits in {self.target} failed", exc) from exc

    def replace_gaps(
        self, channel: Channel, resolution: Resolution, start_us: int, end_us: int, gaps: pa.Table
    ) -> None:
        """The gap list of a window (interval ends in ``(start, end]``) is replaced whole."""
        gaps = conform(gaps, GAP_COLUMNS, "gaps")
        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    sql.SQL(
                        "DELETE FROM {} WHERE channel = %s AND resolution = %s "
                        "AND interval_end > %s AND interval_end <= %s"
                    ).format(self._table("gaps")),
                    [int(channel), int(resolution), to_datetime(start_us), to_datetime(end_us)],
                )
                if gaps.num_rows:
                    self._copy(cur, "gaps", gaps, GAP_COLUMNS)
        except psycopg.Error as exc:
            raise store_error(f"storing gaps in {self.target} failed", exc) from exc

    # ---- housekeeping

    def needs_compaction(self, month: int) -> bool:
        """Never: the partitions' index serves point reads (no rewrite sorted by meter)."""
        return False

    def compact(self, month: int) -> int:
        """Nothing to rewrite (see :meth:`needs_compaction`); 0 rows."""
        return 0

    def checkpoint(self) -> None:
        """Nothing to do: what a transaction committed is durable."""

    def export_month(self, kind: str, month: int) -> pa.Table:
        """Every distinct version of one month (for the archive), sorted by meter and time."""
        name = partition_name(kind, month)
        if name not in self.partitions(kind):
            return (READINGS_SCHEMA if kind == "readings" else REGISTER_READS_SCHEMA).empty_table()
        if kind == "readings":
            schema = READINGS_SCHEMA
            distinct = "meter_key, channel, resolution, interval_end, " + CONTENT_COLUMNS
            order = distinct + ", tx_time"
        else:
            schema = REGISTER_READS_SCHEMA
            distinct = "meter_key, channel, read_at, register, source"
            order = distinct + ", tx_time"
        select = ", ".join(
            US_COLUMN.format(f.name) if pa.types.is_timestamp(f.type) else f.name for f in schema
        )
        statement = sql.SQL(
            "SELECT " + select + " FROM (SELECT DISTINCT ON (" + distinct + ") * FROM {} "
            "ORDER BY " + order + ") v"
        ).format(self._table(name))
        table = self._rows_arrow(statement, [], schema, "export month")
        keys = (
            ["meter_key", "channel", "resolution", "interval_end", "tx_time"]
            if kind == "readings"
            else ["meter_key", "channel", "read_at", "tx_time"]
        )
        return table.sort_by([(k, "ascending") for k in keys])

    def drop_month(self, month: int) -> None:
        """Drop one month's partitions of readings and register reads (retention)."""
        conn = self._conn()
        try:
            with conn.transaction():
                self._ddl_lock(conn)
                for parent in ("readings", "register_reads"):
                    conn.execute(
                        sql.SQL("DROP TABLE IF EXISTS {}").format(
                            self._table(partition_name(parent, month))
                        )
                    )
        except psycopg.Error as exc:
            raise store_error(f"dropping month {month} in {self.target} failed", exc) from exc
        with self._lock:
            self._partitions.discard(("readings", month))
            self._partitions.discard(("register_reads", month))

    def drop_schema(self) -> None:
        """Drop the schema with every table and partition in it (tests, housekeeping)."""
        conn = self._conn()
        try:
            with conn.transaction():
                self._ddl_lock(conn)
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(self._s))
        except psycopg.Error as exc:
            raise store_error(f"dropping {self.target} failed", exc) from exc
        with self._lock:
            self._partitions.clear()

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        self._connections.close()

    # ---- specified sub-meters (SPEC S3)

    def write_specified(self, table: pa.Table) -> None:
        """Replace the roster of specified sub-meters (``SPECIFIED_SCHEMA``)."""
        table = conform(table, SPECIFIED_COLUMNS, "specified meters")
        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(sql.SQL("TRUNCATE {}").format(self._table("specified_meters")))
                if table.num_rows:
                    self._copy(cur, "specified_meters", table, SPECIFIED_COLUMNS)
        except psycopg.Error as exc:
            raise store_error(f"writing specified meters to {self.target} failed", exc) from exc
