"""The reads of the PostgreSQL store (:class:`kenshin.mdms.postgres_store.PostgresStore`).

One meter's versions come back as binary arrays (``array_send``, the small columns packed into
one bigint) that numpy decodes at once: a COPY sends a message per row and a plain SELECT builds
a Python object per value, each costing more than the query. Fleet-wide windows are plain scans
whose reading rule runs in numpy (``kenshin.mdms.versions``, shared with DuckDB through
:class:`kenshin.mdms.storebase.StoreBase`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from kenshin.core.channels import Channel
from kenshin.core.schema import (
    AUDIT_SCHEMA,
    COMMAND_LOG_SCHEMA,
    EVENTS_SCHEMA,
    METERS_SCHEMA,
    OUTAGES_SCHEMA,
    READINGS_SCHEMA,
)
from kenshin.core.specified import SPECIFIED_SCHEMA
from kenshin.core.timeslots import Resolution
from kenshin.mdms import versions
from kenshin.mdms.pgcopy import PG_EPOCH_US
from kenshin.mdms.postgres_schema import METER_COLUMNS
from kenshin.mdms.store import MeterRange, ReadingQuery, meter_range_sql
from kenshin.mdms.storebase import StoreBase
from kenshin.postgres import store_error

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

METER_NAMES = [c.name for c in METER_COLUMNS]
CONTENT_COLUMNS = ", ".join(versions.CONTENT)


def array_values(data: bytes | None, wire: str) -> npt.NDArray[Any]:
    """The elements of a one-dimensional array without NULLs in PostgreSQL's binary format
    (``array_send``): a 20-byte header, then a 4-byte length and the value per element."""
    if not data:
        return np.zeros(0, dtype=wire)
    element = np.dtype([("length", ">i4"), ("value", wire)])
    return np.frombuffer(data, element, offset=20)["value"]


US_COLUMN = "(extract(epoch FROM {0}) * 1000000)::bigint AS {0}"


def to_datetime(epoch_us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=int(epoch_us))


def to_epoch_us(moment: dt.datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class PostgresReads(StoreBase):
    """Reads over a store's connections; :class:`PostgresStore` supplies them."""

    schema: str
    _texts: dict[str, str]

    @property
    def target(self) -> str:
        raise NotImplementedError

    def _conn(self) -> psycopg.Connection[Any]:
        raise NotImplementedError

    def _table(self, name: str) -> sql.Composed:
        raise NotImplementedError

    def read_meters(self) -> pa.Table:
        """The whole roster (``METERS_SCHEMA``) by meter key, in one COPY parsed by Arrow."""
        copy_out = "COPY (SELECT {} FROM {} ORDER BY meter_key) TO STDOUT (FORMAT csv)"
        statement = sql.SQL(copy_out).format(
            sql.SQL(", ").join(sql.Identifier(n) for n in METER_NAMES), self._table("meters")
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
            raise store_error(f"reading meters from {self.target} failed", exc) from exc
        if not data:
            return METERS_SCHEMA.empty_table()
        return pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(data)),
            read_options=pacsv.ReadOptions(column_names=METER_NAMES),
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

    def _fetch(self, query: Any, params: Sequence[Any], what: str) -> list[tuple[Any, ...]]:
        try:
            with self._conn().cursor(binary=True) as cur:
                cur.execute(query, params)
                return cur.fetchall()
        except psycopg.Error as exc:
            raise store_error(f"{what} on {self.target} failed", exc) from exc

    def _execute(self, query: Any, params: Sequence[Any], what: str) -> None:
        try:
            self._conn().execute(query, params)
        except psycopg.Error as exc:
            raise store_error(f"{what} on {self.target} failed", exc) from exc

    def meter_count(self) -> int:
        rows = self._fetch(
            sql.SQL("SELECT count(*) FROM {}").format(self._table("meters")), [], "meter_count"
        )
        return int(rows[0][0]) if rows else 0

    def _meters(self, where: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        query = sql.SQL("SELECT {} FROM {} " + where).format(
            sql.SQL(", ").join(sql.Identifier(n) for n in METER_NAMES), self._table("meters")
        )
        rows = self._fetch(query, params, "meter lookup")
        return [dict(zip(METER_NAMES, row, strict=True)) for row in rows]

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
            to_datetime(query.start_us),
            to_datetime(query.end_us),
        ]
        if query.as_of_us is not None:
            where += " AND tx_time <= %s"
            params.append(to_datetime(query.as_of_us))
        return where, params

    def _current_sql(self, where: str, partition: str = "interval_end") -> sql.Composed:
        """The versioning rule of :mod:`kenshin.mdms.versions` in PostgreSQL: repeats removed by
        DISTINCT ON the content, then the latest version per cell."""
        return sql.SQL(
            "SELECT DISTINCT ON ("
            + partition
            + ") meter_key, "
            + US_COLUMN.format("interval_end")
            + ", "
            "value, quality, source, method, failed_rule, " + US_COLUMN.format("tx_time") + ", "
            "count(*) OVER (PARTITION BY " + partition + ") AS version "
            "FROM (SELECT DISTINCT ON (" + partition + ", " + CONTENT_COLUMNS + ") * FROM {} "
            "WHERE "
            + where
            + " ORDER BY "
            + partition
            + ", "
            + CONTENT_COLUMNS
            + ", tx_time, source, "
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

    def _hot_versions(self, query: ReadingQuery) -> pa.Table:
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
            array_values(packed[0], ">i8"),
            array_values(packed[1], ">i4"),
            array_values(packed[2], ">i8").astype(np.int64),
            array_values(packed[3], ">i8"),
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
            to_datetime(start_us),
            to_datetime(end_us),
        ]
        if as_of_us is not None:
            where += " AND tx_time <= %s"
            params.append(to_datetime(as_of_us))
        return self._rows_arrow(
            self._current_sql(where, "meter_key, interval_end"),
            params,
            versions.WINDOW_SCHEMA,
            "read window",
        )

    def _hot_window_versions(
        self,
        channel: Channel,
        resolution: Resolution,
        start_us: int,
        end_us: int,
        meters: MeterRange | None = None,
        keys: npt.NDArray[np.int32] | None = None,
    ) -> pa.Table:
        """Every version row of every meter's cells in ``(start, end]``, unordered (see
        ``StoreBase.read_window_versions``); ``keys`` go as one int4 array (``= ANY``)."""
        window = [to_datetime(start_us), to_datetime(end_us)]
        params: list[Any] = [int(channel), int(resolution), *window]
        wanted = ""
        if keys is not None:
            wanted = " AND meter_key = ANY(%s::int4[])"
            params.append(keys.astype(np.int64).tolist())
        statement = sql.SQL(
            "SELECT meter_key, "
            + US_COLUMN.format("interval_end")
            + ", value, quality, source, method, failed_rule, "
            + US_COLUMN.format("tx_time")
            + " FROM {} WHERE channel = %s AND resolution = %s AND interval_end > %s "
            "AND interval_end <= %s" + meter_range_sql(meters) + wanted
        ).format(self._table("readings"))
        return self._rows_arrow(
            statement, params, versions.VERSION_ROWS_SCHEMA, "read window versions"
        )

    def read_cell_versions(
        self,
        channel: Channel,
        resolution: Resolution,
        meter_keys: npt.NDArray[np.int32],
        interval_ends_us: npt.NDArray[np.int64],
    ) -> pa.Table:
        """Every version row of exactly the cells named, unordered (see
        ``DuckDBStore.read_cell_versions``): the named cells as two arrays, joined through the
        point index; the window around them prunes the month partitions."""
        if not len(meter_keys):
            return versions.empty(versions.VERSION_ROWS_SCHEMA)
        first, last = int(interval_ends_us.min()), int(interval_ends_us.max())
        statement = sql.SQL(
            "SELECT meter_key, "
            + US_COLUMN.format("interval_end")
            + ", value, quality, source, method, failed_rule, "
            + US_COLUMN.format("tx_time")
            + " FROM {} r JOIN (SELECT m, TIMESTAMPTZ 'epoch' + e * INTERVAL '1 microsecond' AS e"
            " FROM unnest(%s::int4[], %s::int8[]) AS c(m, e)) c"
            " ON r.meter_key = c.m AND r.interval_end = c.e"
            " WHERE r.channel = %s AND r.resolution = %s"
            " AND r.interval_end >= %s AND r.interval_end <= %s"
        ).format(self._table("readings"))
        return self._rows_arrow(
            statement,
            [
                meter_keys.astype(np.int64).tolist(),
                interval_ends_us.astype(np.int64).tolist(),
                int(channel),
                int(resolution),
                to_datetime(first),
                to_datetime(last),
            ],
            versions.VERSION_ROWS_SCHEMA,
            "read cell versions",
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

    def _hot_register_rows(
        self, channel: Channel, start_us: int, end_us: int, meters: MeterRange | None
    ) -> pa.Table:
        statement = sql.SQL(
            "SELECT meter_key, "
            + US_COLUMN.format("read_at")
            + ", register, source, "
            + US_COLUMN.format("tx_time")
            + " FROM {} WHERE channel = %s AND read_at >= %s AND read_at <= %s"
            + meter_range_sql(meters)
        ).format(self._table("register_reads"))
        return self._rows_arrow(
            statement,
            [int(channel), to_datetime(start_us), to_datetime(end_us)],
            versions.REGISTER_ROWS_SCHEMA,
            "read register rows",
        )

    def read_register_window(self, channel: Channel, start_us: int, end_us: int) -> pa.Table:
        """The latest register read of every meter at each instant in ``[start, end]``."""
        statement = sql.SQL(
            "SELECT DISTINCT ON (meter_key, read_at) meter_key, "
            + US_COLUMN.format("read_at")
            + ", "
            "register, source FROM {} WHERE channel = %s AND read_at >= %s AND read_at <= %s "
            "ORDER BY meter_key, read_at, tx_time DESC, source DESC, register DESC NULLS LAST"
        ).format(self._table("register_reads"))
        return self._rows_arrow(
            statement,
            [int(channel), to_datetime(start_us), to_datetime(end_us)],
            versions.REGISTER_WINDOW_SCHEMA,
            "read register window",
        )

    def read_edits(self, meter_key: int) -> pa.Table:
        names = [f.name for f in versions.EDITS_SCHEMA]
        select = ", ".join(
            US_COLUMN.format(n) if pa.types.is_timestamp(versions.EDITS_SCHEMA.field(n).type) else n
            for n in names
        )
        statement = sql.SQL(
            "SELECT " + select + " FROM {} WHERE meter_key = %s ORDER BY tx_time, interval_end"
        ).format(self._table("edits"))
        return self._rows_arrow(statement, [meter_key], versions.EDITS_SCHEMA, "read edits")

    def read_events(self, start_us: int, end_us: int, meter_key: int | None = None) -> pa.Table:
        params: list[Any] = [to_datetime(start_us), to_datetime(end_us)]
        where = ""
        if meter_key is not None:
            where, params = "AND meter_key = %s ", [*params, meter_key]
        statement = sql.SQL(
            "SELECT meter_key, code, "
            + US_COLUMN.format("occurred")
            + ", detail, "
            + US_COLUMN.format("tx_time")
            + " FROM {} WHERE occurred > %s AND occurred <= %s "
            + where
            + "ORDER BY meter_key, occurred, code"
        ).format(self._table("meter_events"))
        return self._rows_arrow(statement, params, EVENTS_SCHEMA, "read events")

    def read_principals(self) -> list[tuple[str, str]]:
        rows = self._fetch(
            sql.SQL("SELECT name, document FROM {} ORDER BY name").format(
                self._table("principals")
            ),
            [],
            "read principals",
        )
        return [(str(n), str(d)) for n, d in rows]

    def read_command_log(self, command_id: int) -> pa.Table:
        columns = ", ".join(
            US_COLUMN.format(f.name) if f.name == "changed_at" else f.name
            for f in COMMAND_LOG_SCHEMA
        )
        statement = sql.SQL(
            "SELECT " + columns + " FROM {} WHERE command_id = %s ORDER BY changed_at"
        ).format(self._table("command_log"))
        return self._rows_arrow(statement, [command_id], COMMAND_LOG_SCHEMA, "read the command log")

    def read_control_records(self, kind: str) -> list[tuple[int, str]]:
        rows = self._fetch(
            sql.SQL("SELECT record_id, document FROM {} WHERE kind = %s ORDER BY record_id").format(
                self._table("control_records")
            ),
            [kind],
            "read control records",
        )
        return [(int(i), str(d)) for i, d in rows]

    def read_audit(
        self, start_us: int, end_us: int, principal: str | None = None, limit: int = 10_000
    ) -> pa.Table:
        params: list[Any] = [to_datetime(start_us), to_datetime(end_us)]
        where = ""
        if principal is not None:
            where, params = "AND principal = %s ", [*params, principal]
        statement = sql.SQL(
            "SELECT "
            + US_COLUMN.format("logged_at")
            + ", principal, method, route, path, meters, status, reason, remote FROM {} "
            + "WHERE logged_at > %s AND logged_at <= %s "
            + where
            + f"ORDER BY logged_at LIMIT {int(limit)}"
        ).format(self._table("audit"))
        return self._rows_arrow(statement, params, AUDIT_SCHEMA, "read the audit trail")

    def read_outages(self, start_us: int, end_us: int) -> pa.Table:
        times = ("started", "confirmed", "restored")
        select = ", ".join(
            US_COLUMN.format(f.name) if f.name in times else f.name for f in OUTAGES_SCHEMA
        )
        statement = sql.SQL(
            "SELECT " + select + " FROM {} WHERE (started > %s AND started <= %s) "
            "OR state <> 'restored' ORDER BY event_id"
        ).format(self._table("outages"))
        params = [to_datetime(start_us), to_datetime(end_us)]
        return self._rows_arrow(statement, params, OUTAGES_SCHEMA, "read outage events")

    def read_gaps(self, meter_key: int | None = None) -> pa.Table:
        where = "" if meter_key is None else "WHERE meter_key = %s"
        statement = sql.SQL(
            "SELECT meter_key, channel, resolution, "
            + US_COLUMN.format("interval_end")
            + ", "
            + US_COLUMN.format("found_at")
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
        return None if not rows or rows[0][0] is None else to_epoch_us(rows[0][0])

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
