"""Current values of many meters over a period, for people and programs outside kenshin: a
researcher's month in pandas, a retailer's settlement file (issue 13 item 3; SPEC S2, S4).

One table per JST day (the memory of a day, whatever the period), by meter and slot: the supply
point id, the value in its physical unit and as the register's integer, and names for quality,
source, method and the VEE rules. Read through the store contract, archived months included
(``StoreBase.read_window_versions``); ``as_of`` gives what was known at a past time (S2). The
writers (:func:`write_export`) stream day by day to Parquet or CSV.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kenshin.core.channels import VOLTAGE_SCALE, Channel
from kenshin.core.quality import EstimationMethod
from kenshin.core.schema import TIMESTAMP
from kenshin.core.timeslots import JST, Resolution, from_epoch_us, iso_jst, to_epoch_us
from kenshin.mdms import versions
from kenshin.mdms.labels import METHOD_NAMES, QUALITY_NAMES, SOURCE_NAMES, rule_text
from kenshin.mdms.store import Roster, SweepSource

EXPORT_SCHEMA = pa.schema(
    [
        ("supply_point_id", pa.dictionary(pa.int32(), pa.string())),
        ("channel", pa.dictionary(pa.int8(), pa.string())),
        ("resolution_min", pa.int8()),
        ("interval_end", TIMESTAMP),
        ("value", pa.float64()),  # kWh, kvarh or V; null where nothing could be estimated
        ("unit", pa.dictionary(pa.int8(), pa.string())),
        ("raw", pa.int32()),  # the register's integer (counts, or 0.1 V)
        ("quality", pa.dictionary(pa.int8(), pa.string())),
        ("source", pa.dictionary(pa.int8(), pa.string())),
        ("method", pa.dictionary(pa.int8(), pa.string())),
        ("rules", pa.dictionary(pa.int16(), pa.string())),  # VEE rules failed; null: none
        ("tx_time", TIMESTAMP),  # when kenshin learned this version
    ]
)
FORMATS = ("parquet", "csv")
DAY_US = 86_400_000_000


class ExportStore(Roster, SweepSource, Protocol):
    """What an export reads."""


@dataclass(frozen=True, slots=True)
class ExportRequest:
    start_us: int  # values with start < interval_end <= end
    end_us: int
    channel: Channel = Channel.ACTIVE_FORWARD
    resolution: Resolution = Resolution.MIN30
    as_of_us: int | None = None
    meter_keys: npt.NDArray[np.int64] | None = None  # sorted; None: every meter

    def days(self) -> list[tuple[int, int]]:
        """The period cut at JST midnights: (start, end] windows of at most one day."""
        first = from_epoch_us(self.start_us).astimezone(JST).date()
        cuts = [self.start_us]
        day = first + dt.timedelta(days=1)
        while (edge := to_epoch_us(dt.datetime.combine(day, dt.time(), tzinfo=JST))) < self.end_us:
            cuts.append(edge)
            day += dt.timedelta(days=1)
        cuts.append(self.end_us)
        return list(itertools.pairwise(cuts))


def _dictionary(indices: npt.NDArray[np.int64], names: pa.Array, kind: pa.DataType) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(indices, kind), names)


def export_days(
    store: ExportStore, request: ExportRequest, roster: pa.Table | None = None
) -> Iterator[pa.Table]:
    """One ``EXPORT_SCHEMA`` table per day of the period, by meter and slot."""
    roster = store.read_meters() if roster is None else roster
    keys = np.asarray(roster.column("meter_key").to_numpy(False), np.int64)
    chosen = np.ones(len(keys), bool)
    if request.meter_keys is not None:
        chosen = np.isin(keys, request.meter_keys)
    spids = pa.array(roster.column("supply_point_id").to_pylist(), pa.string())
    exponent = np.asarray(roster.column("unit_exponent").to_numpy(False), np.float64)
    coefficient = np.asarray(roster.column("coefficient").to_numpy(False), np.float64)
    scale = coefficient * np.power(10.0, exponent)
    if request.channel is Channel.VOLTAGE:
        scale = np.full(len(keys), 1.0 / VOLTAGE_SCALE)
    step = request.resolution.microseconds
    for start, end in request.days():
        yield _export_window(store, request, start, end, keys, chosen, spids, scale, step)


def _export_window(
    store: ExportStore,
    request: ExportRequest,
    start: int,
    end: int,
    keys: npt.NDArray[np.int64],
    chosen: npt.NDArray[np.bool_],
    spids: pa.Array,
    scale: npt.NDArray[np.float64],
    step: int,
) -> pa.Table:
    rows = store.read_window_versions(request.channel, request.resolution, start, end)
    if request.as_of_us is not None and rows.num_rows:
        known = pc.less_equal(rows.column("tx_time").cast(pa.int64()), request.as_of_us)
        rows = rows.filter(known)
    if rows.num_rows == 0:
        return EXPORT_SCHEMA.empty_table()
    index = versions.current_indices(rows, step)
    meter = np.asarray(rows.column("meter_key").to_numpy(), np.int64)[index]
    place = np.minimum(np.searchsorted(keys, meter), len(keys) - 1)
    keep = (keys[place] == meter) & chosen[place]
    index, place = index[keep], place[keep]
    ends = np.asarray(rows.column("interval_end").cast(pa.int64()).to_numpy(), np.int64)[index]
    # by meter and slot: a counting placement (each current row is one cell), not a sort
    slots = (ends - start + step - 1) // step
    order = np.lexsort((ends, place)) if (ends % step).any() else _by_cell(place, slots)
    index, place = index[order], place[order]
    current = rows.take(pa.array(index))
    n = current.num_rows
    raw = current.column("value")
    raw_np = np.asarray(raw.fill_null(0).to_numpy(), np.float64)
    value = pa.array(raw_np * scale[place], mask=np.asarray(raw.is_null().to_numpy(False)))
    quality = np.asarray(current.column("quality").to_numpy(False), np.int64)
    source = np.asarray(current.column("source").to_numpy(False), np.int64)
    method_col = current.column("method")
    method = np.asarray(method_col.fill_null(0).to_numpy(False), np.int64)
    method_mask = (method == int(EstimationMethod.NONE)) | np.asarray(
        method_col.is_null().to_numpy(False)
    )
    rules = np.asarray(current.column("failed_rule").fill_null(0).to_numpy(False), np.int64)
    columns = [
        pa.DictionaryArray.from_arrays(pa.array(place, pa.int32()), spids),
        _dictionary(np.zeros(n, np.int64), pa.array([request.channel.label]), pa.int8()),
        pa.array(np.full(n, int(request.resolution), np.int8)),
        current.column("interval_end").combine_chunks().cast(TIMESTAMP),
        value,
        _dictionary(np.zeros(n, np.int64), pa.array([request.channel.unit]), pa.int8()),
        raw.combine_chunks().cast(pa.int32()),
        _dictionary(quality, QUALITY_NAMES, pa.int8()),
        _dictionary(source, SOURCE_NAMES, pa.int8()),
        pa.DictionaryArray.from_arrays(pa.array(method, pa.int8(), mask=method_mask), METHOD_NAMES),
        rule_text(rules),
        current.column("tx_time").combine_chunks().cast(TIMESTAMP),
    ]
    return pa.Table.from_arrays(columns, schema=EXPORT_SCHEMA)


def _by_cell(place: npt.NDArray[np.int64], slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The order of rows by (meter position, slot) when each (meter, slot) occurs once."""
    width = int(slots.max()) + 1 if len(slots) else 1
    cell = place * width + slots
    low = int(cell.min()) if len(cell) else 0
    table = np.full(int(cell.max()) - low + 1 if len(cell) else 0, -1, np.int64)
    table[cell - low] = np.arange(len(cell))
    return table[table >= 0]


