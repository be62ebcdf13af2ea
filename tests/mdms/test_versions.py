"""The reading rule of kenshin.mdms.versions: the numpy form used by point reads gives exactly
what the SQL form gives, for any mix of versions, repeats, NULLs and ties."""

from __future__ import annotations

from collections import Counter

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.core.channels import Channel
from kenshin.core.schema import READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.core.timeslots import Resolution
from kenshin.mdms import versions
from kenshin.mdms.duckdb_store import DuckDBStore

TS = READINGS_SCHEMA.field("interval_end").type
COLUMNS = [
    "interval_end", "value", "quality", "source", "method", "failed_rule", "tx_time", "version"
]  # fmt: skip

row = st.tuples(
    st.integers(0, 3),  # slot
    st.one_of(st.none(), st.integers(-1, 2)),  # value
    st.integers(0, 2),  # quality
    st.integers(1, 2),  # source
    st.one_of(st.none(), st.integers(0, 1)),  # method
    st.one_of(st.none(), st.integers(0, 1)),  # failed rule
    st.integers(0, 3),  # tx time
)


def table(rows: list[tuple[int | None, ...]]) -> pa.Table:
    n = len(rows)
    return pa.table(
        {
            "meter_key": pa.array([1] * n, pa.int32()),
            "channel": pa.array([1] * n, pa.uint8()),
            "resolution": pa.array([30] * n, pa.uint8()),
            "interval_end": pa.array([r[0] * 1_800_000_000 for r in rows], pa.int64()).cast(TS),
            "value": pa.array([r[1] for r in rows], pa.int32()),
            "quality": pa.array([r[2] for r in rows], pa.uint8()),
            "source": pa.array([r[3] for r in rows], pa.uint8()),
            "method": pa.array([r[4] for r in rows], pa.uint8()),
            "failed_rule": pa.array([r[5] for r in rows], pa.uint16()),
            "tx_time": pa.array([r[6] for r in rows], pa.int64()).cast(TS),
        },
        schema=READINGS_SCHEMA,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(row, min_size=0, max_size=30))
def test_numpy_and_sql_agree(rows: list[tuple[int | None, ...]]) -> None:
    raw = table(rows)
    by_sql = versions.resolve_current(raw).sort_by("interval_end").select(COLUMNS)
    by_numpy = versions.current_of(raw).select(COLUMNS)
    assert by_sql.cast(by_numpy.schema).to_pylist() == by_numpy.to_pylist()


def test_repeats_are_ignored_and_versions_counted() -> None:
    raw = table(
        [
            (1, 100, 1, 1, 0, 0, 1),  # first
            (1, 100, 1, 1, 0, 0, 2),  # the same again: a repeat
            (1, 120, 2, 3, 1, 0, 3),  # an estimate
            (1, 100, 1, 1, 0, 0, 4),  # the first again: still a repeat, not a new version
            (2, 5, 1, 1, 0, 0, 1),
        ]
    )
    got = versions.current_of(raw).select(["value", "version"]).to_pylist()
    assert got == [{"value": 120, "version": 2}, {"value": 5, "version": 1}]


many_meters_row = st.tuples(
    st.integers(0, 2),  # meter
    st.integers(0, 3),  # slot
    st.one_of(st.none(), st.integers(-1, 2)),  # value
    st.integers(0, 2),  # quality
    st.sampled_from([1, 2, 3]),  # source: push and re-read are measured, 3 (estimate) is not
    st.one_of(st.none(), st.integers(0, 1)),  # method
    st.one_of(st.none(), st.integers(0, 1)),  # failed rule
    st.integers(0, 3),  # tx time
)


def many_meters(rows: list[tuple[int | None, ...]]) -> pa.Table:
    raw = table([r[1:] for r in rows])
    return raw.set_column(0, "meter_key", pa.array([r[0] for r in rows], pa.int32()))


@settings(max_examples=200, deadline=None)
@given(st.lists(many_meters_row, min_size=1, max_size=40))
def test_current_cells_of_many_meters_agree_with_sql(rows: list[tuple[int | None, ...]]) -> None:
    raw = many_meters(rows)
    cells = ["meter_key", "interval_end"]
    expected = versions.resolve_current(raw, "meter_key, interval_end").sort_by(
        [(c, "ascending") for c in cells]
    )
    got = versions.current_cells(raw.select(versions.VERSION_ROWS_SCHEMA.names), 1_800_000_000)
    got = got.sort_by([(c, "ascending") for c in cells])
    columns = versions.VERSION_ROWS_SCHEMA.names
    assert got.select(columns).to_pylist() == expected.select(columns).to_pylist()
    picked = raw.take(pa.array(versions.current_indices(raw, 1_800_000_000)))
    picked = picked.sort_by([(c, "ascending") for c in cells])
    assert picked.select(columns).to_pylist() == expected.select(columns).to_pylist()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(many_meters_row, min_size=1, max_size=40),
    st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_cells_off_the_grid_are_their_own_cells(
    rows: list[tuple[int | None, ...]], off: list[bool]
) -> None:
    """A row 1 min past a slot end shares the grid slot, not the cell, of the rows at the slot
    end: the two-row shortcut of current_cells must not pair them."""
    raw = many_meters(rows)
    ends = np.asarray(raw.column("interval_end").cast(pa.int64()).to_numpy())
    ends = ends + np.where(off[: len(ends)], 60_000_000, 0)
    raw = raw.set_column(3, "interval_end", pa.array(ends).cast(TS))
    cells = ["meter_key", "interval_end"]
    expected = versions.resolve_current(raw, "meter_key, interval_end").sort_by(
        [(c, "ascending") for c in cells]
    )
    got = versions.current_cells(raw.select(versions.VERSION_ROWS_SCHEMA.names), 1_800_000_000)
    got = got.sort_by([(c, "ascending") for c in cells])
    columns = versions.VERSION_ROWS_SCHEMA.names
    assert got.select(columns).to_pylist() == expected.select(columns).to_pylist()


