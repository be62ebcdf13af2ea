import datetime as dt

import numpy as np
import pytest

from kenshin.aroute.messages import IntervalBlock, RegisterBlock, UplinkMessage
from kenshin.aroute.transport import InProcessTransport
from kenshin.core.batches import ReadingBatch
from kenshin.core.channels import Channel
from kenshin.core.clock import SteppedClock
from kenshin.core.quality import Quality, Source
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.errors import StoreError
from kenshin.hes.headend import DirectHeadEnd, message_to_batch
from kenshin.mdms.service import MeterDataService

END = dt.datetime(2026, 4, 1, 1, 0, tzinfo=JST)


def message() -> UplinkMessage:
    keys = np.array([3, 9, 4], dtype=np.int32)
    end_us = to_epoch_us(END)
    fifteen = np.array([end_us - 15 * 60_000_000, end_us])
    return UplinkMessage(
        collector="c1",
        sent_at=END,
        intervals=(
            IntervalBlock(
                Resolution.MIN30,
                Channel.ACTIVE_FORWARD,
                keys,
                np.array([end_us]),
                np.array([[10, 20, 30]], dtype=np.int32),
            ),
            IntervalBlock(
                Resolution.MIN15,
                Channel.ACTIVE_FORWARD,
                keys,
                fifteen,
                np.array([[4, 8, 15], [6, 12, 15]], dtype=np.int32),
            ),
        ),
        registers=(
            RegisterBlock(
                Channel.ACTIVE_FORWARD, keys, end_us, np.array([5, 99_999_999, 0], dtype=np.int32)
            ),
        ),
    )


def test_message_becomes_long_rows():
    batch = message_to_batch(message(), tx_time_us=123)
    rows = batch.readings.to_pylist()
    assert len(rows) == 3 + 6
    by_key = {(r["meter_key"], r["resolution"], r["interval_end"].minute): r["value"] for r in rows}
    assert by_key[(9, 30, 0)] == 20
    assert by_key[(9, 15, 45)] == 8 and by_key[(9, 15, 0)] == 12
    assert {r["quality"] for r in rows} == {int(Quality.RAW)}
    assert {r["source"] for r in rows} == {int(Source.METER_PUSH)}
    assert batch.registers.column("register").to_pylist() == [5, 99_999_999, 0]


def test_block_shape_is_checked():
    with pytest.raises(ValueError, match="does not match"):
        IntervalBlock(
            Resolution.MIN30,
            Channel.ACTIVE_FORWARD,
            np.arange(3, dtype=np.int32),
            np.array([0]),
            np.zeros((2, 3), dtype=np.int32),
        )


class FailingStore:
    def append(self, readings, registers, counters=None, events=None):
        raise StoreError("disk full")


class ListSink:
    def __init__(self) -> None:
        self.batches: list[ReadingBatch] = []

    def ingest(self, batch: ReadingBatch, *, late: bool = False) -> None:
        self.batches.append(batch)


def test_transport_delivers_to_headend_with_clock_time():
    sink = ListSink()
    clock = SteppedClock(END + dt.timedelta(minutes=7))
    hes = DirectHeadEnd(sink, clock)
    transport = InProcessTransport()
    transport.subscribe(hes.receive)
    transport.publish(message())
    assert hes.stats.messages == 1 and hes.stats.values == 9
    assert hes.stats.max_delay_s == pytest.approx(420.0)
    tx = sink.batches[0].readings.column("tx_time").to_pylist()
    assert {t.minute for t in tx} == {7}


def test_transport_without_headend_refuses():
    with pytest.raises(RuntimeError, match="no head-end"):
        InProcessTransport().publish(message())


def test_writer_failure_surfaces_instead_of_losing_data_silently():
    service = MeterDataService(FailingStore(), flush_rows=1, background=True)  # type: ignore[arg-type]
    batch = message_to_batch(message(), 0)
    service.ingest(batch)
    with pytest.raises(StoreError, match="disk full"):
        service.flush()
    with pytest.raises(StoreError):
        service.ingest(batch)
    with pytest.raises(StoreError):
        service.close()  # raises again, and stops the writer thread all the same
    assert service._writer is not None and not service._writer.is_alive()


def test_service_buffers_until_flush():
    class Counting:
        def __init__(self) -> None:
            self.calls = 0
            self.rows = 0

        def append(self, readings, registers, counters=None, events=None):
            self.calls += 1
            self.rows += readings.num_rows

    store = Counting()
    service = MeterDataService(store, flush_rows=100, background=False)  # type: ignore[arg-type]
    for _ in range(5):
        service.ingest(message_to_batch(message(), 0))
    assert store.calls == 0
    service.flush()
    assert (store.calls, store.rows) == (1, 45)
    assert service.stats.rows_stored == 45
