"""What only the PostgreSQL store has: monthly partitions, binary COPY edge values, connections.

The store contract itself (versions, as_of, roster, meta) runs on both backends in
``test_duckdb_store.py``.
"""

import datetime as dt
import struct
import threading
import time

import numpy as np
import psycopg
import pyarrow as pa
import pytest

from kenshin.core.channels import Channel
from kenshin.core.schema import METERS_SCHEMA, READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.errors import StoreError
from kenshin.mdms.months import LAYOUT, partition_name, row_months
from kenshin.mdms.pgcopy import COPY_HEADER, COPY_TRAILER, conform, encode_copy
from kenshin.mdms.postgres_schema import READING_COLUMNS
from kenshin.mdms.postgres_store import PostgresStore
from kenshin.mdms.store import ReadingQuery
from tests.mdms.conftest import postgres_dsn, unique_schema
from tests.mdms.test_duckdb_store import NO_REGISTERS, roster, rows

US30 = Resolution.MIN30.microseconds
TS = READINGS_SCHEMA.field("interval_end").type


def us(*args: int) -> int:
    return to_epoch_us(dt.datetime(*args, tzinfo=JST))


def stored_partitions(store: PostgresStore, parent: str) -> dict[str, list[int]]:
    """Epoch µs of the stored timestamps by the partition that holds them."""
    column = "interval_end" if parent == "readings" else "read_at"
    conn = psycopg.connect(store.dsn)
    try:
        result = conn.execute(
            f"SELECT tableoid::regclass::text, "
            f"(extract(epoch FROM {column}) * 1000000)::bigint "
            f"FROM {store.schema}.{parent} ORDER BY 2"
        ).fetchall()
    finally:
        conn.close()
    out: dict[str, list[int]] = {}
    for table, value in result:
        out.setdefault(table.split(".")[-1], []).append(int(value))
    return out


# ---- months and partitions


def test_partition_names_are_row_months():
    # a row stamped 00:00 on the 1st (JST) closes the month before (kenshin.mdms.months)
    april = us(2026, 4, 1)
    assert partition_name("readings", row_months(np.array([april]))[0]) == "readings_2026_03"
    assert [partition_name("r", m) for m in row_months(np.array([april, april + 1]))] == [
        "r_2026_03",
        "r_2026_04",
    ]
    # only the months present, not every month in between
    months = row_months(np.array([1, us(2026, 4, 2), us(2026, 4, 3)]))
    assert [partition_name("r", m) for m in months] == ["r_1970_01", "r_2026_04"]
    assert row_months(np.zeros(0, np.int64)) == []


def test_partitions_are_created_per_jst_month_on_demand(pg_store):
    assert pg_store.partitions("readings") == []
    last_march = us(2026, 3, 31, 23, 30)
    midnight = us(2026, 4, 1)  # the end of March's last slot, in the March partition
    may = us(2026, 5, 1)
    ends = [last_march, midnight, midnight + US30, may]
    pg_store.append(rows(1, ends, [1, 2, 3, 4], may), NO_REGISTERS)
    assert pg_store.partitions("readings") == ["readings_2026_03", "readings_2026_04"]
    assert stored_partitions(pg_store, "readings") == {
        "readings_2026_03": [last_march, midnight],
        "readings_2026_04": [midnight + US30, may],
    }
    # each partition carries the point-read index
    conn = psycopg.connect(pg_store.dsn)
    indexed = conn.execute(
        "SELECT tablename FROM pg_indexes WHERE schemaname = %s AND indexdef LIKE %s",
        [pg_store.schema, "%(meter_key, channel, resolution, interval_end)%"],
    ).fetchall()
    conn.close()
    assert {"readings_2026_03", "readings_2026_04"} <= {r[0] for r in indexed}
    # a read across the month boundary sees both partitions
    table = pg_store.read(
        ReadingQuery(1, Channel.ACTIVE_FORWARD, Resolution.MIN30, last_march - US30, may)
    )
    assert table.column("value").to_pylist() == [1, 2, 3, 4]


def test_register_reads_are_partitioned_too(pg_store):
    at = [us(2026, 4, 30, 23, 30), us(2026, 5, 1), us(2026, 5, 1, 0, 30)]
    pg_store.append(READINGS_SCHEMA.empty_table(), registers_table([3, 3, 3], at, [5, 6, 7]))
    assert (
        stored_partitions(pg_store, "register_reads")
        == {
            "register_reads_2026_04": at[:2],  # the midnight read closes April
            "register_reads_2026_05": at[2:],
        }
    )
    assert pg_store.partitions("readings") == []


