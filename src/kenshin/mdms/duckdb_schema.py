"""The DuckDB store's tables and the file-system failures it names.

The tables are made from the core's Arrow schemas (as the PostgreSQL store's are,
:mod:`kenshin.mdms.postgres_schema`), so the columns a store holds cannot drift from what the
batches carry; :func:`io_error` turns a write the file system refused into one line.
"""

from __future__ import annotations

import pyarrow as pa

from kenshin.core.schema import (
    AUDIT_SCHEMA,
    COMMAND_LOG_SCHEMA,
    EVENTS_SCHEMA,
    METERS_SCHEMA,
    OUTAGES_SCHEMA,
    READINGS_SCHEMA,
    REGISTER_READS_SCHEMA,
)
from kenshin.core.specified import SPECIFIED_SCHEMA
from kenshin.errors import StoreError
from kenshin.mdms import versions

# Arrow type → DuckDB column type (DuckDB has unsigned integers, so the schemas map one to one)
DUCKDB_TYPES = {
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.uint8(): "UTINYINT",
    pa.uint16(): "USMALLINT",
    pa.uint32(): "UINTEGER",
    pa.uint64(): "UBIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.string(): "VARCHAR",
}


def duckdb_type(arrow: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow):
        return "TIMESTAMPTZ" if arrow.tz else "TIMESTAMP"
    try:
        return DUCKDB_TYPES[arrow]
    except KeyError:
        raise StoreError(f"no DuckDB column type for Arrow {arrow}") from None


def columns_ddl(schema: pa.Schema) -> str:
    """``name TYPE, …`` of a table holding ``schema``'s columns."""
    return ", ".join(f"{f.name} {duckdb_type(f.type)}" for f in schema)


READING_COLUMNS = ", ".join(f.name for f in READINGS_SCHEMA)
REGISTER_COLUMNS = ", ".join(f.name for f in REGISTER_READS_SCHEMA)
READINGS_DDL = columns_ddl(READINGS_SCHEMA)
REGISTERS_DDL = columns_ddl(REGISTER_READS_SCHEMA)
TIME_COLUMN = {"readings": "interval_end", "register_reads": "read_at"}
# compaction and export: the first of each repeated version stays, sorted by meter and time
KEEP_FIRST = {
    "readings": versions.dedup_filter("meter_key, channel, resolution, interval_end"),
    "register_reads": (
        "row_number() OVER (PARTITION BY meter_key, channel, read_at, register, source "
        "ORDER BY tx_time) = 1"
    ),
}
SORT = {
    "readings": "meter_key, channel, resolution, interval_end, tx_time",
    "register_reads": "meter_key, channel, read_at, tx_time",
}

# the tables, from the Arrow schemas of the core (as the PostgreSQL store's): the columns a
# store holds cannot drift from what the batches carry
DDL = ";\n".join(
    [
        f"CREATE TABLE IF NOT EXISTS meters ({columns_ddl(METERS_SCHEMA)})",
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR)",
        # the head-end's replay windows (kenshin.aroute.replay), committed with the values
        "CREATE TABLE IF NOT EXISTS frame_counters "
        "(meter_key INTEGER PRIMARY KEY, last BIGINT, bitmap UBIGINT)",
        f"CREATE TABLE IF NOT EXISTS gaps ({columns_ddl(versions.GAPS_SCHEMA)})",
        f"CREATE TABLE IF NOT EXISTS edits ({columns_ddl(versions.EDITS_SCHEMA)})",
        "CREATE TABLE IF NOT EXISTS compacted (kind VARCHAR, month INTEGER, rows BIGINT)",
        f"CREATE TABLE IF NOT EXISTS specified_meters ({columns_ddl(SPECIFIED_SCHEMA)})",
        # a copy of an event delivered again is the same row: the key keeps the first
        f"CREATE TABLE IF NOT EXISTS meter_events ({columns_ddl(EVENTS_SCHEMA)}, "
        "PRIMARY KEY (meter_key, code, occurred))",
        # who may use the system, and what they did (kenshin.security)
        "CREATE TABLE IF NOT EXISTS principals (name VARCHAR PRIMARY KEY, document VARCHAR)",
        f"CREATE TABLE IF NOT EXISTS audit ({columns_ddl(AUDIT_SCHEMA)})",
        f"CREATE TABLE IF NOT EXISTS outages ({columns_ddl(OUTAGES_SCHEMA)}, "
        "PRIMARY KEY (event_id))",
        # switching campaigns and requests (kenshin.control), one document each
        "CREATE TABLE IF NOT EXISTS control_records (kind VARCHAR, record_id BIGINT, "
        "document VARCHAR, PRIMARY KEY (kind, record_id))",
        f"CREATE TABLE IF NOT EXISTS command_log ({columns_ddl(COMMAND_LOG_SCHEMA)})",
    ]
)

METER_COLUMNS = ", ".join(METERS_SCHEMA.names)

# the OS's words (strerror) that DuckDB passes on when a write fails, and what the user is told:
# a failed COMMIT otherwise surfaces as "cannot rollback - no transaction is active" or "Current
# transaction is aborted", which names neither the cause nor the file (issue 12 item 7)
IO_CAUSES = (
    ("disk full", ("No space left on device", "File too large", "Disk quota exceeded")),
    ("read-only", ("Read-only file system", "Permission denied")),
)


def io_error(what: str, path: str, exc: BaseException) -> StoreError | None:
    """A one-line :class:`StoreError` saying "disk full" or "read-only" and the file when
    ``exc`` is a write that the file system refused; None for any other failure."""
    text = str(exc)
    for cause, words in IO_CAUSES:
        for word in words:
            if word in text:
                return StoreError(f"{cause}: cannot write to DuckDB store {path} ({word}; {what})")
    return None
