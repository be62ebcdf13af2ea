"""The ReadingStore contract. Every test taking ``store`` or ``backend`` runs on each backend
(DuckDB, PostgreSQL: ``tests/mdms/conftest.py``), so both give the same rows for the same rows in.
"""

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from kenshin.core.channels import Channel
from kenshin.core.quality import Quality, Source
from kenshin.core.schema import METERS_SCHEMA, READINGS_SCHEMA, REGISTER_READS_SCHEMA, TIMESTAMP
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.errors import StoreError
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.months import LAYOUT, parse_month
from kenshin.mdms.store import ReadingQuery

DAY = dt.datetime(2026, 4, 1, tzinfo=JST)
US30 = Resolution.MIN30.microseconds
NO_REGISTERS = REGISTER_READS_SCHEMA.empty_table()


def rows(
    meter: int,
    ends_us: list[int],
    values: list[int | None],
    tx_us: int,
    quality: Quality = Quality.RAW,
    *,
    channel: int = 1,
    resolution: int = 30,
) -> pa.Table:
    n = len(values)
    return pa.table(
        {
            "meter_key": pa.array([meter] * n, pa.int32()),
            "channel": pa.array([channel] * n, pa.uint8()),
            "resolution": pa.array([resolution] * n, pa.uint8()),
            "interval_end": pa.array(ends_us, pa.int64()).cast(
                READINGS_SCHEMA.field("interval_end").type
            ),
            "value": pa.array(values, pa.int32()),
            "quality": pa.array([int(quality)] * n, pa.uint8()),
            "source": pa.array([int(Source.METER_PUSH)] * n, pa.uint8()),
            "method": pa.array([0] * n, pa.uint8()),
            "failed_rule": pa.array([0] * n, pa.uint16()),
            "tx_time": pa.array([tx_us] * n, pa.int64()).cast(
                READINGS_SCHEMA.field("tx_time").type
            ),
        },
        schema=READINGS_SCHEMA,
    )


def query(meter: int, as_of_us: int | None = None) -> ReadingQuery:
    start = to_epoch_us(DAY)
    return ReadingQuery(
        meter, Channel.ACTIVE_FORWARD, Resolution.MIN30, start, start + 86400 * 10**6, as_of_us
    )


def roster(n: int) -> pa.Table:
    """A roster of ``n`` meters with every column of METERS_SCHEMA filled, in reverse key order."""
    keys = np.arange(n, dtype=np.int64)[::-1]
    columns = {}
    for field in METERS_SCHEMA:
        if field.name == "supply_point_id":
            columns[field.name] = pa.array([f"03{k:020d}" for k in keys])
        elif pa.types.is_boolean(field.type):
            columns[field.name] = pa.array(keys % 3 == 0)
        elif pa.types.is_floating(field.type):
            columns[field.name] = pa.array((keys * 0.1 + 4.3).astype(np.float32))
        elif field.name == "device_id":
            columns[field.name] = pa.array(keys + 2**40, pa.int64())
        elif field.name == "transformer":
            columns[field.name] = pa.array(np.where(keys == 0, -1, keys), pa.int32())
        else:
            columns[field.name] = pa.array(keys % 100).cast(field.type)
    return pa.table(columns, schema=METERS_SCHEMA)


def test_latest_version_is_current_and_as_of_sees_the_past(store):
    start = to_epoch_us(DAY)
    ends = [start + US30 * i for i in (1, 2, 3)]
    t1, t2 = start + 4 * US30, start + 10 * US30
    store.append(rows(7, ends, [10, 20, 30], t1), NO_REGISTERS)
    store.append(rows(7, ends[1:2], [25], t2, Quality.EDITED), NO_REGISTERS)
    current = store.read(query(7))
    assert current.column("value").to_pylist() == [10, 25, 30]
    assert current.column("quality").to_pylist() == [0, int(Quality.EDITED), 0]
    past = store.read(query(7, as_of_us=t1))
    assert past.column("value").to_pylist() == [10, 20, 30]
    assert store.read(query(7, as_of_us=t1 - 1)).num_rows == 0
    assert store.read(query(8)).num_rows == 0
    assert store.reading_counts() == {30: 4}  # versions are kept, never updated in place


def test_period_is_exclusive_of_start_inclusive_of_end(store):
    start = to_epoch_us(DAY)
    store.append(rows(1, [start, start + US30], [1, 2], start), NO_REGISTERS)
    table = store.read(query(1))
    assert table.column("value").to_pylist() == [2]


def test_read_columns_types_and_order(store):
    start = to_epoch_us(DAY)
    ends = [start + US30 * i for i in (3, 1, 2)]  # stored out of order
    store.append(rows(4, ends, [3, None, 2], start + 10 * US30), NO_REGISTERS)
    table = store.read(query(4))
    assert table.column_names == [
        "interval_end",
        "value",
        "quality",
        "source",
        "method",
        "failed_rule",
        "tx_time",
        "version",
    ]
    assert [table.schema.field(n).type for n in ("value", "quality", "source", "method")] == [
        pa.int32(),
        pa.uint8(),
        pa.uint8(),
        pa.uint8(),
    ]
    assert pa.types.is_timestamp(table.schema.field("interval_end").type)
    ends_out = table.column("interval_end").cast(pa.int64()).to_pylist()
    assert ends_out == sorted(ends)
    assert table.column("value").to_pylist() == [None, 2, 3]  # a missing value stays NULL
    assert table.column("tx_time").cast(pa.int64()).to_pylist() == [start + 10 * US30] * 3


