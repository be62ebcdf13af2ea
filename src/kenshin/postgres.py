"""Small helpers shared by kenshin's PostgreSQL adapters (the MDMS store, the replay guard)."""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from kenshin.errors import StoreError, StoreUnavailable
from kenshin.secrecy import MASK, redact

IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
LOCK_CLASS = 0x6B656E  # "ken": advisory lock class of kenshin's DDL


def store_error(message: str, exc: psycopg.Error) -> StoreError:
    """``message: cause`` in one line (libpq's own errors span several), passwords masked; a
    :class:`StoreUnavailable` when the server could not be reached or the connection was lost
    (``OperationalError``: refused, reset, shut down by the administrator), so a worker can
    wait and retry instead of giving up."""
    cause = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    kind = StoreUnavailable if isinstance(exc, psycopg.OperationalError) else StoreError
    return kind(f"{message}: {redact(cause)}")


def check_schema(schema: str) -> sql.Identifier:
    """The schema as an identifier; a one-line error unless it is a plain lower-case name."""
    if not IDENT.match(schema):
        raise StoreError(
            f"schema name {schema!r} must be a lower-case SQL identifier (a-z, 0-9, _)"
        )
    return sql.Identifier(schema)


def connect(
    dsn: str,
    *,
    application_name: str,
    connect_timeout: int = 10,
    read_only: bool = False,
) -> psycopg.Connection[Any]:
    """An autocommit connection (UTF-8 text), every failure a one-line :class:`StoreError`."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise StoreError(f"invalid PostgreSQL DSN: {redact(str(exc).strip())}") from exc
    params.setdefault("connect_timeout", connect_timeout)
    params.setdefault("application_name", application_name)
    params["client_encoding"] = "utf8"  # text columns go on the wire as UTF-8
    try:
        conn = psycopg.connect(make_conninfo("", **params), autocommit=True)
    except psycopg.Error as exc:
        raise store_error(f"cannot connect to PostgreSQL at {describe_dsn(dsn)}", exc) from exc
    if read_only:
        try:
            conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(
                f"cannot connect to PostgreSQL at {describe_dsn(dsn)}: {redact(str(exc))}"
            ) from exc
    return conn


def ddl_lock(conn: psycopg.Connection[Any], schema: str) -> None:
    """Serialize DDL on ``schema`` between processes until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [LOCK_CLASS, schema])


class ThreadConnections:
    """One connection per thread, opened on first use; connections of threads that have ended
    are closed when the next one opens (psycopg connections are not for sharing between
    threads running queries at once)."""

    def __init__(self, dsn: str, *, application_name: str, connect_timeout: int, read_only: bool):
        self._dsn = dsn
        self._application_name = application_name
        self._connect_timeout = connect_timeout
        self._read_only = read_only
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[weakref.ref[threading.Thread], psycopg.Connection[Any]]] = []
        self.closed = False

    def get(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        conn = connect(
            self._dsn,
            application_name=self._application_name,
            connect_timeout=self._connect_timeout,
            read_only=self._read_only,
        )
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

    def close(self) -> None:
        with self._lock:
            self.closed = True
            connections, self._connections = self._connections, []
        for _, conn in connections:
            conn.close()


def describe_dsn(dsn: str) -> str:
    """``postgresql://user:***@host:port/dbname``, the password masked, for messages (X3)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "an unparsable DSN"
    password = f":{MASK}" if params.get("password") else ""
    user = f"{params.get('user', '')}{password}@" if params.get("user") or password else ""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname', '')}"


def missing_tables(
    dsn: str, schema: str, tables: Sequence[str], *, connect_timeout: int = 10
) -> list[str]:
    """The tables among ``tables`` that ``schema`` does not hold (all of them when the schema
    does not exist). Creates nothing."""
    try:
        with psycopg.connect(dsn, connect_timeout=connect_timeout, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = ANY(%s)",
                [schema, list(tables)],
            ).fetchall()
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot connect to PostgreSQL at {describe_dsn(dsn)}: {redact(str(exc))}"
        ) from exc
    found = {row[0] for row in rows}
    return [name for name in tables if name not in found]
