"""The audit trail (issue 14 item 4; SPEC X3, X5 ⑤): every request and every refusal, who,
what, which meters, the result and the time, appended and never changed.

Rows are buffered and written in one append by a writer thread every :data:`FLUSH_S` seconds
(sooner when :data:`FLUSH_ROWS` are waiting; at once when the trail is read or the app stops), so
a request never waits for the store. The sink is the store's audit log
(``kenshin.mdms.store.AuditLog``) or, for a store opened read-only, memory.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

import numpy as np
import pyarrow as pa

from kenshin.core.batches import timestamps
from kenshin.core.schema import AUDIT_SCHEMA

log = logging.getLogger("kenshin.security.audit")

FLUSH_S = 1.0
FLUSH_ROWS = 5_000


class AuditSink(Protocol):
    def append_audit(self, rows: pa.Table) -> None: ...

    def read_audit(
        self, start_us: int, end_us: int, principal: str | None = None, limit: int = 10_000
    ) -> pa.Table: ...


class MemoryAuditSink:
    """The trail in memory: for a store that cannot be written (``kenshin serve``) and tests."""

    def __init__(self) -> None:
        self._tables: list[pa.Table] = []

    def append_audit(self, rows: pa.Table) -> None:
        self._tables.append(rows)

    def read_audit(
        self, start_us: int, end_us: int, principal: str | None = None, limit: int = 10_000
    ) -> pa.Table:
        table = pa.concat_tables([AUDIT_SCHEMA.empty_table(), *self._tables])
        at = np.asarray(table.column("logged_at").cast(pa.int64()).to_numpy(False), np.int64)
        keep = (at > start_us) & (at <= end_us)
        if principal is not None:
            keep &= np.asarray(table.column("principal").to_pylist(), object) == principal
        return table.filter(pa.array(keep)).slice(0, limit)


Row = tuple[int, str, str, str, str, str, int, str, str]


class AuditTrail:
    def __init__(self, sink: AuditSink) -> None:
        self.sink = sink
        self._rows: list[Row] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.written = 0
        self.failing = False  # the last append failed: said once, until one succeeds
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None

    def _start_writer(self) -> None:
        def loop() -> None:
            while True:
                self._wake.wait(FLUSH_S)
                self._wake.clear()
                self.flush()

        self._writer = threading.Thread(target=loop, name="kenshin-audit", daemon=True)
        self._writer.start()

    def record(
        self,
        at_us: int,
        principal: str,
        method: str,
        route: str,
        path: str,
        meters: str,
        status: int,
        reason: str = "",
        remote: str = "",
    ) -> None:
        row = (at_us, principal, method, route, path, meters, status, reason, remote)
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= FLUSH_ROWS
            if self._writer is None:
                self._start_writer()
        if full:
            self._wake.set()

    def flush(self) -> None:
        """Write what is waiting, in one append (rows that cannot be written are logged and
        kept for the next flush)."""
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return
            columns = list(zip(*rows, strict=True))
            table = pa.Table.from_arrays(
                [
                    timestamps(np.asarray(columns[0], np.int64)),
                    *(pa.array(c, pa.string()) for c in columns[1:6]),
                    pa.array(np.asarray(columns[6], np.int16)),
                    pa.array(columns[7], pa.string()),
                    pa.array(columns[8], pa.string()),
                ],
                schema=AUDIT_SCHEMA,
            )
            try:
                self.sink.append_audit(table)
            except Exception as exc:  # the store is away: keep the rows, say so once
                if not self.failing:
                    log.error(
                        "audit trail not written (%d rows kept for later): %s", len(rows), exc
                    )
                self.failing = True
                with self._lock:
                    self._rows = rows + self._rows
                return
            if self.failing:
                log.warning("audit trail written again (%d rows)", len(rows))
            self.failing = False
            self.written += len(rows)

    def read(
        self, start_us: int, end_us: int, principal: str | None = None, limit: int = 10_000
    ) -> pa.Table:
        self.flush()
        return self.sink.read_audit(start_us, end_us, principal, limit)
