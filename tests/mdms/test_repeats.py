"""Re-read and poll answers equal to what is stored write no version (issue 12 item 7, SPEC S2);
on each backend through the MDMS writer, and counted in a small wire-mode day."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kenshin.app.system import build_system
from kenshin.core.batches import ReadingBatch
from kenshin.core.channels import Channel
from kenshin.core.quality import EstimationMethod, Quality, Source
from kenshin.core.schema import REGISTER_READS_SCHEMA
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.fleet.simulator import FleetConfig
from kenshin.mdms.service import MeterDataService
from kenshin.mdms.store import ReadingQuery, ReadingStore
from tests.mdms.test_duckdb_store import rows

DAY = to_epoch_us(dt.datetime(2026, 4, 1, tzinfo=JST))
SLOT = 30 * 60_000_000
ENDS = [DAY + i * SLOT for i in range(1, 5)]
PUSHED = [10, 11, 12, 13]
TX = DAY + 6 * SLOT


def _as(table: pa.Table, source: Source, method: EstimationMethod | None = None) -> pa.Table:
    i = table.schema.get_field_index("source")
    table = table.set_column(i, "source", pa.array([int(source)] * table.num_rows, pa.uint8()))
    if method is not None:
        j = table.schema.get_field_index("method")
        table = table.set_column(j, "method", pa.array([int(method)] * table.num_rows, pa.uint8()))
    return table


def _push(values: list[int | None] = PUSHED, tx: int = TX) -> pa.Table:
    return rows(1, ENDS[: len(values)], values, tx)


def _answer(values: list[int | None], tx: int, source: Source = Source.REREAD) -> pa.Table:
    return _as(rows(1, ENDS[: len(values)], values, tx), source)


def _ingest(service: MeterDataService, *tables: pa.Table) -> None:
    for table in tables:
        service.ingest(ReadingBatch(table, _no_registers()))
    service.flush()


def _stored_rows(store: ReadingStore) -> int:
    return sum(store.reading_counts().values())


def _versions(store: ReadingStore) -> pa.Table:
    return store.read_versions(
        ReadingQuery(1, Channel.ACTIVE_FORWARD, Resolution.MIN30, DAY, ENDS[-1])
    )


@pytest.fixture
def service(store: ReadingStore) -> MeterDataService:
    return MeterDataService(store, background=False)


@pytest.mark.parametrize("source", [Source.REREAD, Source.POLL])
def test_identical_answer_writes_no_row(
    store: ReadingStore, service: MeterDataService, source: Source
) -> None:
    _ingest(service, _push())
    before = _stored_rows(store)
    _ingest(service, _answer(PUSHED, TX + SLOT, source))
    assert _stored_rows(store) == before == 4
    assert service.stats.repeats_dropped == 4
    assert set(_versions(store).column("version").to_pylist()) == {1}


def test_different_answer_is_one_new_version(
    store: ReadingStore, service: MeterDataService
) -> None:
    _ingest(service, _push())
    _ingest(service, _answer([10, 99, 12, 13], TX + SLOT))  # slot 2 corrected by the meter
    assert _stored_rows(store) == 5
    assert service.stats.repeats_dropped == 3
    history = _versions(store)
    slot2 = history.filter(pc.equal(history.column("interval_end"), history.column(0)[1]))
    assert slot2.column("value").to_pylist() == [11, 99]
    assert slot2.column("source").to_pylist() == [int(Source.METER_PUSH), int(Source.REREAD)]
    current = store.read(ReadingQuery(1, Channel.ACTIVE_FORWARD, Resolution.MIN30, DAY, ENDS[-1]))
    assert current.column("value").to_pylist() == [10, 99, 12, 13]


def test_answer_equal_to_an_estimate_is_still_stored(
    store: ReadingStore, service: MeterDataService
) -> None:
    # VEE estimated the slots; the meter's answer happens to carry the same counts: the measured
    # value supersedes the estimate (a new version), as before
    estimate = _as(rows(1, ENDS, PUSHED, TX, Quality.ESTIMATED), Source.ESTIMATE)
    estimate = estimate.set_column(
        estimate.schema.get_field_index("method"),
        "method",
        pa.array([int(EstimationMethod.LINEAR)] * 4, pa.uint8()),
    )
    store.append(estimate, _no_registers())
    _ingest(service, _answer(PUSHED, TX + SLOT))
    assert _stored_rows(store) == 8
    assert service.stats.repeats_dropped == 0
    current = store.read(ReadingQuery(1, Channel.ACTIVE_FORWARD, Resolution.MIN30, DAY, ENDS[-1]))
    assert set(current.column("quality").to_pylist()) == {int(Quality.VALID)}


def _no_registers() -> pa.Table:
    return REGISTER_READS_SCHEMA.empty_table()


def test_repeats_within_one_flush(store: ReadingStore, service: MeterDataService) -> None:
    # a push and its re-read, then the same re-read answered twice, all in one buffer
    for table in (_push(), _answer(PUSHED, TX + SLOT), _answer(PUSHED, TX + 2 * SLOT)):
        service.ingest(ReadingBatch(table, _no_registers()))
    service.flush()
    assert _stored_rows(store) == 4
    assert service.stats.repeats_dropped == 8


def test_answers_are_compared_with_the_whole_history(
    store: ReadingStore, service: MeterDataService
) -> None:
    _ingest(service, _answer([10, 10], TX))
    _ingest(service, _answer([20, 20], TX + SLOT))
    # slot 1: 10 again repeats version 1 whole (source included), which reads ignore anyway;
    # slot 2: a poll of 10 differs from the current 20 and from every earlier version's source
    again = pa.concat_tables(
        [_answer([10], TX + 2 * SLOT), _answer([None, 10], TX + 2 * SLOT, Source.POLL).slice(1)]
    )
    _ingest(service, again)
    assert _stored_rows(store) == 5
    assert service.stats.repeats_dropped == 1
    history = _versions(store)
    assert history.column("value").to_pylist() == [10, 20, 10, 20, 10]
    assert history.column("version").to_pylist() == [1, 2, 1, 2, 3]


def test_pushes_are_never_dropped(store: ReadingStore, service: MeterDataService) -> None:
    _ingest(service, _push())
    _ingest(service, _push(tx=TX + SLOT))
    assert _stored_rows(store) == 8
    assert service.stats.repeats_dropped == 0


def test_a_wire_day_stores_no_repeated_answer(tmp_path) -> None:
    start = dt.datetime(2026, 4, 1, tzinfo=JST)
    system = build_system(
        FleetConfig(n_meters=300, start=start, seed=1),
        aroute="wire",
        db=tmp_path / "day.duckdb",
        background_writer=False,
    )
    system.run(start + dt.timedelta(days=1, hours=1))
    system.mdms.flush()
    dropped = system.mdms.stats.repeats_dropped
    system.store.close()
    con = duckdb.connect(str(tmp_path / "day.duckdb"), read_only=True)
    repeats, answers = con.sql(
        f"""
        WITH r AS (
            SELECT source, value, quality,
                lag(value) OVER w AS prev_value, lag(source) OVER w AS prev_source
            FROM readings
            WINDOW w AS (PARTITION BY meter_key, channel, resolution, interval_end
                         ORDER BY tx_time, source)
        )
        SELECT count(*) FILTER (WHERE prev_value = value AND prev_source IN (1, 2, 5)),
               count(*)
        FROM r WHERE source IN ({int(Source.REREAD)}, {int(Source.POLL)})
        """
    ).fetchall()[0]
    con.close()
    assert answers > 0  # the day had re-reads to compare
    assert dropped > 0  # ... and some repeated what was stored (53 at 1,000 meters)
    assert repeats == 0


def _registers(read_at: list[int], values: list[int]) -> pa.Table:
    n = len(values)
    return pa.table(
        {
            "meter_key": pa.array([1] * n, pa.int32()),
            "channel": pa.array([1] * n, pa.uint8()),
            "read_at": pa.array(read_at, pa.int64()).cast(REGISTER_READS_SCHEMA.field(2).type),
            "register": pa.array(values, pa.int32()),
            "source": pa.array([int(Source.METER_PUSH)] * n, pa.uint8()),
            "tx_time": pa.array([TX] * n, pa.int64()).cast(REGISTER_READS_SCHEMA.field(5).type),
        },
        schema=REGISTER_READS_SCHEMA,
    )


def _register_count(store: ReadingStore) -> int:
    return store.read_register_rows(Channel.ACTIVE_FORWARD, DAY, ENDS[-1]).num_rows


def test_late_frames_store_only_what_the_store_lacks(
    store: ReadingStore, service: MeterDataService
) -> None:
    """Values of frames older than their replay window (issue 12): a push already stored (a
    replay, or a redelivery) adds no row and no register read; one never stored is kept."""
    service.ingest(ReadingBatch(_push(PUSHED[:2]), _registers(ENDS[:1], [500])))
    service.flush()
    rows_before, registers_before = _stored_rows(store), _register_count(store)
    # the first two slots again (stored), the last two for the first time, as late frames
    late = ReadingBatch(_push(PUSHED, TX + SLOT), _registers(ENDS[:2], [500, 510]))
    service.ingest(late, late=True)
    service.flush()
    assert _stored_rows(store) == rows_before + 2
    assert _register_count(store) == registers_before + 1
    values = _versions(store).column("value").to_pylist()
    assert sorted(values) == sorted(PUSHED)  # each slot once
    assert service.stats.late_dropped == 3  # two values and one register read held already
    # the same late frames once more: nothing at all
    service.ingest(late, late=True)
    service.flush()
    assert _stored_rows(store) == rows_before + 2
    assert _register_count(store) == registers_before + 1