def test_channels_resolutions_and_meters_do_not_mix(store):
    start = to_epoch_us(DAY)
    end = start + US30
    store.append(rows(1, [end], [1], start), NO_REGISTERS)
    store.append(rows(1, [end], [2], start, channel=2), NO_REGISTERS)
    store.append(rows(1, [end], [3], start, resolution=15), NO_REGISTERS)
    store.append(rows(2, [end], [4], start), NO_REGISTERS)
    assert store.read(query(1)).column("value").to_pylist() == [1]
    reverse = ReadingQuery(1, Channel.ACTIVE_REVERSE, Resolution.MIN30, start, end)
    assert store.read(reverse).column("value").to_pylist() == [2]
    fifteen = ReadingQuery(1, Channel.ACTIVE_FORWARD, Resolution.MIN15, start, end)
    assert store.read(fifteen).column("value").to_pylist() == [3]
    assert store.reading_counts() == {15: 1, 30: 3}


def test_latest_interval_end(store):
    start = to_epoch_us(DAY)
    assert store.latest_interval_end(1, Channel.ACTIVE_FORWARD, Resolution.MIN30) is None
    store.append(rows(1, [start + US30, start + 5 * US30], [1, 2], start), NO_REGISTERS)
    store.append(rows(1, [start + 9 * US30], [1], start, channel=2), NO_REGISTERS)
    latest = store.latest_interval_end(1, Channel.ACTIVE_FORWARD, Resolution.MIN30)
    assert latest == start + 5 * US30
    assert store.latest_interval_end(2, Channel.ACTIVE_FORWARD, Resolution.MIN30) is None


def test_meta_round_trip_and_read_only_refuses_writes(backend):
    s = backend.open()
    s.set_meta("fleet", '{"seed": 1}')
    s.set_meta("fleet", '{"seed": 2}')
    assert s.get_meta("fleet") == '{"seed": 2}'
    assert s.get_meta("nothing") is None
    s.close()
    ro = backend.open(read_only=True)
    assert ro.get_meta("fleet") == '{"seed": 2}'
    with pytest.raises(StoreError, match="append"):
        ro.append(rows(1, [0], [1], 0), NO_REGISTERS)
    ro.close()


def test_unopenable_store_raises_store_error(tmp_path):
    (tmp_path / "dir.duckdb").mkdir()
    with pytest.raises(StoreError, match="cannot open"):
        DuckDBStore(tmp_path / "dir.duckdb")


def test_registers_append(store):
    table = pa.table(
        {
            "meter_key": pa.array(np.arange(3), pa.int32()),
            "channel": pa.array([1, 1, 1], pa.uint8()),
            "read_at": pa.array([0, 0, 0], pa.int64()).cast(
                REGISTER_READS_SCHEMA.field("read_at").type
            ),
            "register": pa.array([99_999_999, 0, 5], pa.int32()),
            "source": pa.array([1, 1, 1], pa.uint8()),
            "tx_time": pa.array([0, 0, 0], pa.int64()).cast(
                REGISTER_READS_SCHEMA.field("tx_time").type
            ),
        },
        schema=REGISTER_READS_SCHEMA,
    )
    store.append(READINGS_SCHEMA.empty_table(), table)
    assert store.reading_counts() == {}


def test_empty_append_is_a_no_op(store):
    store.append(READINGS_SCHEMA.empty_table(), NO_REGISTERS)
    assert store.reading_counts() == {}


def test_meter_roster(store):
    meters = roster(5)
    store.write_meters(meters)
    assert store.meter_count() == 5
    page = store.list_meters(1, 2)
    assert [m["meter_key"] for m in page] == [1, 2]
    expected = {name: meters.column(name)[3].as_py() for name in METERS_SCHEMA.names}  # key 1
    assert page[0] == expected
    assert list(page[0]) == METERS_SCHEMA.names
    found = store.find_meter(expected["supply_point_id"])
    assert found == expected
    assert store.find_meter("0" * 22) is None
    whole = store.read_meters()
    assert whole.schema == METERS_SCHEMA
    assert whole.column("meter_key").to_pylist() == [0, 1, 2, 3, 4]
    assert whole.equals(meters.sort_by("meter_key"))
    store.write_meters(roster(2))  # replaces, never adds
    assert store.meter_count() == 2
    assert store.list_meters(0, 10)[-1]["meter_key"] == 1


def test_empty_roster(store):
    assert store.meter_count() == 0
    assert store.list_meters(0, 10) == []
    assert store.read_meters().schema == METERS_SCHEMA
    assert store.read_meters().num_rows == 0


