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
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from kenshin.core.batches import CounterState
from kenshin.core.channels import Channel
from kenshin.core.schema import METERS_SCHEMA, READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.core.specified import SPECIFIED_SCHEMA
from kenshin.core.timeslots import Resolution
from kenshin.errors import StoreError
from kenshin.mdms import versions
from kenshin.mdms.months import (
    LAYOUT,
    parse_month,
    partition_name,
    row_bounds_text,
    row_months_between,
    table_row_months,
)
from kenshin.mdms.pgcopy import (
    PG_EPOCH_US,
    CopyColumn,
    cluster,
    conform,
    copy_chunks,
    copy_columns,
)
from kenshin.mdms.store import ReadingQuery
from kenshin.postgres import describe_dsn

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LOCK_CLASS = 0x6B656E  # "ken": advisory lock class of kenshin's DDL

READING_COLUMNS = copy_columns(READINGS_SCHEMA)
REGISTER_COLUMNS = copy_columns(REGISTER_READS_SCHEMA)
GAP_COLUMNS = copy_columns(versions.GAPS_SCHEMA)
EDIT_COLUMNS = copy_columns(versions.EDITS_SCHEMA)
METER_COLUMNS = copy_columns(METERS_SCHEMA)
SPECIFIED_COLUMNS = copy_columns(SPECIFIED_SCHEMA)


# --------------------------------------------------------------------------------------------
# the store

_METER_NAMES = [c.name for c in METER_COLUMNS]
_CONTENT = ", ".join(versions.CONTENT)


def _array_values(data: bytes | None, wire: str) -> npt.NDArray[Any]:
    """The elements of a one-dimensional array without NULLs in PostgreSQL's binary format
    (``array_send``): a 20-byte header, then a 4-byte length and the value per element."""
    if not data:
        return np.zeros(0, dtype=wire)
    element = np.dtype([("length", ">i4"), ("value", wire)])
    return np.frombuffer(data, element, offset=20)["value"]


_US = "(extract(epoch FROM {0}) * 1000000)::bigint AS {0}"
_METER_INDEXED = ("meter_key", "supply_point_id")
_READINGS_INDEX = ("meter_key", "channel", "resolution", "interval_end")
_REGISTERS_INDEX = ("meter_key", "channel", "read_at")


def _to_datetime(epoch_us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=int(epoch_us))


def _to_epoch_us(moment: dt.datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _meter_indexes(schema: str) -> list[sql.Composed]:
    return [
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.meters ({})").format(
            sql.Identifier(f"meters_{column}"), sql.Identifier(schema), sql.Identifier(column)
        )
        for column in _METER_INDEXED
    ]