def write_export(
    tables: Iterator[pa.Table],
    path: Path,
    file_format: str,
    on_day: Callable[[int], None] | None = None,
) -> int:
    """Stream ``tables`` to ``path`` (Parquet, zstd, a row group per day; or CSV with ISO-8601
    JST times) through a temporary file renamed at the end, so a failure leaves no partial
    file; returns the rows written. ``on_day(rows)`` after each day."""
    partial = path.with_name(f".{path.name}.partial")
    rows = 0
    try:
        if file_format == "parquet":
            with pq.ParquetWriter(partial, EXPORT_SCHEMA, compression="zstd") as writer:
                for table in tables:
                    writer.write_table(table)
                    rows += table.num_rows
                    if on_day:
                        on_day(table.num_rows)
        else:
            with partial.open("wb") as sink:
                writer = pacsv.CSVWriter(sink, _csv_schema())
                for table in tables:
                    writer.write_table(_csv_table(table))
                    rows += table.num_rows
                    if on_day:
                        on_day(table.num_rows)
                writer.close()
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return rows


def _csv_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field(
                f.name, pa.string() if f.name in ("interval_end", "tx_time") else _plain(f.type)
            )
            for f in EXPORT_SCHEMA
        ]
    )


def _plain(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _iso(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Times as ISO-8601 with the +09:00 offset: what a spreadsheet or pandas reads back."""
    us = np.asarray(pc.cast(column, pa.int64()).to_numpy(False), np.int64)
    return pa.array(iso_jst(us), pa.string())


def _csv_table(table: pa.Table) -> pa.Table:
    arrays = []
    for field in EXPORT_SCHEMA:
        column = table.column(field.name)
        if field.name in ("interval_end", "tx_time"):
            arrays.append(_iso(column))
        elif pa.types.is_dictionary(field.type):
            arrays.append(column.cast(field.type.value_type))
        else:
            arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=_csv_schema())
