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
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.core.quality import Source
from kenshin.core.schema import TIMESTAMP
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
# raw version rows of many meters' cells, as stored (no reading rule applied yet)
VERSION_ROWS_SCHEMA = pa.schema([f for f in WINDOW_SCHEMA if f.name != "version"])

# what the meters sent (push, re-read, poll: kenshin.core.quality.Source), as read by the sweep
MEASURED_SOURCES = (int(Source.METER_PUSH), int(Source.REREAD), int(Source.POLL))
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
# every stored register read, before the latest per (meter, instant) is chosen
REGISTER_ROWS_SCHEMA = pa.schema([*REGISTER_WINDOW_SCHEMA, ("tx_time", TIMESTAMP)])

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


def _same_as_previous(
    keys: Sequence[npt.NDArray[Any]], order: npt.NDArray[np.intp] | None = None
) -> npt.NDArray[np.bool_]:
    """For rows 1 … n-1 (taken in ``order``): whether the row equals the one before it in every
    key, i.e. belongs to the same group."""
    n = len(keys[0]) if order is None else len(order)
    same = np.ones(max(n - 1, 0), dtype=bool)
    for key in keys:
        ordered = key if order is None else key[order]
        same &= ordered[1:] == ordered[:-1]
    return same


def is_measured(source: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Which rows came from the meters (push, re-read, poll), not from the MDMS."""
    measured: npt.NDArray[np.bool_] = source == MEASURED_SOURCES[0]
    for other in MEASURED_SOURCES[1:]:
        measured |= source == other
    return measured


def current_of(raw: pa.Table, cell: tuple[str, ...] = ("interval_end",)) -> pa.Table:
    """The reading rule of this module applied in numpy to raw version rows of a few cells (a
    point read): the same answer as :func:`current_sql` without a database round trip.

    Returns the raw columns of the current versions plus ``version``, sorted by ``cell``.
    """
    version_type = pa.int32()
    if raw.num_rows == 0:
        return raw.append_column("version", pa.array([], version_type))
    order, counts, in_order = _current_order(raw, cell)
    table = raw if in_order else raw.take(pa.array(order))
    return table.append_column("version", pa.array(counts.astype(np.int32), version_type))


def _current_order(
    raw: pa.Table, cell: tuple[str, ...]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], bool]:
    """(row of each cell's current version, sorted by ``cell``; how many distinct versions the
    cell has; whether that is every row in order already) of ``raw`` (at least one row)."""
    n = raw.num_rows
    cells = [_column(raw, name)[0] for name in cell]
    cell_order = np.lexsort(cells[::-1])
    if not _same_as_previous(
        cells, cell_order
    ).any():  # one version per cell: the usual case after compaction
        ordered = bool(np.all(cell_order[1:] > cell_order[:-1]))  # already by cell: no copy
        return cell_order.astype(np.int64), np.ones(n, np.int64), ordered
    value, value_null = _column(raw, "value")
    quality, _ = _column(raw, "quality")
    source, _ = _column(raw, "source")
    method, method_null = _column(raw, "method")
    rule, rule_null = _column(raw, "failed_rule")
    tx, _ = _column(raw, "tx_time")
    content = [value_null, value, quality, source, method_null, method, rule_null, rule]
    # 1. repeats: the first of each (cell, content) by transaction time stays
    order = np.lexsort([quality, source, tx, *content[::-1], *cells[::-1]])
    first = np.ones(n, dtype=bool)
    first[1:] = ~_same_as_previous([*cells, *content], order)
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
    same2 = _same_as_previous(cells, order2)
    last = np.ones(len(order2), dtype=bool)
    last[:-1] = ~same2
    starts = np.flatnonzero(np.r_[True, ~same2])
    counts = np.diff(np.r_[starts, len(order2)])
    return order2[last].astype(np.int64), counts.astype(np.int64), False


def written_days_sql(
    source: str,
    epoch_us: str,
    div: str,
    *,
    channel: int,
    resolution_min: int,
    start_us: int,
    start_literal: str,
    end_literal: str,
    since_literal: str,
) -> str:
    """SQL of (day number from ``start``, newest transaction time in µs) for the days of
    ``(start, end]`` that received rows after ``since``: which history day planes are out of
    date (kenshin.mdms.history). Rows arrive in transaction-time order, so the stores skip
    older data by their block summaries (DuckDB zone maps, a PostgreSQL BRIN index)."""
    return f"""
        SELECT ({epoch_us.format("interval_end")} - 1 - {start_us}) {div} 86400000000 AS d,
            max({epoch_us.format("tx_time")}) AS last_tx
        FROM {source}
        WHERE channel = {channel} AND resolution = {resolution_min}
          AND interval_end > {start_literal} AND interval_end <= {end_literal}
          AND tx_time > {since_literal}
        GROUP BY 1"""


def _shared(key: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Which entries of ``key`` occur more than once: by counting when the keys are dense (one
    pass in memory order), by sorting when they are sparse (counting would need a huge table)."""
    low, high = int(key.min()), int(key.max())
    if high - low <= 4 * len(key) + 1024:
        dense = key - low
        shared: npt.NDArray[np.bool_] = np.bincount(dense)[dense] > 1
        return shared
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    equal = ordered[1:] == ordered[:-1]
    in_order = np.zeros(len(key), dtype=bool)
    in_order[1:] |= equal
    in_order[:-1] |= equal
    shared = np.empty(len(key), dtype=bool)
    shared[order] = in_order
    return shared


def _grid_key(
    meter: npt.NDArray[np.int64], at: npt.NDArray[np.int64], step_us: int
) -> npt.NDArray[np.int64]:
    """(grid slot, meter) as one integer, slot-major: the order a day's rows arrive in (every
    meter's first slot, then the second …), so counting walks memory in order."""
    low = int(meter.min())
    key: npt.NDArray[np.int64] = (at - at.min()) // step_us
    key *= int(meter.max()) - low + 1
    key += meter
    key -= low
    return key


def cells_with_several_rows(rows: pa.Table, step_us: int) -> npt.NDArray[np.bool_]:
    """Which rows share their (meter, ``step_us`` grid slot) with another row. Rows off the grid
    may share a slot without sharing a cell; they only take the exact (slower) path."""
    meter = np.asarray(rows.column("meter_key").to_numpy(), np.int64)
    end = np.asarray(rows.column("interval_end").cast(pa.int64()).to_numpy(), np.int64)
    return _shared(_grid_key(meter, end, step_us))


def current_cells(
    rows: pa.Table, step_us: int, several: npt.NDArray[np.bool_] | None = None
) -> pa.Table:
    """The current version of each (meter, interval end) among many meters' raw version rows
    (``VERSION_ROWS_SCHEMA``), unordered and without ``version``: the rule of
    :func:`current_sql`, where cells with one row (most, in a sweep's day) are taken as they are,
    cells of two rows on the slot grid are compared row with row, and only the others are
    sorted (:func:`current_of`). ``several``: the rows' :func:`cells_with_several_rows`, when
    the caller has it already."""
    if rows.num_rows == 0:
        return rows
    if several is None:
        several = cells_with_several_rows(rows, step_us)
    if not several.any():
        return rows
    others = _several_current(rows, several, step_us)
    return pa.concat_tables([rows.filter(pa.array(~several)), rows.take(pa.array(others))])


def current_indices(rows: pa.Table, step_us: int) -> npt.NDArray[np.int64]:
    """The rows of :func:`current_cells` as indices into ``rows``, unordered: for callers that
    need a column or two of the current versions, or only some of them (a take of millions of
    whole rows costs more than the rule). One pass over the rows on the slot grid: a cell of
    one row is that row, a cell of two is decided row with row (:func:`_current_of_pair`); the
    rest, and rows off the grid, are sorted (:func:`current_of`)."""
    n = rows.num_rows
    if n == 0:
        return np.empty(0, np.int64)
    meter, _ = _column(rows, "meter_key")
    end, _ = _column(rows, "interval_end")
    on_grid = end % step_us == 0
    all_on_grid = bool(on_grid.all())
    index = np.arange(n) if all_on_grid else np.flatnonzero(on_grid)
    key = (
        _grid_key(meter, end, step_us)
        if all_on_grid
        else _grid_key(meter[index], end[index], step_us)
    )
    if len(key) == 0:
        order, _, _ = _current_order(rows, ("meter_key", "interval_end"))
        return order
    if int(key.max()) > 4 * len(key) + 1024:  # sparse (a few cells of many): numbered densely
        key = np.unique(key, return_inverse=True)[1].astype(np.int64)
    counts = np.bincount(key)
    per_row = counts[key]
    parts = [index[per_row == 1]]
    two = per_row == 2
    if two.any():
        first = np.full(len(counts), n, np.int64)
        np.minimum.at(first, key[two], index[two])
        last = np.full(len(counts), -1, np.int64)
        np.maximum.at(last, key[two], index[two])
        cells = np.flatnonzero(counts == 2)
        parts.append(_current_of_pair(rows, first[cells], last[cells]))
    rest = np.zeros(n, bool)
    rest[index[per_row > 2]] = True
    if not all_on_grid:
        rest |= ~on_grid
    if rest.any():
        among = np.flatnonzero(rest)
        order, _, _ = _current_order(rows.take(pa.array(among)), ("meter_key", "interval_end"))
        parts.append(among[order])
    return np.concatenate(parts).astype(np.int64)


def rows_of_cells_with(rows: pa.Table, mask: npt.NDArray[np.bool_], step_us: int) -> pa.Table:
    """Every row of the cells (meter, slot of the ``step_us`` grid) that hold a row where
    ``mask`` is set: what the reading rule needs to decide those cells alone (rows off the grid
    share their grid slot's cells here, which only adds rows)."""
    if not mask.any():
        return rows.slice(0, 0)
    meter, _ = _column(rows, "meter_key")
    end, _ = _column(rows, "interval_end")
    key = _grid_key(meter, end, step_us)
    if int(key.max()) > 4 * len(key) + 1024:  # sparse keys: a set of them
        return rows.filter(pa.array(np.isin(key, np.unique(key[mask]))))
    marked = np.zeros(int(key.max()) + 1, bool)
    marked[key[mask]] = True
    return rows.filter(pa.array(marked[key]))


def _several_current(
    rows: pa.Table, several: npt.NDArray[np.bool_], step_us: int
) -> npt.NDArray[np.int64]:
    """Indices of the current rows of the cells with several rows."""
    pairs, rest = _two_row_cells(rows, several, step_us)
    if not rest.any():
        return pairs
    among = np.flatnonzero(rest)
    order, _, _ = _current_order(rows.take(pa.array(among)), ("meter_key", "interval_end"))
    return np.concatenate([pairs, among[order]])


def _two_row_cells(
    rows: pa.Table, several: npt.NDArray[np.bool_], step_us: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The reading rule for cells of exactly two rows on the slot grid -- a value and the
    sweep's label of it, the common case of a swept day -- by comparing the two rows, in
    O(rows) whatever order they come in (a sort of millions of rows took seconds).
    Returns (the current row of each such cell, the rows left for :func:`current_of`)."""
    meter, _ = _column(rows, "meter_key")
    end, _ = _column(rows, "interval_end")
    on_grid = several & (end % step_us == 0)  # rows off the grid may share a grid slot
    rest = several & ~on_grid
    if not on_grid.any():
        return np.empty(0, np.int64), rest
    index = np.flatnonzero(on_grid)
    key = _grid_key(meter[index], end[index], step_us)
    if int(key.max()) > 4 * len(key) + 1024:  # sparse keys: counting would need a huge table
        return np.empty(0, np.int64), several
    counts = np.bincount(key)
    two = counts[key] == 2
    rest[index[~two]] = True
    index, key = index[two], key[two]
    if len(index) == 0:
        return np.empty(0, np.int64), rest
    first = np.full(len(counts), len(rows), np.int64)
    np.minimum.at(first, key, index)
    cells = np.flatnonzero(counts == 2)
    a = first[cells]
    last = np.full(len(counts), -1, np.int64)
    np.maximum.at(last, key, index)
    b = last[cells]
    return _current_of_pair(rows, a, b), rest


def _current_of_pair(
    rows: pa.Table, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """For each pair of rows (a[i], b[i]) of one cell, the current one: of identical content
    the first by (tx_time, source, quality) (a repeat is no new version), else the latest by
    ``ORDER_LATEST``. The rule of :func:`current_of`, written for two rows."""
    gathered = {}
    for name in ("tx_time", "source", "quality", "value", "method", "failed_rule"):
        column = rows.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        values = np.asarray(column.fill_null(0).to_numpy() if column.null_count else column)
        nulls = np.asarray(column.is_null().to_numpy(False)) if column.null_count else None
        gathered[name] = (
            values[a],
            values[b],
            None if nulls is None else nulls[a],
            None if nulls is None else nulls[b],
        )
    same = np.ones(len(a), bool)
    b_wins = np.zeros(len(a), bool)
    decided = np.zeros(len(a), bool)
    # columns in the rule's order: b wins where it is greater in the first column the two
    # differ in, NULL lowest ("DESC NULLS LAST" puts a value before NULL)
    for name in ("tx_time", "source", "quality", "value", "method", "failed_rule"):
        va, vb, na, nb = gathered[name]
        if na is None or nb is None:
            differ = va != vb
            greater = vb > va
        else:
            differ = (na != nb) | (~na & (va != vb))
            greater = np.where(na | nb, na & ~nb, vb > va)
        if name != "tx_time":
            same &= ~differ
        b_wins |= ~decided & differ & greater
        decided |= differ
    # identical content: the first by (tx_time, source, quality); source and quality are part
    # of the content, and of equal transaction times either row is the same answer
    ta, tb = gathered["tx_time"][0], gathered["tx_time"][1]
    result: npt.NDArray[np.int64] = np.where(same, np.where(tb < ta, b, a), np.where(b_wins, b, a))
    return result


def measured_rows(
    rows: pa.Table, step_us: int, several: npt.NDArray[np.bool_] | None = None
) -> pa.Table:
    """What the meters sent (``MEASURED_SCHEMA``) among raw version rows, an exact repeat (same
    value and source) once, the first by transaction time: what the sweep validates.
    ``several``: the rows' :func:`cells_with_several_rows`, when the caller has it already
    (among all rows: a superset of the cells with several measured rows)."""
    from_meters = is_measured(rows.column("source").to_numpy())
    columns = MEASURED_SCHEMA.names
    if several is None:
        measured = rows.filter(pa.array(from_meters))
        if measured.num_rows == 0:
            return measured.select(columns)
        several = cells_with_several_rows(measured, step_us)
    else:
        several = several[from_meters]
        measured = rows.filter(pa.array(from_meters))
    if not several.any():
        return measured.select(columns)
    sub = measured.filter(pa.array(several))
    meter, _ = _column(sub, "meter_key")
    end, _ = _column(sub, "interval_end")
    value, value_null = _column(sub, "value")
    src, _ = _column(sub, "source")
    tx, _ = _column(sub, "tx_time")
    keys = (meter, end, value_null, value, src)
    order = np.lexsort([tx, *keys[::-1]])
    first = np.ones(len(order), dtype=bool)
    first[1:] = ~_same_as_previous(keys, order)
    return pa.concat_tables(
        [
            measured.filter(pa.array(~several)).select(columns),
            sub.take(pa.array(order[first])).select(columns),
        ]
    )


def latest_register_reads(rows: pa.Table, step_us: int) -> pa.Table:
    """The latest register read (by transaction time, then source, then the larger register) of
    each (meter, instant) among stored reads (``REGISTER_ROWS_SCHEMA``): the store's
    ``read_register_window``, unordered. Instants that hold one read (nearly all) are taken as
    they are; reads are grouped on the ``step_us`` grid, and reads off it that share a grid slot
    just take the exact path."""
    columns = REGISTER_WINDOW_SCHEMA.names
    if rows.num_rows == 0:
        return rows.select(columns)
    meter, _ = _column(rows, "meter_key")
    at, _ = _column(rows, "read_at")
    several = _shared(_grid_key(meter, at, step_us))
    if not several.any():
        return rows.select(columns)
    sub = rows.filter(pa.array(several))
    s_meter, s_at = meter[several], at[several]
    source, _ = _column(sub, "source")
    tx, _ = _column(sub, "tx_time")
    register, register_null = _column(sub, "register")
    register = np.where(register_null, np.iinfo(np.int64).min, register)  # NULLS LAST, DESC
    order = np.lexsort([register, source, tx, s_at, s_meter])
    last = np.ones(len(order), dtype=bool)
    last[:-1] = ~_same_as_previous([s_meter, s_at], order)
    return pa.concat_tables(
        [
            rows.filter(pa.array(~several)).select(columns),
            sub.take(pa.array(order[last])).select(columns),
        ]
    )


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
