import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from kenshin.core.channels import Channel
from kenshin.core.quality import Quality, Source
from kenshin.core.schema import READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.errors import StoreError
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.store import ReadingQuery

DAY = dt.datetime(2026, 4, 1, tzinfo=JST)
US30 = Resolution.MIN30.microseconds


def rows(
    meter: int, ends_us: list[int], values: list[int], tx_us: int, quality: Quality = Quality.RAW
) -> pa.Table:
    n = len(values)
    return pa.table(
        {
            "meter_key": pa.array([meter] * n, pa.int32()),
            "channel": pa.array([1] * n, pa.uint8()),
            "resolution": pa.array([30] * n, pa.uint8()),
            "interval_end": pa.array(ends_us, pa.int64()).cast(
                READINGS_SCHEMA.field("interval_end").type
            ),
            "value": pa.array(values, pa.int32()),
            "quality": pa.array([int(quality)] * n, pa.uint8()),
            "source": pa.array([int(Source.METER_PUSH)] * n, pa.uint8()),
            "method": pa.array([0] * n, pa.uint8()),
            "tx_time": pa.array([tx_us] * n, pa.int64()).cast(
                READINGS_SCHEMA.field("tx_time").type
            ),
        },
        schema=READINGS_SCHEMA,
    )


@pytest.fixture
def store(tmp_path):
    s = DuckDBStore(tmp_path / "t.duckdb")
    yield s
    s.close()


def query(meter: int, as_of_us: int | None = None) -> ReadingQuery:
    start = to_epoch_us(DAY)
    return ReadingQuery(
        meter, Channel.ACTIVE_FORWARD, Resolution.MIN30, start, start + 86400 * 10**6, as_of_us
    )


def test_latest_version_is_current_and_as_of_sees_the_past(store):
    start = to_epoch_us(DAY)
    ends = [start + US30 * i for i in (1, 2, 3)]
    t1, t2 = start + 4 * US30, start + 10 * US30
    store.append(rows(7, ends, [10, 20, 30], t1), REGISTER_READS_SCHEMA.empty_table())
    store.append(rows(7, ends[1:2], [25], t2, Quality.EDITED), REGISTER_READS_SCHEMA.empty_table())
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
    store.append(rows(1, [start, start + US30], [1, 2], start), REGISTER_READS_SCHEMA.empty_table())
    table = store.read(query(1))
    assert table.column("value").to_pylist() == [2]


def test_meta_round_trip_and_read_only_refuses_writes(tmp_path):
    path = tmp_path / "m.duckdb"
    s = DuckDBStore(path)
    s.set_meta("fleet", '{"seed": 1}')
    s.set_meta("fleet", '{"seed": 2}')
    assert s.get_meta("fleet") == '{"seed": 2}'
    assert s.get_meta("nothing") is None
    s.close()
    ro = DuckDBStore(path, read_only=True)
    assert ro.get_meta("fleet") == '{"seed": 2}'
    with pytest.raises(StoreError, match="append"):
        ro.append(rows(1, [0], [1], 0), REGISTER_READS_SCHEMA.empty_table())
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
