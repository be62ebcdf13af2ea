"""Replay protection shared by several head-end workers: the window state lives in PostgreSQL.

Table ``<schema>.frame_counters(meter_key int PRIMARY KEY, last bigint, bitmap bigint)``, one row
per meter that has sent anything (a missing row means ``last = -1``, nothing seen). Each
:meth:`PostgresReplayGuard.admit` is one transaction:

1. insert the rows of the batch's meters that are missing (``ON CONFLICT DO NOTHING``, key order);
2. ``SELECT … ORDER BY meter_key FOR UPDATE``: lock the batch's rows, always in key order, so
   two workers with overlapping batches wait for each other instead of deadlocking;
3. judge the frames with :func:`kenshin.aroute.replay.admit_batch` (the same pure window rule as
   :class:`~kenshin.aroute.replay.MemoryReplayGuard`);
4. write back the rows that changed with one ``UPDATE … FROM unnest(…)`` and commit.

A head-end worker runs the guard in ``hold`` mode on its store's connection (``connection=``): the
admission transaction stays open while the values are written (the store's own transaction
becomes a savepoint inside it) and one ``COMMIT`` makes the values and the windows final
together. Killed before it, neither is; after it, both are, so a redelivered frame is either
admitted afresh or recognised, never stored twice and never lost.

While one worker holds a meter's row, another worker's frames of that meter wait, so a counter
that reaches two workers at once is admitted exactly once. ``bitmap`` is a uint64 in numpy and a
(signed) bigint in PostgreSQL: it crosses over as the same 64 bits (``view``), never by value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from kenshin.aroute.replay import NOTHING_SEEN, BoolArray, Int64Array, UInt64Array, admit_batch
from kenshin.core.batches import CounterState
from kenshin.errors import StoreError
from kenshin.postgres import check_schema, connect, ddl_lock, describe_dsn, store_error

_RETRIES = 3  # deadlocks cannot happen with key-ordered locks; a retry covers the unexpected
_KNOWN_KEYS_MAX = 1 << 26  # remember which rows exist for keys below this (a bool per key)


def _array(values: npt.NDArray[np.int64]) -> str:
    """An integer array literal (``{1,2,3}``) for a ``%s::bigint[]`` parameter: one string, not
    a Python object per element for psycopg to adapt (measured: the adaptation cost more than
    the database's work for 100 k meters)."""
    return "{" + ",".join(map(str, values.tolist())) + "}"


def counters_table_ddl(schema: str) -> sql.Composed:
    """The one definition of the replay-window table: this guard creates it, and so does the
    MDMS store, which commits a single worker's windows with its values (``CounterState``)."""
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {}.frame_counters (meter_key integer PRIMARY KEY, "
        "last bigint NOT NULL, bitmap bigint NOT NULL) "
        # room on each page: the updates stay HOT (no index writes)
        "WITH (fillfactor = 50)"
    ).format(sql.Identifier(schema))


class _StaleCache(Exception):
    """Rows the guard believed to exist are gone; the transaction rolls back and is retried."""


class PostgresReplayGuard:
    """A :class:`~kenshin.aroute.replay.ReplayGuard` whose state is shared through PostgreSQL.

    ``dsn``: a libpq connection string or URI (``postgresql://postgres@127.0.0.1:5432/test``);
    the table is created in ``schema`` if missing. One connection, used by one thread at a time
    (calls from several threads take turns); run one guard per worker process. ``connection``:
    use this (the store's, for the calling thread) instead of opening one, so held admissions
    commit in the same transaction as the values (see the module docstring).
    """

    def __init__(
        self,
        dsn: str,
        schema: str = "kenshin",
        *,
        connect_timeout: int = 10,
        hold: bool = False,
        connection: Callable[[], psycopg.Connection[Any]] | None = None,
    ) -> None:
        self._s = check_schema(schema)
        self.dsn = dsn
        self.schema = schema
        self.target = f"{describe_dsn(dsn)} (schema {schema})"
        self._table = sql.SQL("{}.frame_counters").format(self._s)
        self._lock = threading.Lock()
        self._known = np.zeros(0, dtype=bool)  # rows known to exist, by meter key
        # hold=True: admissions stay in an open transaction (rows locked) until commit(), so a
        # worker commits them only once the values they let in are stored (see commit())
        self.hold = hold
        self._open = False
        self._own: psycopg.Connection[Any] | None = None
        self._connect_timeout = connect_timeout
        if connection is None:
            connection = self._own_connection
        self._connection = connection
        try:
            conn = self._connection()
            with conn.transaction():
                ddl_lock(conn, schema)
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._s))
                conn.execute(counters_table_ddl(schema))
        except psycopg.Error as exc:
            self.close()
            raise store_error(f"cannot set up the replay table in {self.target}", exc) from exc

    def _own_connection(self) -> psycopg.Connection[Any]:
        """The guard's own connection, opened again after it was lost (a server restart)."""
        if self._own is None or self._own.closed or self._own.broken:
            self._own = connect(
                self.dsn, application_name="kenshin-replay", connect_timeout=self._connect_timeout
            )
        return self._own

    def __repr__(self) -> str:
        return f"PostgresReplayGuard({self.target})"

    def admit(
        self,
        meter_keys: npt.NDArray[np.int32],
        counters: Int64Array,
        *,
        late: BoolArray | None = None,
    ) -> BoolArray:
        """Admit each frame (in arrival order) at most once, across every guard on the table;
        ``late`` as in :class:`~kenshin.aroute.replay.ReplayGuard`."""
        keys = np.asarray(meter_keys, dtype=np.int64).reshape(-1)
        counts = np.asarray(counters, dtype=np.int64).reshape(-1)
        if keys.shape != counts.shape:
            raise ValueError(f"{len(keys)} meter keys but {len(counts)} counters")
        if late is not None and late.shape != keys.shape:
            raise ValueError(f"late has shape {late.shape}, expected {keys.shape}")
        if keys.size == 0:
            return np.zeros(0, dtype=bool)
        if int(keys.min()) < np.iinfo(np.int32).min or int(keys.max()) > np.iinfo(np.int32).max:
            raise ValueError("meter keys must fit in int32")
        meters, slots = np.unique(keys, return_inverse=True)
        slots = slots.reshape(-1)
        with self._lock:
            for attempt in range(_RETRIES):
                try:
                    return self._admit_once(meters, slots, counts, late)
                except _StaleCache:  # rows this guard saw were deleted (a reset): insert again
                    self._known = np.zeros(0, dtype=bool)
                except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                    if attempt == _RETRIES - 1:
                        raise StoreError(f"replay check on {self.target} kept failing") from None
                except psycopg.Error as exc:
                    raise store_error(f"replay check on {self.target} failed", exc) from exc
        raise StoreError(f"replay table in {self.target} keeps losing rows")

    def staged(self) -> CounterState | None:
        return None  # the windows live in the table, committed by stored()

    def stored(self) -> None:
        if self.hold:
            self.commit()

    def abandon(self) -> None:
        if self.hold:
            self.rollback()

    def commit(self) -> None:
        """Make the held admissions final (after their values are stored)."""
        with self._lock:
            if self._open:
                self._open = False
                try:
                    self._connection().execute("COMMIT")
                except psycopg.Error as exc:
                    raise store_error(f"replay commit on {self.target} failed", exc) from exc

    def rollback(self) -> None:
        """Forget the held admissions: the frames will be admitted again when redelivered.
        A lost connection has rolled them back already (the server ends its transaction)."""
        with self._lock:
            if self._open:
                self._open = False
                self._quiet_rollback()

    def _quiet_rollback(self) -> None:
        # never raises: called on the way out of a failure, whose cause must stay the error
        try:
            conn = self._connection()
            if not conn.closed and not conn.broken:
                conn.execute("ROLLBACK")
        except (psycopg.Error, StoreError):
            pass

    def _admit_once(
        self, meters: Int64Array, slots: Int64Array, counters: Int64Array, late: BoolArray | None
    ) -> BoolArray:
        conn = self._connection()
        if not self.hold:
            with conn.transaction():
                return self._admit_in_transaction(conn, meters, slots, counters, late)
        if not self._open:
            conn.execute("BEGIN")
            self._open = True
        try:
            return self._admit_in_transaction(conn, meters, slots, counters, late)
        except BaseException:
            self._open = False
            self._quiet_rollback()
            raise

    def _admit_in_transaction(
        self,
        conn: psycopg.Connection[Any],
        meters: Int64Array,
        slots: Int64Array,
        counters: Int64Array,
        late: BoolArray | None,
    ) -> BoolArray:
        with conn.cursor() as cur:
            missing = self._unknown(meters)
            if missing.size:
                # sorted: inserts (like the locks below) are taken in key order
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (meter_key, last, bitmap) "
                        "SELECT k, %s, 0 FROM unnest(%s::integer[]) AS k ORDER BY k "
                        "ON CONFLICT (meter_key) DO NOTHING"
                    ).format(self._table),
                    [NOTHING_SEEN, _array(missing)],
                )
            cur.execute(
                sql.SQL(
                    "SELECT meter_key, last, bitmap FROM {} WHERE meter_key = ANY(%s::integer[]) "
                    "ORDER BY meter_key FOR UPDATE"
                ).format(self._table),
                [_array(meters)],
            )
            rows = cur.fetchall()
            if len(rows) != len(meters):
                raise _StaleCache
            state = np.array(rows, dtype=np.int64).reshape(-1, 3)
            if not np.array_equal(state[:, 0], meters):  # pragma: no cover - ORDER BY says so
                raise StoreError(f"replay table in {self.target} returned other meters")
            last: Int64Array = state[:, 1].copy()
            bitmap: UInt64Array = state[:, 2].copy().view(np.uint64)
            admitted = admit_batch(last, bitmap, slots, counters, late)
            signed = bitmap.view(np.int64)
            changed = (last != state[:, 1]) | (signed != state[:, 2])
            if changed.any():
                cur.execute(
                    sql.SQL(
                        "UPDATE {} AS f SET last = u.last, bitmap = u.bitmap "
                        "FROM unnest(%s::integer[], %s::bigint[], %s::bigint[]) "
                        "AS u(meter_key, last, bitmap) WHERE f.meter_key = u.meter_key"
                    ).format(self._table),
                    [_array(meters[changed]), _array(last[changed]), _array(signed[changed])],
                )
        self._remember(meters)
        return admitted

    def _unknown(self, meters: Int64Array) -> Int64Array:
        """The meters whose row this guard has not seen yet (all of them beyond the cache)."""
        cached = (meters >= 0) & (meters < len(self._known))
        known = np.zeros(len(meters), dtype=bool)
        known[cached] = self._known[meters[cached]]
        return meters[~known]

    def _remember(self, meters: Int64Array) -> None:
        inside = meters[(meters >= 0) & (meters < _KNOWN_KEYS_MAX)]
        if inside.size == 0:
            return
        top = int(inside.max()) + 1
        if top > len(self._known):
            grown = np.zeros(max(top, 2 * len(self._known)), dtype=bool)
            grown[: len(self._known)] = self._known
            self._known = grown
        self._known[inside] = True

    def state(self, meter_keys: npt.ArrayLike) -> tuple[Int64Array, UInt64Array]:
        """``(last, bitmap)`` of the given meters as stored now (``-1, 0`` for unseen ones)."""
        keys = np.asarray(meter_keys, dtype=np.int64).reshape(-1)
        with self._lock:
            try:
                rows = (
                    self._connection()
                    .execute(
                        sql.SQL(
                            "SELECT k.meter_key, coalesce(f.last, %s), coalesce(f.bitmap, 0) "
                            "FROM unnest(%s::integer[]) WITH ORDINALITY AS k(meter_key, i) "
                            "LEFT JOIN {} AS f USING (meter_key) ORDER BY k.i"
                        ).format(self._table),
                        [NOTHING_SEEN, _array(keys)],
                    )
                    .fetchall()
                )
            except psycopg.Error as exc:
                raise store_error(f"reading replay state from {self.target} failed", exc) from exc
        state = np.array(rows, dtype=np.int64).reshape(-1, 3)
        return state[:, 1].copy(), state[:, 2].copy().view(np.uint64)

    def close(self) -> None:
        """Close the guard's own connection (a shared one belongs to the store)."""
        if self._own is not None:
            self._own.close()
