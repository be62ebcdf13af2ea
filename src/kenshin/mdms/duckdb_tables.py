"""The DuckDB store's small tables, written whole or appended in one statement: the gap list,
the edit log, meter events, principals, the audit trail, specified sub-meters and the store's
metadata. A mixin of :class:`~kenshin.mdms.duckdb_store.DuckDBStore`, which provides the cursor,
the transactions and the inserts they use."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

import duckdb
import pyarrow as pa

from kenshin.core.channels import Channel
from kenshin.core.schema import AUDIT_SCHEMA, COMMAND_LOG_SCHEMA, EVENTS_SCHEMA, OUTAGES_SCHEMA
from kenshin.core.specified import SPECIFIED_SCHEMA
from kenshin.core.timeslots import Resolution
from kenshin.mdms import versions


class DuckDBTables:
    """The methods; what :class:`DuckDBStore` provides to them is declared below."""

    _write_lock: threading.Lock

    def _transaction(self, what: str) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        raise NotImplementedError

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError

    def _arrow(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pa.Table:
        raise NotImplementedError

    def _has_table(self, name: str) -> bool:
        raise NotImplementedError

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
        raise NotImplementedError

    def read_edits(self, meter_key: int) -> pa.Table:
        table = self._arrow(
            "SELECT * FROM edits WHERE meter_key = ? ORDER BY tx_time, interval_end", [meter_key]
        )
        return versions.conform_to(table, versions.EDITS_SCHEMA)

    def read_events(self, start_us: int, end_us: int, meter_key: int | None = None) -> pa.Table:
        params: list[Any] = [start_us, end_us]
        where = ""
        if meter_key is not None:
            where, params = "AND meter_key = ? ", [*params, meter_key]
        if not self._has_table("meter_events"):  # a read-only store made before events
            return EVENTS_SCHEMA.empty_table()
        table = self._arrow(
            "SELECT * FROM meter_events WHERE epoch_us(occurred) > ? AND epoch_us(occurred) <= ? "
            f"{where}ORDER BY meter_key, occurred, code",
            params,
        )
        return table.cast(EVENTS_SCHEMA)

    def save_principal(self, name: str, document: str) -> None:
        with self._transaction("saving a principal") as cur:
            cur.execute("INSERT OR REPLACE INTO principals VALUES (?, ?)", [name, document])

    def read_principals(self) -> list[tuple[str, str]]:
        if not self._has_table("principals"):  # a read-only store made before principals
            return []
        rows = self._cursor().execute("SELECT name, document FROM principals ORDER BY name")
        return [(str(n), str(d)) for n, d in rows.fetchall()]

    def save_control_record(self, kind: str, record_id: int, document: str) -> None:
        with self._transaction("saving a control record") as cur:
            cur.execute(
                "INSERT OR REPLACE INTO control_records VALUES (?, ?, ?)",
                [kind, record_id, document],
            )

    def read_control_records(self, kind: str) -> list[tuple[int, str]]:
        if not self._has_table("control_records"):  # a read-only store made before them
            return []
        rows = self._cursor().execute(
            "SELECT record_id, document FROM control_records WHERE kind = ? ORDER BY record_id",
            [kind],
        )
        return [(int(i), str(d)) for i, d in rows.fetchall()]

    def append_command_log(self, rows: pa.Table) -> None:
        if rows.num_rows:
            with self._transaction("appending to the command log") as cur:
                self._insert(cur, "command_log", rows.cast(COMMAND_LOG_SCHEMA))

    def read_command_log(self, command_id: int) -> pa.Table:
        if not self._has_table("command_log"):
            return COMMAND_LOG_SCHEMA.empty_table()
        table = self._arrow(
            "SELECT * FROM command_log WHERE command_id = ? ORDER BY changed_at", [command_id]
        )
        return table.cast(COMMAND_LOG_SCHEMA)

    def append_audit(self, rows: pa.Table) -> None:
        if rows.num_rows:
            with self._transaction("appending to the audit trail") as cur:
                self._insert(cur, "audit", rows.cast(AUDIT_SCHEMA))

    def read_audit(
        self, start_us: int, end_us: int, principal: str | None = None, limit: int = 10_000
    ) -> pa.Table:
        if not self._has_table("audit"):
            return AUDIT_SCHEMA.empty_table()
        params: list[Any] = [start_us, end_us]
        where = ""
        if principal is not None:
            where, params = "AND principal = ? ", [*params, principal]
        table = self._arrow(
            "SELECT * FROM audit WHERE epoch_us(logged_at) > ? AND epoch_us(logged_at) <= ? "
            f"{where}ORDER BY logged_at LIMIT {int(limit)}",
            params,
        )
        return table.cast(AUDIT_SCHEMA)

    def replace_gaps(
        self, channel: Channel, resolution: Resolution, start_us: int, end_us: int, gaps: pa.Table
    ) -> None:
        """The gap list of a window (interval ends in ``(start, end]``) is replaced whole."""
        with self._transaction("storing gaps") as cur:
            cur.execute(
                "DELETE FROM gaps WHERE channel = ? AND resolution = ? "
                "AND epoch_us(interval_end) > ? AND epoch_us(interval_end) <= ?",
                [int(channel), int(resolution), start_us, end_us],
            )
            if gaps.num_rows:
                self._insert(cur, "gaps", versions.conform_to(gaps, versions.GAPS_SCHEMA))

    def read_gaps(self, meter_key: int | None = None) -> pa.Table:
        where = "" if meter_key is None else f"WHERE meter_key = {int(meter_key)}"
        table = self._arrow(
            f"SELECT * FROM gaps {where} ORDER BY meter_key, channel, resolution, interval_end"
        )
        return versions.conform_to(table, versions.GAPS_SCHEMA)

    def set_meta(self, key: str, value: str) -> None:
        cur = self._cursor()
        with self._write_lock:
            cur.execute("DELETE FROM meta WHERE key = ?", [key])
            cur.execute("INSERT INTO meta VALUES (?, ?)", [key, value])

    def get_meta(self, key: str) -> str | None:
        rows = self._cursor().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        return str(rows[0][0]) if rows else None

    def write_specified(self, table: pa.Table) -> None:
        """Replace the roster of specified sub-meters (``SPECIFIED_SCHEMA``)."""
        with self._transaction("writing specified meters") as cur:
            cur.execute("DELETE FROM specified_meters")
            self._insert(cur, "specified_meters", versions.conform_to(table, SPECIFIED_SCHEMA))

    def read_specified(self, parent_key: int | None = None) -> pa.Table:
        """The specified sub-meters (of one parent meter), by parent and meter key."""
        if not self._has_table("specified_meters"):  # a read-only store from before SPEC S3
            return SPECIFIED_SCHEMA.empty_table()
        where = "" if parent_key is None else f"WHERE parent_key = {int(parent_key)}"
        table = self._arrow(
            "SELECT meter_key, parent_key, kind, device_id FROM specified_meters "
            f"{where} ORDER BY parent_key, meter_key"
        )
        return versions.conform_to(table, SPECIFIED_SCHEMA)

    def save_outages(self, rows: pa.Table) -> None:
        if rows.num_rows:
            with self._transaction("saving outage events") as cur:
                self._insert(cur, "outages", rows.cast(OUTAGES_SCHEMA), replace=True)

    def read_outages(self, start_us: int, end_us: int) -> pa.Table:
        if not self._has_table("outages"):
            return OUTAGES_SCHEMA.empty_table()
        table = self._arrow(
            "SELECT * FROM outages WHERE (epoch_us(started) > ? AND epoch_us(started) <= ?) "
            "OR state <> 'restored' ORDER BY event_id",
            [start_us, end_us],
        )
        return table.cast(OUTAGES_SCHEMA)
