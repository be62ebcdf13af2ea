"""The PostgreSQL store's tables, made from the Arrow schemas of ``kenshin.core``.

Column types come from the schemas (``kenshin.mdms.pgcopy.copy_columns``), so the COPY encoder,
the DDL and the schemas cannot disagree. The replay-window table is the A-route's
(``kenshin.aroute.replay_postgres.counters_table_ddl``). Stores record their layout (``meta``
key ``layout``, ``kenshin.mdms.months.LAYOUT``); one of an older layout is refused.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from kenshin.aroute.replay_postgres import counters_table_ddl
from kenshin.core.schema import METERS_SCHEMA, READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.core.specified import SPECIFIED_SCHEMA
from kenshin.errors import StoreError
from kenshin.mdms import versions
from kenshin.mdms.months import LAYOUT
from kenshin.mdms.pgcopy import copy_columns

READING_COLUMNS = copy_columns(READINGS_SCHEMA)
REGISTER_COLUMNS = copy_columns(REGISTER_READS_SCHEMA)
GAP_COLUMNS = copy_columns(versions.GAPS_SCHEMA)
EDIT_COLUMNS = copy_columns(versions.EDITS_SCHEMA)
METER_COLUMNS = copy_columns(METERS_SCHEMA)
SPECIFIED_COLUMNS = copy_columns(SPECIFIED_SCHEMA)

METER_INDEXED = ("meter_key", "supply_point_id")
READINGS_INDEX = ("meter_key", "channel", "resolution", "interval_end")
REGISTERS_INDEX = ("meter_key", "channel", "read_at")


def meter_indexes(schema: str) -> list[sql.Composed]:
    return [
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.meters ({})").format(
            sql.Identifier(f"meters_{column}"), sql.Identifier(schema), sql.Identifier(column)
        )
        for column in METER_INDEXED
    ]


def ddl(schema: str) -> list[sql.Composed]:
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
        *meter_indexes(schema),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.readings (" + readings + ") "
            "PARTITION BY RANGE (interval_end)"
        ).format(s),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS readings_point ON {}.readings ("
            + ", ".join(READINGS_INDEX)
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
            + ", ".join(REGISTERS_INDEX)
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
        # the head-end's replay windows: the A-route defines the table
        counters_table_ddl(schema),
        # specified sub-meters behind smart meters (SPEC S3)
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.specified_meters (meter_key integer, "
            "parent_key integer, kind smallint, device_id bigint)"
        ).format(s),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS specified_parent ON {}.specified_meters (parent_key)"
        ).format(s),
        # meter events (SPEC R1–R3); a copy delivered again is the same row: the key keeps the
        # first
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.meter_events (meter_key integer, code smallint, "
            "occurred timestamptz, detail integer, tx_time timestamptz, "
            "PRIMARY KEY (meter_key, code, occurred))"
        ).format(s),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS meter_events_occurred ON {}.meter_events (occurred)"
        ).format(s),
        # who may use the system, and what they did (kenshin.security)
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.principals (name text PRIMARY KEY, document text)"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.audit (logged_at timestamptz, principal text, "
            "method text, route text, path text, meters text, status smallint, reason text, "
            "remote text)"
        ).format(s),
        sql.SQL("CREATE INDEX IF NOT EXISTS audit_at ON {}.audit (logged_at)").format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.outages (event_id bigint PRIMARY KEY, level text, "
            "device integer, state text, started timestamptz, confirmed timestamptz, "
            "restored timestamptz, confidence double precision, customers integer, "
            "merged_into bigint, detail text)"
        ).format(s),
        # switching campaigns and requests (kenshin.control), one document each
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.control_records (kind text, record_id bigint, "
            "document text, PRIMARY KEY (kind, record_id))"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.command_log (changed_at timestamptz, command_id bigint, "
            "meter_key integer, kind text, from_state text, to_state text, detail text, "
            "requested_by text)"
        ).format(s),
        sql.SQL("CREATE INDEX IF NOT EXISTS command_log_id ON {}.command_log (command_id)").format(
            s
        ),
    ]


_TABLES = (
    "meters",
    "readings",
    "register_reads",
    "gaps",
    "edits",
    "meta",
    "frame_counters",
    "specified_meters",
    "meter_events",
    "principals",
    "audit",
    "outages",
    "control_records",
    "command_log",
)
_INDEXES = (
    *(f"meters_{column}" for column in METER_INDEXED),
    "readings_point",
    "readings_written",
    "register_reads_point",
    "gaps_meter",
    "edits_meter",
    "specified_parent",
    "meter_events_occurred",
    "audit_at",
)


def schema_complete(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether every table, column and index of :func:`ddl` exists already. A worker opening
    a complete store then runs no DDL: ``ALTER TABLE … ADD COLUMN IF NOT EXISTS`` takes an
    exclusive lock even when it changes nothing, and a restarted worker's set-up deadlocked
    once with another worker writing (the fault drill)."""
    tables = {
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
        ).fetchall()
    }
    if not set(_TABLES) <= tables:
        return False
    columns = {
        (r[0], r[1])
        for r in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name IN ('meters', 'readings')",
            [schema],
        ).fetchall()
    }
    wanted = {("meters", c.name) for c in METER_COLUMNS} | {("readings", "failed_rule")}
    if not wanted <= columns:
        return False
    indexes = {
        r[0]
        for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s", [schema]
        ).fetchall()
    }
    return set(_INDEXES) <= indexes


def check_layout(conn: psycopg.Connection[Any], schema: str, target: str) -> None:
    """Refuse a store whose month partitions follow layout 1 (``[1st, next 1st)``): its
    rows at midnight on the 1st sit in the other month (``kenshin.mdms.months``)."""
    found = conn.execute(
        sql.SQL("SELECT value FROM {}.meta WHERE key = 'layout'").format(sql.Identifier(schema))
    ).fetchone()
    if found is not None and found[0] == LAYOUT:
        return
    bounds = conn.execute(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = ANY(%s::regclass[])",
        [[f"{schema}.readings", f"{schema}.register_reads"]],
    ).fetchall()
    if any(".000001" not in str(b[0]) for b in bounds):
        raise StoreError(
            f"{target} was written by an older kenshin whose month partitions start at "
            "midnight (layout 1); re-create it (kenshin simulate --overwrite) or export it "
            "first"
        )
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.meta VALUES ('layout', %s) ON CONFLICT (key) DO UPDATE "
            "SET value = EXCLUDED.value"
        ).format(sql.Identifier(schema)),
        [LAYOUT],
    )