def _ddl(schema: str) -> list[sql.Composed]:
    s = sql.Identifier(schema)
    meters = ", ".join(f"{c.name} {c.sql_type}" for c in METER_COLUMNS)
    add_columns = ", ".join(
        f"ADD COLUMN IF NOT EXISTS {c.name} {c.sql_type}" for c in METER_COLUMNS
    )
    readings = ", ".join(f"{c.name} {c.sql_type}" for c in READING_COLUMNS)
    registers = ", ".join(f"{c.name} {c.sql_type}" for c in REGISTER_COLUMNS)
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s),
        sql.SQL("CREATE TABLE IF NOT EXISTS {}.meters (" + meters + ")").format(s),
        # the roster grows columns over time; it is rewritten whole, so old stores just gain them
        sql.SQL("ALTER TABLE {}.meters " + add_columns).format(s),
        *_meter_indexes(schema),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.readings (" + readings + ") "
            "PARTITION BY RANGE (interval_end)"
        ).format(s),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS readings_point ON {}.readings ("
            + ", ".join(_READINGS_INDEX)
            + ")"
        ).format(s),
        # which days received rows since the last sweep (history day planes): rows arrive in
        # time order, so a block-range index finds them for next to nothing at ingest
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS readings_written ON {}.readings "
            "USING brin (interval_end, tx_time)"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.register_reads (" + registers + ") "
            "PARTITION BY RANGE (read_at)"
        ).format(s),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS register_reads_point ON {}.register_reads ("
            + ", ".join(_REGISTERS_INDEX)
            + ")"
        ).format(s),
        # stores made before VEE labels existed gain the failed-rule column
        sql.SQL(
            "ALTER TABLE {}.readings ADD COLUMN IF NOT EXISTS failed_rule integer DEFAULT 0"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.gaps (meter_key integer, channel smallint, "
            "resolution smallint, interval_end timestamptz, found_at timestamptz)"
        ).format(s),
        sql.SQL("CREATE INDEX IF NOT EXISTS gaps_meter ON {}.gaps (meter_key)").format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.edits (meter_key integer, channel smallint, "
            "resolution smallint, interval_end timestamptz, old_value integer, "
            "new_value integer, reason text NOT NULL, editor text NOT NULL, "
            "tx_time timestamptz)"
        ).format(s),
        sql.SQL("CREATE INDEX IF NOT EXISTS edits_meter ON {}.edits (meter_key)").format(s),
        sql.SQL("CREATE TABLE IF NOT EXISTS {}.meta (key text PRIMARY KEY, value text)").format(s),
        # the head-end's replay windows (same table as PostgresReplayGuard's)
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.frame_counters "
            "(meter_key integer PRIMARY KEY, last bigint NOT NULL, bitmap bigint NOT NULL)"
        ).format(s),
        # specified sub-meters behind smart meters (SPEC S3)
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.specified_meters (meter_key integer, "
            "parent_key integer, kind smallint, device_id bigint)"
        ).format(s),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS specified_parent ON {}.specified_meters (parent_key)"
        ).format(s),
    ]


