"""Versioned readings: the one rule both backends and the archive apply when they read.

A reading row is a *version* of one cell (meter, channel, resolution, interval end). Rows are never
updated in place (ARCHITECTURE "Storage", SPEC S2); what a read returns is decided here:

1. only versions with ``tx_time <= as_of`` count (``as_of`` = now when not given);
2. a version whose content (value, quality, source, method, failed rule) equals an earlier
   version of the same cell is a repeat and is ignored: the same batch stored twice, a message
   delivered twice, or a re-read returning what the meter already sent change nothing;
3. the current version is the latest remaining one; its ``version`` is how many remain (1 = the
   first). Versions with the same ``tx_time`` are ordered by source, quality, value, method and
   failed rule, so that every backend picks the same one.

Late actual data therefore supersedes an estimate (it is a new version), and the estimate stays in
the history that :func:`versions_sql` lists.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa

from kenshin.core.schema import READINGS_SCHEMA, TIMESTAMP
from kenshin.mdms.store import ReadingQuery

CONTENT = ("value", "quality", "source", "method", "failed_rule")
CELL = ("meter_key", "channel", "resolution", "interval_end")
# the tie-break for versions stored at the same transaction time, identical on every backend
ORDER_LATEST = (
    "tx_time DESC, source DESC, quality DESC, value DESC NULLS LAST, method DESC NULLS LAST, "
    "failed_rule DESC NULLS LAST"
)

READ_SCHEMA = pa.schema(
    [
        ("interval_end", TIMESTAMP),
        ("value", pa.int32()),
        ("quality", pa.uint8()),
        ("source", pa.uint8()),
        ("method", pa.uint8()),
        ("failed_rule", pa.uint16()),
        ("tx_time", TIMESTAMP),
        ("version", pa.int32()),
    ]
)
WINDOW_SCHEMA = pa.schema([("meter_key", pa.int32()), *READ_SCHEMA])
HISTORY_SCHEMA = READ_SCHEMA

# what the meters sent (push, re-read, poll: kenshin.core.quality.Source), as read by the sweep
MEASURED_SOURCES = (1, 2, 5)
MEASURED_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("interval_end", TIMESTAMP),
        ("value", pa.int32()),
        ("source", pa.uint8()),
        ("tx_time", TIMESTAMP),
    ]
)

REGISTER_WINDOW_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("read_at", TIMESTAMP),
        ("register", pa.int32()),
        ("source", pa.uint8()),
    ]
)

GAPS_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("channel", pa.uint8()),
        ("resolution", pa.uint8()),
        ("interval_end", TIMESTAMP),
        ("found_at", TIMESTAMP),
    ]
)

EDITS_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("channel", pa.uint8()),
        ("resolution", pa.uint8()),
        ("interval_end", TIMESTAMP),
        ("old_value", pa.int32()),
        ("new_value", pa.int32()),
        ("reason", pa.string()),
        ("editor", pa.string()),
        ("tx_time", TIMESTAMP),
    ]
)


def dedup_filter(partition: str = "interval_end") -> str:
    """A window predicate keeping the first version of each distinct content of a cell."""
    return (
        f"row_number() OVER (PARTITION BY {partition}, {', '.join(CONTENT)} "
        "ORDER BY tx_time, source, quality) = 1"
    )


def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def conform_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Columns of ``schema`` taken by name and cast (backends return slightly different types)."""
    arrays = []
    for field in schema:
        column = table.column(field.name)
        if pa.types.is_timestamp(field.type) and not pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64()).cast(field.type)
        arrays.append(column.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def readings_table(
    meter_key: np.ndarray,
    channel: int,
    resolution: int,
    interval_end_us: np.ndarray,
    value: np.ndarray,
    value_present: np.ndarray | None,
    quality: np.ndarray | int,
    source: np.ndarray | int,
    method: np.ndarray | int,
    failed_rule: np.ndarray | int,
    tx_time_us: int,
) -> pa.Table:
    """Reading rows (``READINGS_SCHEMA``) from numpy columns: what VEE and edits append."""
    n = len(meter_key)

    def col(x: np.ndarray | int, dtype: type) -> np.ndarray:
        return np.full(n, x, dtype=dtype) if np.isscalar(x) else np.asarray(x, dtype=dtype)

    mask = None if value_present is None else ~np.asarray(value_present, dtype=bool)
    return pa.Table.from_arrays(
        [
            pa.array(np.asarray(meter_key, dtype=np.int32)),
            pa.array(np.full(n, channel, dtype=np.uint8)),
            pa.array(np.full(n, resolution, dtype=np.uint8)),
            pa.array(np.asarray(interval_end_us, dtype=np.int64)).cast(TIMESTAMP),
            pa.array(np.asarray(value, dtype=np.int32), mask=mask),
            pa.array(col(quality, np.uint8)),
            pa.array(col(source, np.uint8)),
            pa.array(col(method, np.uint8)),
            pa.array(col(failed_rule, np.uint16)),
            pa.array(np.full(n, tx_time_us, dtype=np.int64)).cast(TIMESTAMP),
        ],
        schema=READINGS_SCHEMA,
    )


def utc(epoch_us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(epoch_us))


def current_sql(source: str, where: str, partition: str = "interval_end") -> str:
    """DuckDB SQL of the current versions in ``source`` (a table or subquery) under ``where``."""
    return f"""
        WITH distinct_versions AS (
            SELECT * FROM {source} WHERE {where}
            QUALIFY {dedup_filter(partition)}
        )
        SELECT *, count(*) OVER (PARTITION BY {partition})::INTEGER AS version
        FROM distinct_versions
        QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {ORDER_LATEST}) = 1
    """


def history_sql(source: str, where: str) -> str:
    """Every distinct version of the cells in ``source``, numbered from 1 by transaction time."""
    return f"""
        WITH distinct_versions AS (
            SELECT * FROM {source} WHERE {where}
            QUALIFY {dedup_filter()}
        )
        SELECT *, row_number() OVER (
            PARTITION BY interval_end ORDER BY tx_time, source, quality, value NULLS FIRST
        )::INTEGER AS version
        FROM distinct_versions
    """


def resolve_current(table: pa.Table, partition: str = "interval_end") -> pa.Table:
    """Current versions of raw version rows held in Arrow (archive + hot rows of one month)."""
    con = duckdb.connect()
    try:
        con.register("versions_in", table)
        return con.sql(current_sql("versions_in", "true", partition)).to_arrow_table()
    finally:
        con.close()


def history_of(raw: pa.Table) -> pa.Table:
    """Every distinct version of raw version rows, numbered, by interval end and version."""
    con = duckdb.connect()
    try:
        con.register("versions_in", raw)
        table = con.sql(
            history_sql("versions_in", "true") + " ORDER BY interval_end, version"
        ).to_arrow_table()
    finally:
        con.close()
    return conform_to(table, HISTORY_SCHEMA)


def _column(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(values with NULL as 0, is-NULL flags) of an integer column."""
    column = table.column(name)
    nulls = (
        np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        if column.null_count
        else np.zeros(len(column), dtype=bool)
    )
    values = column.cast(pa.int64()).fill_null(0).to_numpy()
    return np.asarray(values, dtype=np.int64), nulls


def current_of(raw: pa.Table, cell: tuple[str, ...] = ("interval_end",)) -> pa.Table:
    """The reading rule of this module applied in numpy to raw version rows of a few cells (a
    point read): the same answer as :func:`current_sql` without a database round trip.

    Returns the raw columns of the current versions plus ``version``, sorted by ``cell``.
    """
    n = raw.num_rows
    version_type = pa.int32()
    if n == 0:
        return raw.append_column("version", pa.array([], version_type))
    cells = [_column(raw, name)[0] for name in cell]
    cell_order = np.lexsort(cells[::-1])
    sorted_cells = [c[cell_order] for c in cells]
    same_cell = np.ones(n - 1, dtype=bool)
    for c in sorted_cells:
        same_cell &= c[1:] == c[:-1]
    if not same_cell.any():  # one version per cell: the usual case after compaction
        ordered = bool(np.all(cell_order[1:] > cell_order[:-1]))  # already by cell: no copy
        table = raw if ordered else raw.take(pa.array(cell_order))
        return table.append_column("version", pa.array(np.ones(n, np.int32), version_type))
    value, value_null = _column(raw, "value")
    quality, _ = _column(raw, "quality")
    source, _ = _column(raw, "source")
    method, method_null = _column(raw, "method")
    rule, rule_null = _column(raw, "failed_rule")
    tx, _ = _column(raw, "tx_time")
    content = [value_null, value, quality, source, method_null, method, rule_null, rule]
    # 1. repeats: the first of each (cell, content) by transaction time stays
    order = np.lexsort([quality, source, tx, *content[::-1], *cells[::-1]])
    keys = [k[order] for k in (*cells, *content)]
    first = np.ones(n, dtype=bool)
    same = np.ones(n - 1, dtype=bool)
    for k in keys:
        same &= k[1:] == k[:-1]
    first[1:] = ~same
    kept = order[first]
    # 2. the latest remaining version of each cell (ORDER_LATEST); version = how many remain
    order2 = kept[
        np.lexsort(
            [
                rule[kept],
                ~rule_null[kept],
                method[kept],
                ~method_null[kept],
                value[kept],
                ~value_null[kept],
                quality[kept],
                source[kept],
                tx[kept],
            ]
            + [c[kept] for c in cells[::-1]]
        )
    ]
    cell_keys = [c[order2] for c in cells]
    last = np.ones(len(order2), dtype=bool)
    same2 = np.ones(len(order2) - 1, dtype=bool)
    for c in cell_keys:
        same2 &= c[1:] == c[:-1]
    last[:-1] = ~same2
    starts = np.flatnonzero(np.r_[True, ~same2])
    counts = np.diff(np.r_[starts, len(order2)])
    table = raw.take(pa.array(order2[last]))
    return table.append_column("version", pa.array(counts.astype(np.int32), version_type))


# per meter and slot: the maximum over usable days and the sum over the like days; per meter:
# how many like days were used and the largest usable day total (kenshin.mdms.estimate)
HISTORY_SLOT_SCHEMA = pa.schema(
    [
        ("meter_key", pa.int32()),
        ("slot", pa.int32()),
        ("recent_max", pa.int64()),
        ("like_sum", pa.int64()),
    ]
)
HISTORY_METER_SCHEMA = pa.schema(
    [("meter_key", pa.int32()), ("like_days", pa.int32()), ("day_max", pa.int64())]
)


def history_stats_sql(
    source: str,
    epoch_us: str,
    div: str,
    *,
    channel: int,
    resolution_min: int,
    start_us: int,
    end_us: int,
    start_literal: str,
    end_literal: str,
    like_days: list[int],
    like_count: int,
) -> tuple[str, str]:
    """(slot statistics, meter statistics) SQL over raw version rows of ``(start, end]``.

    A meter-day is usable when it holds exactly one row per slot and every one is valid or
    edited, so days that were estimated, had an outage or a gap, or hold several versions of a
    value are left out (conservatively: vee.md). Like days are the ``like_count`` most recent
    usable days among ``like_days`` (day numbers from ``start``). ``epoch_us`` turns the column
    into Unix µs and ``div`` is the integer division operator: the dialects differ only there.
    """
    slots = 1440 // resolution_min
    step = resolution_min * 60_000_000
    offset = epoch_us.format("interval_end") + f" - 1 - {start_us}"
    candidates = ", ".join(str(d) for d in like_days) or "-1"
    common = f"""
        WITH raw AS (
            SELECT meter_key, value, quality,
                ({offset}) {div} 86400000000 AS d,
                mod({offset}, 86400000000) {div} {step} AS s
            FROM {source}
            WHERE channel = {channel} AND resolution = {resolution_min}
              AND interval_end > {start_literal} AND interval_end <= {end_literal}
        ),
        days AS (
            SELECT meter_key, d, sum(value) AS total FROM raw GROUP BY meter_key, d
            HAVING count(*) = {slots} AND bool_and(quality IN (1, 4) AND value IS NOT NULL)
        ),
        likes AS (
            SELECT meter_key, d FROM (
                SELECT meter_key, d,
                    row_number() OVER (PARTITION BY meter_key ORDER BY d DESC) AS rank
                FROM days WHERE d IN ({candidates})
            ) ranked WHERE rank <= {like_count}
        )"""
    slot_sql = (
        common
        + """
        SELECT r.meter_key, r.s AS slot, max(r.value) AS recent_max,
            sum(CASE WHEN l.d IS NULL THEN 0 ELSE r.value END) AS like_sum
        FROM raw r LEFT JOIN likes l ON r.meter_key = l.meter_key AND r.d = l.d
        WHERE EXISTS (SELECT 1 FROM days u WHERE u.meter_key = r.meter_key AND u.d = r.d)
        GROUP BY r.meter_key, r.s"""
    )
    meter_sql = (
        common
        + """
        SELECT u.meter_key, count(l.d) AS like_days, max(u.total) AS day_max
        FROM days u LEFT JOIN likes l ON u.meter_key = l.meter_key AND u.d = l.d
        GROUP BY u.meter_key"""
    )
    return slot_sql, meter_sql


def duckdb_cell_where(query: ReadingQuery) -> str:
    """DuckDB predicate of one meter's cells in a query's window (the hot store and the archive
    read with it)."""
    where = (
        f"meter_key = {int(query.meter_key)} AND channel = {int(query.channel)} "
        f"AND resolution = {int(query.resolution)} "
        f"AND interval_end > make_timestamptz({int(query.start_us)}) "
        f"AND interval_end <= make_timestamptz({int(query.end_us)})"
    )
    if query.as_of_us is not None:
        where += f" AND tx_time <= make_timestamptz({int(query.as_of_us)})"
    return where