@settings(max_examples=80, deadline=None)
@given(st.lists(many_meters_row, min_size=1, max_size=40))
def test_measured_rows_agree_with_sql(rows: list[tuple[int | None, ...]]) -> None:
    raw = many_meters(rows)
    store = DuckDBStore()
    try:
        store.append(raw, REGISTER_READS_SCHEMA.empty_table())
        ends = raw.column("interval_end").cast(pa.int64()).to_numpy()
        start, end = int(ends.min()) - 1, int(ends.max())
        scanned = store.read_window_versions(Channel.ACTIVE_FORWARD, Resolution.MIN30, start, end)
    finally:
        store.close()
    # the rule in SQL: rows from the meters, an exact repeat once (the first by tx time)
    expected = duckdb.sql(
        "SELECT meter_key, interval_end, value, source, tx_time FROM scanned "
        f"WHERE source IN {versions.MEASURED_SOURCES} QUALIFY row_number() OVER ("
        "PARTITION BY meter_key, interval_end, value, source ORDER BY tx_time) = 1"
    ).to_arrow_table()
    order = [(c, "ascending") for c in versions.MEASURED_SCHEMA.names]
    several = versions.cells_with_several_rows(scanned, 1_800_000_000)
    for got in (  # counting several rows among measured rows only, or among all (the sweep)
        versions.measured_rows(scanned, 1_800_000_000),
        versions.measured_rows(scanned, 1_800_000_000, several),
    ):
        assert got.sort_by(order).to_pylist() == expected.sort_by(order).to_pylist()


register_row = st.tuples(
    st.integers(0, 2),  # meter
    st.integers(0, 3),  # boundary
    st.one_of(st.none(), st.integers(0, 5)),  # register
    st.sampled_from([1, 2, 3]),  # source
    st.integers(0, 3),  # tx time
)


@settings(max_examples=80, deadline=None)
@given(st.lists(register_row, min_size=1, max_size=30))
def test_latest_register_reads_agree_with_the_store(rows: list[tuple[int, ...]]) -> None:
    reads = pa.Table.from_arrays(
        [
            pa.array([r[0] for r in rows], pa.int32()),
            pa.array([1] * len(rows), pa.uint8()),
            pa.array([r[1] * 1_800_000_000 for r in rows], pa.int64()).cast(TS),
            pa.array([r[2] for r in rows], pa.int32()),
            pa.array([r[3] for r in rows], pa.uint8()),
            pa.array([r[4] for r in rows], pa.int64()).cast(TS),
        ],
        schema=REGISTER_READS_SCHEMA,
    )
    store = DuckDBStore()
    try:
        store.append(READINGS_SCHEMA.empty_table(), reads)
        start, end = 0, 3 * 1_800_000_000
        expected = store.read_register_window(Channel.ACTIVE_FORWARD, start, end)
        scanned = store.read_register_rows(Channel.ACTIVE_FORWARD, start, end)
    finally:
        store.close()
    got = versions.latest_register_reads(scanned, 1_800_000_000)
    order = [(c, "ascending") for c in ("meter_key", "read_at")]
    assert got.sort_by(order).to_pylist() == expected.sort_by(order).to_pylist()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=60),
    st.sampled_from([1, 10**9]),  # dense keys are counted, sparse ones sorted
)
def test_shared_keys_are_those_that_occur_more_than_once(small: list[int], spread: int) -> None:
    key = np.array(small, np.int64) * spread
    counts = Counter(key.tolist())
    expected = [counts[k] > 1 for k in key.tolist()]
    assert versions._shared(key).tolist() == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(many_meters_row, min_size=1, max_size=40))
def test_current_indices_of_meters_far_apart_agree_with_sql(
    rows: list[tuple[int | None, ...]],
) -> None:
    """Meter keys far apart (a report's few cells of a big fleet) number their cells densely
    instead of counting over the whole key range."""
    raw = many_meters([(r[0] * 500_000, *r[1:]) for r in rows])  # type: ignore[operator]
    cells = ["meter_key", "interval_end"]
    expected = versions.resolve_current(raw, "meter_key, interval_end").sort_by(
        [(c, "ascending") for c in cells]
    )
    picked = raw.take(pa.array(versions.current_indices(raw, 1_800_000_000)))
    columns = versions.VERSION_ROWS_SCHEMA.names
    got = picked.sort_by([(c, "ascending") for c in cells]).select(columns)
    assert got.to_pylist() == expected.select(columns).to_pylist()