class PostgresStore:
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
        if not _IDENT.match(schema):
            raise StoreError(
                f"schema name {schema!r} must be a lower-case SQL identifier (a-z, 0-9, _)"
            )
        self.dsn = dsn
        self.schema = schema
        self.archive = archive  # kenshin.mdms.archive.ParquetArchive, read for archived months
        self.read_only = read_only
        self._target = f"{describe_dsn(dsn)} (schema {schema})"
        self._connect_timeout = connect_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[weakref.ref[threading.Thread], psycopg.Connection[Any]]] = []
        self._partitions: set[tuple[str, int]] = set()
        self._texts: dict[str, str] = {}
        self._closed = False
        self._s = sql.Identifier(schema)
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
                    self._ddl_lock(conn)
                    for statement in _ddl(schema):
                        conn.execute(statement)
                    self._check_layout(conn)
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"cannot set up the store in {self.target}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({self.target})"

    @property
    def target(self) -> str:
        return self._target

    def _check_layout(self, conn: psycopg.Connection[Any]) -> None:
        """Refuse a store whose month partitions follow layout 1 (``[1st, next 1st)``): its
        rows at midnight on the 1st sit in the other month (``kenshin.mdms.months``)."""
        found = conn.execute(
            sql.SQL("SELECT value FROM {} WHERE key = 'layout'").format(self._table("meta"))
        ).fetchone()
        if found is not None and found[0] == LAYOUT:
            return
        bounds = conn.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = ANY(%s::regclass[])",
            [[f"{self.schema}.readings", f"{self.schema}.register_reads"]],
        ).fetchall()
        if any(".000001" not in str(b[0]) for b in bounds):
            raise StoreError(
                f"{self.target} was written by an older kenshin whose month partitions start at "
                "midnight (layout 1); re-create it (kenshin simulate --overwrite) or export it "
                "first"
            )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} VALUES ('layout', %s) ON CONFLICT (key) DO UPDATE "
                "SET value = EXCLUDED.value"
            ).format(self._table("meta")),
            [LAYOUT],
        )

    # ---- connections

    def _conn(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StoreError(f"the store {self.target} is closed")
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        conn = self._connect()
        self._local.conn = conn
        with self._lock:
            alive = []
            for thread_ref, other in self._connections:
                thread = thread_ref()
                if thread is None or not thread.is_alive() or other.closed or other.broken:
                    other.close()
                else:
                    alive.append((thread_ref, other))
            alive.append((weakref.ref(threading.current_thread()), conn))
            self._connections = alive
        return conn

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            params = conninfo_to_dict(self.dsn)
        except psycopg.Error as exc:
            raise StoreError(f"invalid PostgreSQL DSN: {exc}") from exc
        params.setdefault("connect_timeout", self._connect_timeout)
        params.setdefault("application_name", "kenshin")
        params["client_encoding"] = "utf8"  # text columns go on the wire as UTF-8
        try:
            conn = psycopg.connect(make_conninfo("", **params), autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {self.target}: {exc}") from exc
        if self.read_only:
            try:
                conn.execute("SET default_transaction_read_only = on")
            except psycopg.Error as exc:
                conn.close()
                raise StoreError(f"cannot connect to PostgreSQL at {self.target}: {exc}") from exc
        return conn

    def _ddl_lock(self, conn: psycopg.Connection[Any]) -> None:
        """Serialize DDL on this schema between processes until the transaction ends."""
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_LOCK_CLASS, self.schema])

    def _table(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(self._s, sql.Identifier(name))

    # ---- partitions

    def ensure_partitions(self, parent: str, months: Sequence[int]) -> list[str]:
        """Create the monthly partitions of ``parent`` that are missing; their names."""
        try:
            return self._ensure_partitions(parent, months)
        except psycopg.Error as exc:
            raise StoreError(
                f"creating partitions of {parent} in {self.target} failed: {exc}"
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
                for column in _METER_INDEXED:
                    cur.execute(
                        sql.SQL("DROP INDEX IF EXISTS {}").format(self._table(f"meters_{column}"))
                    )
                self._copy(cur, "meters", table, METER_COLUMNS)
                for statement in _meter_indexes(self.schema):
                    cur.execute(statement)
        except psycopg.Error as exc:
            raise StoreError(f"writing meters to {self.target} failed: {exc}") from exc

    def read_meters(self) -> pa.Table:
        """The whole roster (``METERS_SCHEMA``) by meter key, in one COPY parsed by Arrow."""
        copy_out = "COPY (SELECT {} FROM {} ORDER BY meter_key) TO STDOUT (FORMAT csv)"
        statement = sql.SQL(copy_out).format(
            sql.SQL(", ").join(sql.Identifier(n) for n in _METER_NAMES), self._table("meters")
        )
        data = bytearray()
        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                # shortest exact text of each float, whatever the server's default says
                cur.execute("SET LOCAL extra_float_digits = 1")
                with cur.copy(statement) as copy:
                    for block in copy:
                        data += block
        except psycopg.Error as exc:
            raise StoreError(f"reading meters from {self.target} failed: {exc}") from exc
        if not data:
            return METERS_SCHEMA.empty_table()
        return pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(data)),
            read_options=pacsv.ReadOptions(column_names=_METER_NAMES),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=METERS_SCHEMA,
                true_values=["t"],
                false_values=["f"],
                null_values=[""],
                strings_can_be_null=True,  # NULL is an empty field, '' is quoted ("")
                quoted_strings_can_be_null=False,
            ),
        )

    def append(
        self, readings: pa.Table, registers: pa.Table, counters: CounterState | None = None
    ) -> None:
        """Append values and, in the same transaction, the replay windows ``counters``."""
        readings = conform(readings, READING_COLUMNS, "readings")
        registers = conform(registers, REGISTER_COLUMNS, "register reads")
        has_counters = counters is not None and len(counters[0]) > 0
        if not readings.num_rows and not registers.num_rows and not has_counters:
            return
        readings = cluster(readings, _READINGS_INDEX)
        registers = cluster(registers, _REGISTERS_INDEX)
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
                    return
                except psycopg.errors.CheckViolation:  # "no partition of relation ... for row"
                    if attempt:
                        raise
                    # a partition this store created was dropped since (another process,
                    # housekeeping): look again and retry once
                    with self._lock:
                        self._partitions.clear()
        except psycopg.Error as exc:
            raise StoreError(f"append to {self.target} failed: {exc}") from exc

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

    def _fetch(self, query: Any, params: Sequence[Any], what: str) -> list[tuple[Any, ...]]:
        try:
            with self._conn().cursor(binary=True) as cur:
                cur.execute(query, params)
                return cur.fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"{what} on {self.target} failed: {exc}") from exc

    def _execute(self, query: Any, params: Sequence[Any], what: str) -> None:
        try:
            self._conn().execute(query, params)
        except psycopg.Error as exc:
            raise StoreError(f"{what} on {self.target} failed: {exc}") from exc

    def meter_count(self) -> int:
        rows = self._fetch(
            sql.SQL("SELECT count(*) FROM {}").format(self._table("meters")), [], "meter_count"
        )
        return int(rows[0][0]) if rows else 0

    def _meters(self, where: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        query = sql.SQL("SELECT {} FROM {} " + where).format(
            sql.SQL(", ").join(sql.Identifier(n) for n in _METER_NAMES), self._table("meters")
        )
        rows = self._fetch(query, params, "meter lookup")
        return [dict(zip(_METER_NAMES, row, strict=True)) for row in rows]

    def list_meters(self, offset: int, limit: int) -> list[dict[str, Any]]:
        return self._meters("ORDER BY meter_key LIMIT %s OFFSET %s", [limit, offset])

    def find_meter(self, supply_point_id: str) -> dict[str, Any] | None:
        rows = self._meters("WHERE supply_point_id = %s", [supply_point_id])
        return rows[0] if rows else None

    def _cell_where(self, query: ReadingQuery) -> tuple[str, list[Any]]:
        where = (
            "meter_key = %s AND channel = %s AND resolution = %s "
            "AND interval_end > %s AND interval_end <= %s"
        )
        params: list[Any] = [
            query.meter_key,
            int(query.channel),
            int(query.resolution),
            _to_datetime(query.start_us),
            _to_datetime(query.end_us),
        ]
        if query.as_of_us is not None:
            where += " AND tx_time <= %s"
            params.append(_to_datetime(query.as_of_us))
        return where, params

    def _current_sql(self, where: str, partition: str = "interval_end") -> sql.Composed:
        """The versioning rule of :mod:`kenshin.mdms.versions` in PostgreSQL: repeats removed by
        DISTINCT ON the content, then the latest version per cell."""
        return sql.SQL(
            "SELECT DISTINCT ON (" + partition + ") meter_key, " + _US.format("interval_end") + ", "
            "value, quality, source, method, failed_rule, " + _US.format("tx_time") + ", "
            "count(*) OVER (PARTITION BY " + partition + ") AS version "
            "FROM (SELECT DISTINCT ON (" + partition + ", " + _CONTENT + ") * FROM {} "
            "WHERE " + where + " ORDER BY " + partition + ", " + _CONTENT + ", tx_time, source, "
            "quality) v ORDER BY " + partition + ", " + versions.ORDER_LATEST
        ).format(self._table("readings"))

    def _query_text(self, key: str, build: Callable[[], sql.Composed]) -> str:
        """The SQL text of a composed statement, built once per ``key`` (point reads are
        frequent enough for composing the statement each time to show)."""
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = build().as_string(self._conn())
        return text

    def _rows_arrow(
        self, statement: Any, params: Sequence[Any], schema: pa.Schema, what: str
    ) -> pa.Table:
        """Rows of a query whose timestamp columns come as epoch µs, as an Arrow table."""
        rows = self._fetch(statement, params, what)
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
        arrays = []
        for field, values in zip(schema, columns, strict=True):
            if pa.types.is_timestamp(field.type):
                arrays.append(pa.array(values, pa.int64()).cast(field.type))
            else:
                arrays.append(pa.array(values, field.type))
        return pa.Table.from_arrays(arrays, schema=schema)

    def months(self, kind: str = "readings") -> list[int]:
        """The JST months with a partition of ``kind``, ascending."""
        return sorted(parse_month(name[len(kind) + 1 :]) for name in self.partitions(kind))

    def _archived(self, months: list[int]) -> list[int]:
        return [] if self.archive is None else list(self.archive.held(months))

    def read(self, query: ReadingQuery) -> pa.Table:
        """Current versions (``versions.READ_SCHEMA``) of one meter's channel, by interval end.

        The version rows come packed in one value decoded by numpy, and the reading rule runs in
        numpy (``versions.current_of``).
        """
        raw = self._raw_versions(query)
        archived = self._archived(row_months_between(query.start_us, query.end_us))
        if archived:
            raw = pa.concat_tables([self.archive.read_versions(query, archived), raw])
        return versions.conform_to(versions.current_of(raw), versions.READ_SCHEMA)

    def _raw_versions(self, query: ReadingQuery) -> pa.Table:
        """Every stored version of the query's cells (READINGS_SCHEMA).

        The server sends each column as one binary array (``array_send``; the small columns
        packed into one bigint), which numpy reads at once: a COPY sends a message per row and
        a plain SELECT builds a Python object per value, each costing more than the query.
        """
        where, params = self._cell_where(query)

        def build() -> sql.Composed:
            return sql.SQL(
                "SELECT array_send(array_agg(interval_end)), "
                "array_send(array_agg(coalesce(value, 0))), "
                # PostgreSQL gives << and | the same precedence: every shift in parentheses
                "array_send(array_agg(((value IS NULL)::int::bigint << 56) "
                "| (quality::bigint << 48) | (source::bigint << 40) "
                "| (coalesce(method, 0)::bigint << 32) | ((method IS NULL)::int::bigint << 31) "
                "| ((failed_rule IS NULL)::int::bigint << 30) "
                "| coalesce(failed_rule, 0)::bigint)), array_send(array_agg(tx_time)) "
                "FROM {} WHERE " + where
            ).format(self._table("readings"))

        found = self._fetch(self._query_text("read:" + where, build), params, "read")
        packed = found[0] if found else (None, None, None, None)
        end, value, bits, tx = (
            _array_values(packed[0], ">i8"),
            _array_values(packed[1], ">i4"),
            _array_values(packed[2], ">i8").astype(np.int64),
            _array_values(packed[3], ">i8"),
        )
        n = len(end)

        def nullable(
            values: npt.NDArray[Any], nulls: npt.NDArray[Any], type_: pa.DataType
        ) -> pa.Array:
            mask = nulls.astype(bool)
            return pa.array(values, type_, mask=mask if mask.any() else None)

        ts = READINGS_SCHEMA.field("interval_end").type
        return pa.Table.from_arrays(
            [
                pa.array(np.full(n, query.meter_key, np.int32)),
                pa.array(np.full(n, int(query.channel), np.uint8)),
                pa.array(np.full(n, int(query.resolution), np.uint8)),
                pa.array(end.astype(np.int64) + PG_EPOCH_US).cast(ts),
                nullable(value.astype(np.int32), (bits >> 56) & 1, pa.int32()),
                pa.array(((bits >> 48) & 0xFF).astype(np.uint8)),
                pa.array(((bits >> 40) & 0xFF).astype(np.uint8)),
                nullable(((bits >> 32) & 0xFF).astype(np.uint8), (bits >> 31) & 1, pa.uint8()),
                nullable((bits & 0xFFFF).astype(np.uint16), (bits >> 30) & 1, pa.uint16()),
                pa.array(tx.astype(np.int64) + PG_EPOCH_US).cast(ts),
            ],
            schema=READINGS_SCHEMA,
        )

    def read_versions(self, query: ReadingQuery) -> pa.Table:
        """Every distinct version (``versions.HISTORY_SCHEMA``), by interval end and version."""
        raw = self._raw_versions(query)
        archived = self._archived(row_months_between(query.start_us, query.end_us))
        if archived:
            raw = pa.concat_tables([self.archive.read_versions(query, archived), raw])
        return versions.history_of(raw)

    def read_window(
        self,
        channel: Channel,
        resolution: Resolution,
        start_us: int,
        end_us: int,
        as_of_us: int | None = None,
    ) -> pa.Table:
        """Current versions of every meter's cells in ``(start, end]`` (``WINDOW_SCHEMA``)."""
        where = "channel = %s AND resolution = %s AND interval_end > %s AND interval_end <= %s"
        params: list[Any] = [
            int(channel),
            int(resolution),
            _to_datetime(start_us),
            _to_datetime(end_us),
        ]
        if as_of_us is not None:
            where += " AND tx_time <= %s"
            params.append(_to_datetime(as_of_us))
        return self._rows_arrow(
            self._current_sql(where, "meter_key, interval_end"),
            params,
            versions.WINDOW_SCHEMA,
            "read window",
        )

    def read_window_versions(
        self, channel: Channel, resolution: Resolution, start_us: int, end_us: int
    ) -> pa.Table:
        """Every version row of every meter's cells in ``(start, end]``, unordered (see
        ``DuckDBStore.read_window_versions``)."""
        statement = sql.SQL(
            "SELECT meter_key, "
            + _US.format("interval_end")
            + ", value, quality, source, method, failed_rule, "
            + _US.format("tx_time")
            + " FROM {} WHERE channel = %s AND resolution = %s AND interval_end > %s "
            "AND interval_end <= %s"
        ).format(self._table("readings"))
        return self._rows_arrow(
            statement,
            [int(channel), int(resolution), _to_datetime(start_us), _to_datetime(end_us)],
            versions.VERSION_ROWS_SCHEMA,
            "read window versions",
        )

    def written_days(
        self, channel: Channel, resolution: Resolution, start_us: int, end_us: int, since_us: int
    ) -> dict[int, int]:
        """Days of ``(start, end]`` that received rows after ``since`` (see
        ``DuckDBStore.written_days``); the BRIN index on (interval_end, tx_time) finds them."""
        table = f"{self.schema}.readings"  # a checked identifier (schema name is validated)

        def instant(us: int) -> str:  # exact to the µs (a float of seconds since 1970 is not)
            return f"(TIMESTAMPTZ 'epoch' + {int(us)} * INTERVAL '1 microsecond')"

        statement = versions.written_days_sql(
            table,
            "(extract(epoch FROM {0}) * 1000000)::bigint",
            "/",
            channel=int(channel),
            resolution_min=int(resolution),
            start_us=start_us,
            start_literal=instant(start_us),
            end_literal=instant(end_us),
            since_literal=instant(since_us),
        )
        # block ranges filled since the last VACUUM are not summarized yet, so they would all
        # be read; summarizing the new ones is VACUUM's work for this index, done here because
        # autovacuum may be off or behind
        self._fetch(
            "SELECT brin_summarize_new_values(h.inhrelid) FROM pg_inherits h "
            "WHERE h.inhparent = to_regclass(%s)",
            [f"{self.schema}.readings_written"],
            "summarize new block ranges",
        )
        return {int(d): int(tx) for d, tx in self._fetch(statement, [], "written days")}

    def read_register_rows(self, channel: Channel, start_us: int, end_us: int) -> pa.Table:
        """Every stored register read at instants in ``[start, end]`` (see
        ``DuckDBStore.read_register_rows``)."""
        statement = sql.SQL(
            "SELECT meter_key, "
            + _US.format("read_at")
            + ", register, source, "
            + _US.format("tx_time")
            + " FROM {} WHERE channel = %s AND read_at >= %s AND read_at <= %s"
        ).format(self._table("register_reads"))
        rows = self._rows_arrow(
            statement,
            [int(channel), _to_datetime(start_us), _to_datetime(end_us)],
            versions.REGISTER_ROWS_SCHEMA,
            "read register rows",
        )
        archived = self._archived(row_months_between(start_us - 1, end_us))
        if not archived:
            return rows
        old = self.archive.read_register_rows(int(channel), start_us, end_us, archived)
        return pa.concat_tables([rows, old])

    def read_register_window(self, channel: Channel, start_us: int, end_us: int) -> pa.Table:
        """The latest register read of every meter at each instant in ``[start, end]``."""
        statement = sql.SQL(
            "SELECT DISTINCT ON (meter_key, read_at) meter_key, " + _US.format("read_at") + ", "
            "register, source FROM {} WHERE channel = %s AND read_at >= %s AND read_at <= %s "
            "ORDER BY meter_key, read_at, tx_time DESC, source DESC, register DESC NULLS LAST"
        ).format(self._table("register_reads"))
        return self._rows_arrow(
            statement,
            [int(channel), _to_datetime(start_us), _to_datetime(end_us)],
            versions.REGISTER_WINDOW_SCHEMA,
            "read register window",
        )

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
            raise StoreError(f"recording edits in {self.target} failed: {exc}") from exc

    def read_edits(self, meter_key: int) -> pa.Table:
        names = [f.name for f in versions.EDITS_SCHEMA]
        select = ", ".join(
            _US.format(n) if pa.types.is_timestamp(versions.EDITS_SCHEMA.field(n).type) else n
            for n in names
        )
        statement = sql.SQL(
            "SELECT " + select + " FROM {} WHERE meter_key = %s ORDER BY tx_time, interval_end"
        ).format(self._table("edits"))
        return self._rows_arrow(statement, [meter_key], versions.EDITS_SCHEMA, "read edits")

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
                    [int(channel), int(resolution), _to_datetime(start_us), _to_datetime(end_us)],
                )
                if gaps.num_rows:
                    self._copy(cur, "gaps", gaps, GAP_COLUMNS)
        except psycopg.Error as exc:
            raise StoreError(f"storing gaps in {self.target} failed: {exc}") from exc

    def read_gaps(self, meter_key: int | None = None) -> pa.Table:
        where = "" if meter_key is None else "WHERE meter_key = %s"
        statement = sql.SQL(
            "SELECT meter_key, channel, resolution, "
            + _US.format("interval_end")
            + ", "
            + _US.format("found_at")
            + " FROM {} "
            + where
            + " ORDER BY meter_key, channel, resolution, interval_end"
        ).format(self._table("gaps"))
        params = [] if meter_key is None else [meter_key]
        return self._rows_arrow(statement, params, versions.GAPS_SCHEMA, "read gaps")

    def latest_interval_end(
        self, meter_key: int, channel: Channel, resolution: Resolution
    ) -> int | None:
        rows = self._fetch(
            sql.SQL(
                "SELECT max(interval_end) FROM {} "
                "WHERE meter_key = %s AND channel = %s AND resolution = %s"
            ).format(self._table("readings")),
            [meter_key, int(channel), int(resolution)],
            "latest_interval_end",
        )
        return None if not rows or rows[0][0] is None else _to_epoch_us(rows[0][0])

    def reading_counts(self) -> dict[int, int]:
        rows = self._fetch(
            sql.SQL(
                "SELECT resolution, count(*) FROM {} GROUP BY resolution ORDER BY resolution"
            ).format(self._table("readings")),
            [],
            "reading_counts",
        )
        return {int(r): int(c) for r, c in rows}

    def get_meta(self, key: str) -> str | None:
        rows = self._fetch(
            sql.SQL("SELECT value FROM {} WHERE key = %s").format(self._table("meta")),
            [key],
            "get_meta",
        )
        return None if not rows or rows[0][0] is None else str(rows[0][0])

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
            distinct = "meter_key, channel, resolution, interval_end, " + _CONTENT
            order = distinct + ", tx_time"
        else:
            schema = REGISTER_READS_SCHEMA
            distinct = "meter_key, channel, read_at, register, source"
            order = distinct + ", tx_time"
        select = ", ".join(
            _US.format(f.name) if pa.types.is_timestamp(f.type) else f.name for f in schema
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
            raise StoreError(f"dropping month {month} in {self.target} failed: {exc}") from exc
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
            raise StoreError(f"dropping {self.target} failed: {exc}") from exc
        with self._lock:
            self._partitions.clear()

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for _, conn in connections:
            conn.close()

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
            raise StoreError(f"writing specified meters to {self.target} failed: {exc}") from exc

    def read_specified(self, parent_key: int | None = None) -> pa.Table:
        """The specified sub-meters (of one parent meter), by parent and meter key."""
        found = self._fetch(
            "SELECT to_regclass(%s)", [f"{self.schema}.specified_meters"], "specified meters"
        )
        if not found or found[0][0] is None:  # a read-only store from before SPEC S3
            return SPECIFIED_SCHEMA.empty_table()
        where = "" if parent_key is None else "WHERE parent_key = %s"
        statement = sql.SQL(
            "SELECT meter_key, parent_key, kind, device_id FROM {} "
            + where
            + " ORDER BY parent_key, meter_key"
        ).format(self._table("specified_meters"))
        params = [] if parent_key is None else [parent_key]
        return self._rows_arrow(statement, params, SPECIFIED_SCHEMA, "read specified meters")
