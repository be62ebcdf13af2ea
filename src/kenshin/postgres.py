"""Small helpers shared by kenshin's PostgreSQL adapters (the MDMS store, the replay guard)."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict


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
