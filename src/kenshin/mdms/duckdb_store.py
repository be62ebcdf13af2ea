"""The embedded store: one DuckDB file, appended to from Arrow.

Measured on 2-core machines (ARCHITECTURE "Storage"): appends from Arrow run at millions of rows a
second, while a PRIMARY KEY makes loading several times slower, so the tables have no key: a
version is identified by (meter, channel, resolution, interval_end, tx_time), and "current" is the
latest tx_time. DuckDB connections are not thread-safe, so each thread works on its own cursor.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from kenshin.core.channels import Channel
from kenshin.core.schema import METERS_SCHEMA
from kenshin.core.timeslots import Resolution
from kenshin.errors import StoreError
from kenshin.mdms.store import CounterState, ReadingQuery

_DDL = """
CREATE TABLE IF NOT EXISTS meters (
    meter_key INTEGER, supply_point_id VARCHAR, device_id BIGINT, area UTINYINT,
    customer_type UTINYINT, meter_class UTINYINT, generation UTINYINT, contract_a SMALLINT,
    contract_kw FLOAT,
    pv_kw FLOAT, unit_exponent TINYINT, coefficient INTEGER, substation INTEGER, feeder INTEGER,
    transformer INTEGER, sampled_5min BOOLEAN, realtime_5min BOOLEAN
);
CREATE TABLE IF NOT EXISTS readings (
    meter_key INTEGER, channel UTINYINT, resolution UTINYINT, interval_end TIMESTAMPTZ,
    value INTEGER, quality UTINYINT, source UTINYINT, method UTINYINT, tx_time TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS register_reads (
    meter_key INTEGER, channel UTINYINT, read_at TIMESTAMPTZ, register INTEGER,
    source UTINYINT, tx_time TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR);
CREATE TABLE IF NOT EXISTS frame_counters (
    meter_key INTEGER PRIMARY KEY, last BIGINT, bitmap UBIGINT
);
"""

_METER_COLUMNS = (
    "meter_key, supply_point_id, device_id, area, customer_type, meter_class, generation, "
    "contract_a, contract_kw, pv_kw, unit_exponent, coefficient, substation, feeder, transformer, "
    "sampled_5min, realtime_5min"
)


class DuckDBStore:
    """Readings in a DuckDB file (or ``":memory:"``)."""

    def __init__(
        self, path: str | Path = ":memory:", *, read_only: bool = False, threads: int | None = None
    ) -> None:
        self.path = str(path)
        try:
            self._con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            raise StoreError(f"cannot open DuckDB store {self.path}: {exc}") from exc
        except duckdb.Error as exc:
            raise StoreError(f"cannot open DuckDB store {self.path}: {exc}") from exc
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        # arrival order carries no meaning for long rows; dropping it speeds up appends
        self._con.execute("SET preserve_insertion_order = false")
        if not read_only:
            self._con.execute(_DDL)
        self._local = threading.local()
        self._write_lock = threading.Lock()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
        return cur

    def _arrow(self, sql: str, params: list[Any] | dict[str, Any]) -> pa.Table:
        try:
            return self._cursor().sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(f"query on {self.path} failed: {exc}") from exc

    def write_meters(self, meters: pa.Table) -> None:
        cur = self._cursor()
        with self._write_lock:
            cur.execute("BEGIN")
            cur.execute("DELETE FROM meters")
            cur.register("incoming_meters", meters)
            cur.execute(f"INSERT INTO meters SELECT {_METER_COLUMNS} FROM incoming_meters")
            cur.unregister("incoming_meters")
            cur.execute("COMMIT")

    def append(
        self, readings: pa.Table, registers: pa.Table, counters: CounterState | None = None
    ) -> None:
        """Append values, and the head-end's replay windows that let them in, atomically."""
        cur = self._cursor()
        with self._write_lock:
            try:
                cur.execute("BEGIN")
                if counters is not None and len(counters[0]):
                    keys, last, bitmap = counters
                    cur.register(
                        "incoming_counters",
                        pa.table(
                            {"meter_key": keys.astype(np.int32), "last": last, "bitmap": bitmap}
                        ),
                    )
                    cur.execute(
                        "INSERT OR REPLACE INTO frame_counters SELECT * FROM incoming_counters"
                    )
                    cur.unregister("incoming_counters")
                if readings.num_rows:
                    cur.register("incoming_readings", readings)
                    cur.execute("INSERT INTO readings SELECT * FROM incoming_readings")
                    cur.unregister("incoming_readings")
                if registers.num_rows:
                    cur.register("incoming_registers", registers)
                    cur.execute("INSERT INTO register_reads SELECT * FROM incoming_registers")
                    cur.unregister("incoming_registers")
                cur.execute("COMMIT")
            except duckdb.Error as exc:
                cur.execute("ROLLBACK")
                raise StoreError(f"append to {self.path} failed: {exc}") from exc

    def load_counters(self) -> CounterState:
        """The persisted replay windows: (meter keys, last, bitmap)."""
        table = self._arrow("SELECT meter_key, last, bitmap FROM frame_counters", [])
        return (
            table.column("meter_key").to_numpy().astype(np.int64),
            table.column("last").to_numpy().astype(np.int64),
            table.column("bitmap").to_numpy().astype(np.uint64),
        )

    def read_meters(self) -> pa.Table:
        return self._arrow(f"SELECT {_METER_COLUMNS} FROM meters ORDER BY meter_key", []).cast(
            METERS_SCHEMA
        )

    def meter_count(self) -> int:
        # fetchall: an unfetched result would block the thread's cursor (DuckDB ≥ 2)
        rows = self._cursor().execute("SELECT count(*) FROM meters").fetchall()
        return int(rows[0][0]) if rows else 0

    def list_meters(self, offset: int, limit: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._arrow(
            f"SELECT {_METER_COLUMNS} FROM meters ORDER BY meter_key LIMIT ? OFFSET ?",
            [limit, offset],
        ).to_pylist()
        return rows

    def find_meter(self, supply_point_id: str) -> dict[str, Any] | None:
        rows = self._arrow(
            f"SELECT {_METER_COLUMNS} FROM meters WHERE supply_point_id = ?", [supply_point_id]
        ).to_pylist()
        return rows[0] if rows else None

    def read(self, query: ReadingQuery) -> pa.Table:
        as_of = "AND epoch_us(tx_time) <= $as_of" if query.as_of_us is not None else ""
        params: dict[str, Any] = {
            "meter": query.meter_key,
            "channel": int(query.channel),
            "resolution": int(query.resolution),
            "start": query.start_us,
            "end": query.end_us,
        }
        if query.as_of_us is not None:
            params["as_of"] = query.as_of_us
        sql = f"""
            SELECT interval_end, value, quality, source, method, tx_time
            FROM readings
            WHERE meter_key = $meter AND channel = $channel AND resolution = $resolution
              AND interval_end > make_timestamptz($start) AND interval_end <= make_timestamptz($end)
              {as_of}
            QUALIFY row_number() OVER (PARTITION BY interval_end ORDER BY tx_time DESC) = 1
            ORDER BY interval_end
        """
        return self._arrow(sql, params)

    def latest_interval_end(
        self, meter_key: int, channel: Channel, resolution: Resolution
    ) -> int | None:
        rows = (
            self._cursor()
            .execute(
                "SELECT epoch_us(max(interval_end)) FROM readings "
                "WHERE meter_key = ? AND channel = ? AND resolution = ?",
                [meter_key, int(channel), int(resolution)],
            )
            .fetchall()
        )
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def reading_counts(self) -> dict[int, int]:
        rows = (
            self._cursor()
            .execute(
                "SELECT resolution, count(*) FROM readings GROUP BY resolution ORDER BY resolution"
            )
            .fetchall()
        )
        return {int(r): int(c) for r, c in rows}

    def set_meta(self, key: str, value: str) -> None:
        cur = self._cursor()
        with self._write_lock:
            cur.execute("DELETE FROM meta WHERE key = ?", [key])
            cur.execute("INSERT INTO meta VALUES (?, ?)", [key, value])

    def get_meta(self, key: str) -> str | None:
        rows = self._cursor().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        return str(rows[0][0]) if rows else None

    def checkpoint(self) -> None:
        with self._write_lock:
            self._cursor().execute("CHECKPOINT")

    def close(self) -> None:
        self._con.close()