def test_a_store_of_the_old_month_layout_is_refused(pg_store):
    """Layout 1 partitioned [1st, next 1st): its midnight rows sit in the other month."""
    conn = psycopg.connect(pg_store.dsn, autocommit=True)
    try:
        conn.execute(
            f"CREATE TABLE {pg_store.schema}.readings_2026_04 PARTITION OF "
            f"{pg_store.schema}.readings FOR VALUES FROM ('2026-04-01 00:00:00+09') "
            "TO ('2026-05-01 00:00:00+09')"
        )
        conn.execute(f"DELETE FROM {pg_store.schema}.meta WHERE key = 'layout'")
    finally:
        conn.close()
    with pytest.raises(StoreError, match=r"older kenshin.*layout 1"):
        PostgresStore(pg_store.dsn, schema=pg_store.schema)


def test_a_new_store_records_its_layout(pg_store):
    assert pg_store.get_meta("layout") == LAYOUT
    again = PostgresStore(pg_store.dsn, schema=pg_store.schema)  # opening again is fine
    again.close()


def test_concurrent_partition_creation_from_two_stores():
    dsn, schema = postgres_dsn(), unique_schema()
    stores = [PostgresStore(dsn, schema=schema) for _ in range(2)]
    months = row_months(np.array([us(2020 + i // 12, i % 12 + 1, 1) for i in range(36)]))
    barrier = threading.Barrier(2)
    created: list[list[str]] = [[], []]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            created[i] = stores[i].ensure_partitions("readings", months)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        # every month created exactly once, by one store or the other
        assert sorted(created[0] + created[1]) == sorted(
            partition_name("readings", m) for m in months
        )
        assert len(stores[0].partitions("readings")) == 36
    finally:
        stores[0].drop_schema()
        for s in stores:
            s.close()


def test_concurrent_appends_into_new_months_from_two_stores():
    dsn, schema = postgres_dsn(), unique_schema()
    stores = [PostgresStore(dsn, schema=schema) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            for month in range(1, 13):
                end = us(2027, month, 2)
                stores[i].append(rows(i, [end, end + US30], [month, month], end), NO_REGISTERS)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert stores[0].reading_counts() == {30: 48}
        assert len(stores[1].partitions("readings")) == 12
    finally:
        stores[0].drop_schema()
        for s in stores:
            s.close()


def test_append_recreates_a_partition_dropped_behind_its_back(pg_store):
    end = us(2026, 4, 2)
    pg_store.append(rows(1, [end], [1], end), NO_REGISTERS)
    other = PostgresStore(pg_store.dsn, schema=pg_store.schema)
    conn = psycopg.connect(pg_store.dsn, autocommit=True)
    conn.execute(f"DROP TABLE {pg_store.schema}.readings_2026_04")
    conn.close()
    pg_store.append(rows(1, [end], [2], end), NO_REGISTERS)  # its cache said: exists
    assert other.reading_counts() == {30: 1}
    other.close()


# ---- binary COPY


def registers_table(keys: list[int], read_at: list[int], registers: list[int | None]) -> pa.Table:
    n = len(registers)
    keys = keys * n if len(keys) == 1 else keys
    return pa.table(
        {
            "meter_key": pa.array(keys, pa.int32()),
            "channel": pa.array([1] * n, pa.uint8()),
            "read_at": pa.array(read_at, pa.int64()).cast(TS),
            "register": pa.array(registers, pa.int32()),
            "source": pa.array([255] * n, pa.uint8()),
            "tx_time": pa.array(read_at, pa.int64()).cast(TS),
        },
        schema=REGISTER_READS_SCHEMA,
    )


def test_binary_copy_of_edge_values(pg_store):
    int32 = np.iinfo(np.int32)
    ends = [
        0,  # 1970: before PostgreSQL's 2000 epoch, negative on the wire
        to_epoch_us(dt.datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)),
        to_epoch_us(dt.datetime(2000, 1, 1, tzinfo=dt.UTC)),
        us(2026, 4, 1) - 1,  # one µs before April (JST)
        us(2026, 4, 1),
        us(2099, 12, 31, 23, 30),
    ]
    values = [int32.min, int32.max, 0, -1, 99_999_999, None]
    n = len(ends)
    table = pa.table(
        {
            "meter_key": pa.array([int32.max] * n, pa.int32()),
            "channel": pa.array([255] * n, pa.uint8()),
            "resolution": pa.array([30] * n, pa.uint8()),
            "interval_end": pa.array(ends, pa.int64()).cast(TS),
            "value": pa.array(values, pa.int32()),
            "quality": pa.array([255, 0, 1, 2, 3, 4], pa.uint8()),
            "source": pa.array([0, 255, 1, 1, 1, 1], pa.uint8()),
            "method": pa.array([255, None, 0, 0, 0, 0], pa.uint8()),
            "failed_rule": pa.array([65535, 0, 1, 2, 3, None], pa.uint16()),
            "tx_time": pa.array([ends[-1] + 1] * n, pa.int64()).cast(TS),
        },
        schema=READINGS_SCHEMA,
    )
    pg_store.append(table, registers_table([int32.min], ends[:3], [99_999_999, 0, None]))
    got = pg_store.read(ReadingQuery(int32.max, 255, Resolution.MIN30, -1, ends[-1]))
    assert got.column("version").to_pylist() == [1] * n
    got = got.drop_columns(["version"])
    expected = table.select(got.column_names).to_pylist()
    assert got.to_pylist() == expected
    assert got.column("interval_end").cast(pa.int64()).to_pylist() == ends
    conn = psycopg.connect(pg_store.dsn)
    stored = conn.execute(
        f"SELECT meter_key, register, source, read_at FROM {pg_store.schema}.register_reads "
        "ORDER BY read_at"
    ).fetchall()
    conn.close()
    assert [(k, r, s) for k, r, s, _ in stored] == [
        (int32.min, 99_999_999, 255),
        (int32.min, 0, 255),
        (int32.min, None, 255),
    ]
    assert [to_epoch_us(t) for *_, t in stored] == ends[:3]


def test_encoder_writes_the_pgcopy_format():
    table = conform(rows(7, [us(2026, 4, 1)], [-2], us(2026, 4, 2)), READING_COLUMNS, "r")
    data = bytes(encode_copy(table, READING_COLUMNS))
    assert data.startswith(COPY_HEADER)
    assert data.endswith(COPY_TRAILER)
    row = data[len(COPY_HEADER) : -len(COPY_TRAILER)]
    pg_epoch = to_epoch_us(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    fields = ">h" + "ii" + "ih" + "ih" + "iq" + "ii" + "ih" * 3 + "ii" + "iq"
    expected = struct.pack(
        fields,
        10,  # field count, then (length, value) per column
        4, 7,
        2, 1,
        2, 30,
        8, us(2026, 4, 1) - pg_epoch,
        4, -2,
        2, 0,
        2, 1,
        2, 0,
        4, 0,  # failed_rule: uint16 needs a PostgreSQL integer
        8, us(2026, 4, 2) - pg_epoch,
    )  # fmt: skip
    assert row == expected


def test_encoder_null_layouts_and_chunks(pg_store):
    """Rows with NULLs in different columns take different layouts; all arrive."""
    rng = np.random.default_rng(3)
    n = 5_000
    start = us(2026, 4, 1)
    values = rng.integers(-(2**31), 2**31 - 1, n, dtype=np.int64)
    value_null = rng.random(n) < 0.2
    method_null = rng.random(n) < 0.2
    table = pa.table(
        {
            "meter_key": pa.array(rng.integers(0, 50, n), pa.int32()),
            "channel": pa.array(rng.integers(1, 5, n), pa.uint8()),
            "resolution": pa.array(np.full(n, 30), pa.uint8()),
            "interval_end": pa.array(start + US30 * np.arange(n), pa.int64()).cast(TS),
            "value": pa.array(values, pa.int32(), mask=value_null),
            "quality": pa.array(rng.integers(0, 256, n), pa.uint8()),
            "source": pa.array(rng.integers(0, 256, n), pa.uint8()),
            "method": pa.array(rng.integers(0, 256, n), pa.uint8(), mask=method_null),
            "failed_rule": pa.array(rng.integers(0, 65536, n), pa.uint16()),
            "tx_time": pa.array(start + US30 * np.arange(n) + 7, pa.int64()).cast(TS),
        },
        schema=READINGS_SCHEMA,
    )
    pg_store.append(table, NO_REGISTERS)
    conn = psycopg.connect(pg_store.dsn)
    got = conn.execute(
        f"SELECT meter_key, channel, value, quality, source, method, "
        f"(extract(epoch FROM interval_end) * 1000000)::bigint FROM {pg_store.schema}.readings "
        "ORDER BY interval_end"
    ).fetchall()
    conn.close()
    expected = list(
        zip(
            table.column("meter_key").to_pylist(),
            table.column("channel").to_pylist(),
            table.column("value").to_pylist(),
            table.column("quality").to_pylist(),
            table.column("source").to_pylist(),
            table.column("method").to_pylist(),
            table.column("interval_end").cast(pa.int64()).to_pylist(),
            strict=True,
        )
    )
    assert got == expected
    assert len(pg_store.partitions("readings")) > 1  # 5,000 half hours span several months


def test_roster_text_nulls_and_unicode(pg_store):
    meters = roster(4)
    ids = ["03" + "1" * 20, "", None, '東京電力パワーグリッド,"quoted"\nline']
    meters = meters.set_column(
        METERS_SCHEMA.get_field_index("supply_point_id"), "supply_point_id", pa.array(ids)
    )
    pg_store.write_meters(meters)
    back = pg_store.read_meters()
    assert back.equals(meters.sort_by("meter_key"))
    listed = pg_store.list_meters(0, 10)
    assert [m["supply_point_id"] for m in listed] == back.column("supply_point_id").to_pylist()
    assert pg_store.find_meter("") is not None
    assert pg_store.find_meter(ids[3])["meter_key"] == 0


def test_roster_of_many_meters_round_trips(pg_store):
    meters = roster(300_000)
    pg_store.write_meters(meters)
    back = pg_store.read_meters()
    assert back.equals(meters.sort_by("meter_key"))


# ---- connections and threads


def test_bad_dsn_and_unreachable_server_raise_store_error():
    with pytest.raises(StoreError, match="invalid PostgreSQL DSN"):
        PostgresStore("host=127.0.0.1 nonsense", schema="x")
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as info:
        PostgresStore("postgresql://postgres:secret@127.0.0.1:1/test", connect_timeout=2)
    assert "secret" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)


def test_unknown_database_and_bad_schema_name():
    postgres_dsn()
    with pytest.raises(StoreError, match="cannot connect"):
        PostgresStore("postgresql://postgres@127.0.0.1:5432/no_such_database_kenshin")
    with pytest.raises(StoreError, match="schema name"):
        PostgresStore(postgres_dsn(), schema="Robert'); DROP TABLE students;--")


def test_read_only_store_needs_an_existing_schema():
    with pytest.raises(StoreError, match="schema is missing"):
        PostgresStore(postgres_dsn(), schema=unique_schema(), read_only=True)


def test_closed_store_refuses_use(pg_store):
    other = PostgresStore(pg_store.dsn, schema=pg_store.schema)
    other.close()
    with pytest.raises(StoreError, match="closed"):
        other.meter_count()


def kenshin_connections(dsn: str, application: str, settles_to: int | None = None) -> int:
    """Backends open for ``application``. A closed connection's backend leaves
    ``pg_stat_activity`` a moment after the client closed it, so with ``settles_to`` the count
    is taken again for up to 5 s until it reaches that number (the last count is returned)."""
    deadline = time.monotonic() + 5.0
    while True:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application]
            ).fetchone()
        assert row is not None
        count = int(row[0])
        if settles_to is None or count == settles_to or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def test_writer_and_reader_threads_share_a_store(pg_store):
    application = unique_schema()
    store = PostgresStore(f"{pg_store.dsn}?application_name={application}", schema=pg_store.schema)
    try:
        _threads_share_a_store(store, pg_store.dsn, application)
    finally:
        store.close()  # a failed assertion must not leave connections for a later test's GC


def _threads_share_a_store(store: PostgresStore, dsn: str, application: str) -> None:
    start = us(2026, 4, 1)
    day = ReadingQuery(1, Channel.ACTIVE_FORWARD, Resolution.MIN30, start, start + 86400 * 10**6)
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for slot in range(1, 41):
                end = start + slot * US30
                store.append(rows(1, [end], [slot], end), NO_REGISTERS)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                values = store.read(day).column("value").to_pylist()
                assert values == list(range(1, len(values) + 1))  # every commit is whole
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.read(day).num_rows == 40
    assert kenshin_connections(dsn, application) == 5  # the creating thread's + 4
    # those threads have ended: the next thread's connection closes theirs
    late = threading.Thread(target=store.meter_count)
    late.start()
    late.join()
    assert kenshin_connections(dsn, application, settles_to=2) == 2
    store.close()
    assert kenshin_connections(dsn, application, settles_to=0) == 0


def test_drop_schema_removes_everything(pg_store):
    end = us(2026, 4, 2)
    pg_store.append(rows(1, [end], [1], end), NO_REGISTERS)
    pg_store.drop_schema()
    conn = psycopg.connect(pg_store.dsn)
    found = conn.execute(
        "SELECT count(*) FROM pg_namespace WHERE nspname = %s", [pg_store.schema]
    ).fetchone()
    conn.close()
    assert found == (0,)


# ---- a head-end worker's replay windows commit with its values


def _stored_rows(store: PostgresStore) -> int:
    with psycopg.connect(store.dsn) as conn:
        found = conn.execute(f"SELECT count(*) FROM {store.schema}.readings").fetchone()
    assert found is not None
    return int(found[0])


def test_a_guard_on_the_store_connection_commits_with_the_values(pg_store):
    """The guard's admissions and the values they let in are one transaction: a worker that
    dies after writing the values but before committing leaves neither (the redelivered frame
    is admitted again and stored once); once committed, both are final."""
    from kenshin.aroute.replay_postgres import PostgresReplayGuard

    end = us(2026, 4, 1, 0, 30)
    keys, counters = np.array([3], dtype=np.int32), np.array([7], dtype=np.int64)

    def worker() -> PostgresReplayGuard:
        return PostgresReplayGuard(
            pg_store.dsn, pg_store.schema, hold=True, connection=pg_store.connection
        )

    guard = worker()
    assert guard.admit(keys, counters).tolist() == [True]
    pg_store.append(rows(3, [end], [5], end), NO_REGISTERS)
    assert _stored_rows(pg_store) == 0  # not yet visible: the guard's transaction is open
    pg_store.connection().close()  # the worker dies here, before its commit
    assert _stored_rows(pg_store) == 0
    guard = worker()  # restarted, on a fresh connection
    assert guard.admit(keys, counters).tolist() == [True]  # redelivered: admitted afresh
    pg_store.append(rows(3, [end], [5], end), NO_REGISTERS)
    guard.stored()
    assert _stored_rows(pg_store) == 1
    assert guard.admit(keys, counters).tolist() == [False]  # the next redelivery is refused
    guard.stored()
    assert _stored_rows(pg_store) == 1


def test_opening_a_complete_store_takes_no_table_lock(pg_store):
    """A restarted worker opens the store while another writes: no DDL (which takes an
    exclusive lock even when it changes nothing) may wait on the writer's open transaction."""
    end = us(2026, 4, 1, 0, 30)
    pg_store.append(rows(3, [end], [5], end), NO_REGISTERS)  # the partition exists
    writer = psycopg.connect(pg_store.dsn)  # a transaction left open, holding a write lock
    writer.execute(
        f"INSERT INTO {pg_store.schema}.readings (meter_key, channel, resolution, interval_end, "
        f"value, quality, method, source, tx_time) SELECT meter_key, channel, resolution, "
        f"interval_end, value, quality, method, source, tx_time FROM {pg_store.schema}.readings"
    )
    opened: list[PostgresStore] = []
    other = threading.Thread(
        target=lambda: opened.append(PostgresStore(pg_store.dsn, schema=pg_store.schema))
    )
    other.start()
    other.join(timeout=15)
    blocked = other.is_alive()
    writer.rollback()
    writer.close()
    other.join()
    for store in opened:
        store.close()
    assert not blocked, "opening the store waited on another writer's transaction"


def test_a_worker_reading_before_writing_a_new_month_does_not_stall(pg_store):
    """Inside a worker's held transaction (the replay guard's admissions wait for the values)
    the comparison of answers and late frames with the store reads the readings and register
    tables, which locks their parents until commit; the append that follows needs a partition
    for a month not seen yet, created on a connection of its own. It once waited on that lock
    until its timeout (30 s), batch after batch: the partitions are now made before the read."""
    from kenshin.aroute.replay_postgres import PostgresReplayGuard

    end = us(2026, 9, 1, 0, 30)  # a month no test has written
    guard = PostgresReplayGuard(
        pg_store.dsn, pg_store.schema, hold=True, connection=pg_store.connection
    )
    assert guard.admit(np.array([3], np.int32), np.array([9], np.int64)).tolist() == [True]
    held = pg_store.read_cell_versions(
        Channel.ACTIVE_FORWARD, Resolution.MIN30, np.array([3], np.int32), np.array([end])
    )
    assert held.num_rows == 0
    assert pg_store.read_register_rows(Channel.ACTIVE_FORWARD, end, end).num_rows == 0
    pg_store.append(rows(3, [end], [5], end), registers_table([3], [end], [70]))
    guard.stored()
    assert _stored_rows(pg_store) == 1
