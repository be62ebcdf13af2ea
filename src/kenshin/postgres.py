"""Small helpers shared by kenshin's PostgreSQL adapters (the MDMS store, the replay guard)."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg.conninfo import conninfo_to_dict

from kenshin.errors import StoreError


def describe_dsn(dsn: str) -> str:
    """``postgresql://user@host:port/dbname`` without the password, for messages."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "an unparsable DSN"
    user = f"{params['user']}@" if params.get("user") else ""
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
        raise StoreError(f"cannot connect to PostgreSQL at {describe_dsn(dsn)}: {exc}") from exc
    found = {row[0] for row in rows}
    return [name for name in tables if name not in found]
