"""The MDMS ingest service: buffers head-end batches and appends them to the store.

Appending a few large Arrow tables is many times faster than many small ones, so batches are
buffered up to ``flush_rows``. With ``background=True`` a writer thread does the appends: DuckDB
releases the GIL while it inserts, so on a 2-core machine storage overlaps with simulation. The
queue to the writer is bounded, so a slow store slows ingest instead of growing memory.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.core.batches import CounterState, ReadingBatch
from kenshin.core.schema import EVENTS_SCHEMA, READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.errors import StoreError
from kenshin.mdms.repeats import drop_repeated_answers, drop_stored_register_reads
from kenshin.mdms.store import ReadingStore
from kenshin.mdms.sweep import label_on_ingest


@dataclass(frozen=True, slots=True)
class _Write:
    """One append for the writer: values, register reads, replay windows, and which rows came
    from late frames (readings mask, registers mask) when any did; meter events."""

    readings: pa.Table
    registers: pa.Table
    counters: CounterState | None
    late: tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]] | None
    events: pa.Table


def _row_mask(tables: list[pa.Table], flags: list[bool]) -> npt.NDArray[np.bool_]:
    """One flag per row of the concatenated ``tables`` (each table's flag repeated)."""
    return np.repeat(np.array(flags, dtype=bool), [t.num_rows for t in tables])


@dataclass
class IngestStats:
    batches: int = 0
    rows_stored: int = 0
    registers_stored: int = 0
    events_stored: int = 0  # meter events handed to the store (a repeat is kept once)
    repeats_dropped: int = 0  # re-read and poll answers equal to what was stored (repeats.py)
    # values and register reads the store already held, of late frames (older than their
    # window) and of pushes a catching-up worker compared: replays, or what an answer gave
    late_dropped: int = 0


class MeterDataService:
    def __init__(
        self,
        store: ReadingStore,
        *,
        flush_rows: int = 2_000_000,
        background: bool = True,
    ) -> None:
        self.store = store
        self.flush_rows = flush_rows
        self.stats = IngestStats()
        self._readings: list[pa.Table] = []
        self._registers: list[pa.Table] = []
        self._events: list[pa.Table] = []
        self._late: list[bool] = []  # per buffered batch: values of late frames (ingest)
        self._buffered = 0
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._queue: queue.Queue[_Write | None] | None = None
        self._writer: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=2)
            self._writer = threading.Thread(
                target=self._write_loop, name="mdms-writer", daemon=True
            )
            self._writer.start()

    def ingest(self, batch: ReadingBatch, *, late: bool = False) -> None:
        """Buffer a batch; ``late``: values stored only where the store holds no measured value
        of the same content (frames older than their replay window, a catching-up worker's
        pushes: issue 12)."""
        self._raise_writer_error()
        with self._lock:
            self.stats.batches += 1
            # labelled on the way in, so a day of good data needs no second version (sweep.py)
            self._readings.append(label_on_ingest(batch.readings))
            self._registers.append(batch.registers)
            if batch.events.num_rows:
                self._events.append(batch.events)
            self._late.append(late)
            self._buffered += batch.num_rows
            full = self._buffered >= self.flush_rows
        if full:
            self._flush_buffer()

    def flush(self, counters: CounterState | None = None) -> None:
        """Store everything buffered and wait until it is stored; ``counters`` (the head-end's
        changed replay windows) are committed in the same transaction as the last values."""
        self._flush_buffer(counters)
        if self._queue is not None:
            self._queue.join()
        self._raise_writer_error()

    def close(self) -> None:
        """Store what is buffered and stop the writer thread, even when the store failed (the
        failure is raised once the thread is gone: a thread left holding a DuckDB cursor
        aborts the interpreter at exit, duckdb/duckdb#13904)."""
        try:
            self.flush()
        finally:
            if self._queue is not None and self._writer is not None:
                self._queue.put(None)
                self._writer.join()
                self._queue = None

    def _flush_buffer(self, counters: CounterState | None = None) -> None:
        with self._lock:
            if not (self._readings or self._registers or self._events) and counters is None:
                return
            readings = (
                pa.concat_tables(self._readings)
                if self._readings
                else READINGS_SCHEMA.empty_table()
            )
            registers = (
                pa.concat_tables(self._registers)
                if self._registers
                else REGISTER_READS_SCHEMA.empty_table()
            )
            late = (
                (_row_mask(self._readings, self._late), _row_mask(self._registers, self._late))
                if any(self._late)
                else None
            )
            events = pa.concat_tables(self._events) if self._events else EVENTS_SCHEMA.empty_table()
            self._readings, self._registers, self._late, self._buffered = [], [], [], 0
            self._events = []
        item = _Write(readings, registers, counters, late, events)
        if self._queue is None:
            self._write(item)
        else:
            self._queue.put(item)

    def _write(self, item: _Write) -> None:
        readings, registers, counters = item.readings, item.registers, item.counters
        # here, not at ingest: the stored versions they are compared with include every
        # earlier flush, and the writer thread holds the only cursor that writes
        late_readings = item.late[0] if item.late is not None else None
        readings, repeats, held_values = drop_repeated_answers(readings, self.store, late_readings)
        self.stats.repeats_dropped += repeats - held_values
        self.stats.late_dropped += held_values
        if item.late is not None:
            registers, held = drop_stored_register_reads(registers, self.store, item.late[1])
            self.stats.late_dropped += held
        self.store.append(readings, registers, counters, item.events)
        self.stats.rows_stored += readings.num_rows
        self.stats.events_stored += item.events.num_rows
        self.stats.registers_stored += registers.num_rows

    def _write_loop(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self._write(item)
            except BaseException as exc:  # surfaced to the caller on its next call
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise StoreError(f"the MDMS writer failed: {self._error}") from self._error