def test_replay_windows_commit_with_the_values(store) -> None:
    """The head-end's replay windows go in with the values they let in, and come back."""

    keys = np.array([3, 1, 7], dtype=np.int64)
    last = np.array([10, 0, 2**31], dtype=np.int64)
    bitmap = np.array([1, 2**63 + 5, 2**64 - 1], dtype=np.uint64)  # the top bit survives
    store.append(
        READINGS_SCHEMA.empty_table(), REGISTER_READS_SCHEMA.empty_table(), (keys, last, bitmap)
    )
    store.append(
        READINGS_SCHEMA.empty_table(),
        REGISTER_READS_SCHEMA.empty_table(),
        (np.array([1]), np.array([11]), np.array([3], dtype=np.uint64)),
    )
    got_keys, got_last, got_bitmap = store.load_counters()
    order = np.argsort(got_keys)
    assert got_keys[order].tolist() == [1, 3, 7]
    assert got_last[order].tolist() == [11, 10, 2**31]
    assert got_bitmap[order].tolist() == [3, 1, 2**64 - 1]


def test_midnight_register_reads_of_the_old_layout_move_to_the_month_they_close(tmp_path):
    """Layout 1 filed the register read at 00:00 on the 1st under the month it starts."""
    path = tmp_path / "old.duckdb"
    store = DuckDBStore(path)
    midnight = to_epoch_us(DAY)  # 2026-04-01 00:00 JST closes March
    reads = pa.table(
        {
            "meter_key": pa.array([1, 1], pa.int32()),
            "channel": pa.array([1, 1], pa.uint8()),
            "read_at": pa.array([midnight, midnight + US30]).cast(TIMESTAMP),
            "register": pa.array([100, 101], pa.int32()),
            "source": pa.array([1, 1], pa.uint8()),
            "tx_time": pa.array([midnight, midnight + US30]).cast(TIMESTAMP),
        },
        schema=REGISTER_READS_SCHEMA,
    )
    store.append(READINGS_SCHEMA.empty_table(), reads)
    assert store.export_month("register_reads", parse_month("2026-03")).num_rows == 1
    # make it look like layout 1: the midnight read in April's table, no layout recorded
    con = store._cursor()
    con.execute("INSERT INTO register_reads_2026_04 SELECT * FROM register_reads_2026_03")
    con.execute("DROP TABLE register_reads_2026_03")
    con.execute("DELETE FROM meta WHERE key = 'layout'")
    store.close()

    store = DuckDBStore(path)
    march = store.export_month("register_reads", parse_month("2026-03"))
    april = store.export_month("register_reads", parse_month("2026-04"))
    assert march.column("register").to_pylist() == [100]
    assert april.column("register").to_pylist() == [101]
    assert store.get_meta("layout") == LAYOUT
    rows_ = store.read_register_rows(Channel.ACTIVE_FORWARD, midnight, midnight + US30)
    assert sorted(rows_.column("register").to_pylist()) == [100, 101]
    store.close()


def test_duckdb_tables_are_made_from_the_arrow_schemas(tmp_path):
    """The DDL comes from the core's schemas: every column, in order, with its mapped type."""
    from kenshin.mdms import versions as v
    from kenshin.mdms.duckdb_schema import duckdb_type

    store = DuckDBStore(tmp_path / "ddl.duckdb")
    store.append(rows(1, [to_epoch_us(DAY) + US30], [5], to_epoch_us(DAY)), NO_REGISTERS)
    con = store._cursor()
    for table, schema in (
        ("meters", METERS_SCHEMA),
        ("gaps", v.GAPS_SCHEMA),
        ("edits", v.EDITS_SCHEMA),
        ("readings_2026_04", READINGS_SCHEMA),
    ):
        described = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()]
        wanted = [(f.name, duckdb_type(f.type)) for f in schema]
        assert described == [
            (n, t.replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")) for n, t in wanted
        ]
    store.close()


def test_the_wal_is_folded_at_a_gigabyte_and_a_bad_setting_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """At 16 MB (DuckDB's default) the nightly sweep's appends at 1,000,000 meters cost 8× more
    (docs/mdms.md): the store sets 1 GB unless told otherwise, and refuses what DuckDB cannot
    parse with the setting's name, creating no file."""
    store = DuckDBStore(tmp_path / "a.duckdb")
    setting = store._cursor().execute("SELECT current_setting('checkpoint_threshold')")
    assert setting.fetchone() == ("953.6 MiB",)  # 1 GB
    store.close()
    small = DuckDBStore(tmp_path / "b.duckdb", checkpoint_threshold="16MB")
    setting = small._cursor().execute("SELECT current_setting('checkpoint_threshold')")
    assert setting.fetchone() == ("15.2 MiB",)
    small.close()
    with pytest.raises(StoreError, match="checkpoint_threshold 'lots'"):
        DuckDBStore(tmp_path / "c.duckdb", checkpoint_threshold="lots")
    with pytest.raises(StoreError, match="memory_limit 'most'"):
        DuckDBStore(tmp_path / "c.duckdb", memory_limit="most")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.duckdb", "b.duckdb"]
