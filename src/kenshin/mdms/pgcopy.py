"""PGCOPY binary format from Arrow tables, built with numpy (no Python loop per row).

The format is PostgreSQL's ``COPY ... FROM STDIN (FORMAT binary)``
(https://www.postgresql.org/docs/15/sql-copy.html, "Binary Format"): a signature, then per row a
16-bit field count and per field a 32-bit length and big-endian bytes, then a trailer. This
module is pure — bytes in, bytes out — and tested against hand-built byte vectors;
:mod:`kenshin.mdms.postgres_store` sends what it makes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.errors import StoreError

PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 UTC in Unix µs: PostgreSQL's timestamp zero
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
COPY_TRAILER = b"\xff\xff"  # field count -1
CHUNK_ROWS = 1 << 18  # rows per copy.write (≈ 18 MB of readings)


@dataclass(frozen=True, slots=True)
class CopyColumn:
    """One column of a COPY: its Arrow type, SQL type and big-endian wire type (None = text)."""

    name: str
    arrow: pa.DataType
    sql_type: str
    wire: str | None


_WIRE = {
    "smallint": ">i2",
    "integer": ">i4",
    "bigint": ">i8",
    "real": ">f4",
    "double precision": ">f8",
    "boolean": "u1",
    "timestamptz": ">i8",
    "text": None,
}


def sql_type(arrow: pa.DataType) -> str:
    """The PostgreSQL type that holds every value of an Arrow type (no unsigned types there)."""
    if pa.types.is_boolean(arrow):
        return "boolean"
    if pa.types.is_timestamp(arrow):
        return "timestamptz"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "text"
    if pa.types.is_floating(arrow):
        return "real" if arrow.bit_width <= 32 else "double precision"
    if pa.types.is_integer(arrow):
        bits = arrow.bit_width + (1 if pa.types.is_unsigned_integer(arrow) else 0)
        if bits <= 64:
            return "smallint" if bits <= 16 else "integer" if bits <= 32 else "bigint"
    raise TypeError(f"no PostgreSQL column type for Arrow type {arrow}")


def copy_columns(schema: pa.Schema) -> tuple[CopyColumn, ...]:
    """COPY columns for every field of an Arrow schema (``kenshin.core.schema``)."""
    return tuple(
        CopyColumn(f.name, f.type, sql_type(f.type), _WIRE[sql_type(f.type)]) for f in schema
    )


def conform(table: pa.Table, columns: Sequence[CopyColumn], what: str) -> pa.Table:
    """The columns of ``columns`` taken by name from ``table`` and cast to their Arrow types."""
    try:
        arrays = [table.column(c.name).cast(c.arrow) for c in columns]
    except KeyError as exc:
        raise StoreError(f"{what} lack a column: {exc}") from exc
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise StoreError(f"{what} do not fit the stored types: {exc}") from exc
    return pa.Table.from_arrays(arrays, names=[c.name for c in columns])


@dataclass(slots=True)
class _Encoded:
    """A column ready for the wire: values (fixed width) or offsets+bytes (text), and nulls."""

    values: npt.NDArray[Any] | None
    nulls: npt.NDArray[np.bool_] | None
    offsets: npt.NDArray[np.int64] | None = None  # text
    data: npt.NDArray[np.uint8] | None = None  # text

    def lengths(self) -> npt.NDArray[np.int64]:
        assert self.offsets is not None
        lengths = np.diff(self.offsets)
        if self.nulls is not None:
            lengths[self.nulls] = -1
        return lengths


def _encode_column(array: pa.Array | pa.ChunkedArray, column: CopyColumn) -> _Encoded:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    nulls = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
    if column.wire is None:  # text: UTF-8 bytes, as the connection's client_encoding says
        array = array.cast(pa.large_string())
        _, offsets_buf, data_buf = array.buffers()
        offsets = np.frombuffer(offsets_buf, np.int64)[array.offset : array.offset + len(array) + 1]
        data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        return _Encoded(None, nulls, offsets.astype(np.int64), data)
    timestamp = pa.types.is_timestamp(array.type)
    if timestamp:
        array = array.cast(pa.int64())
    if array.null_count:
        array = array.fill_null(False if pa.types.is_boolean(array.type) else 0)
    values = array.to_numpy(zero_copy_only=False)
    return _Encoded(values - PG_EPOCH_US if timestamp else values, nulls)


def encode_copy(
    table: pa.Table, columns: Sequence[CopyColumn], *, header: bool = True, trailer: bool = True
) -> memoryview:
    """Rows of ``table`` (already :func:`conform`-ed) in PGCOPY binary format, as one buffer.

    Each row is a field count and, per field, a length and big-endian bytes (length -1 and no
    bytes for NULL). Rows whose fields have the same lengths share a layout, so a numpy
    structured array per layout writes them all at once; readings without NULLs have one layout.
    Row order within the buffer is not kept (COPY rows carry no order).
    """
    n = table.num_rows
    encoded = [_encode_column(table.column(c.name), c) for c in columns]
    text = [k for k, c in enumerate(columns) if c.wire is None]
    nullable = [
        k for k, e in enumerate(encoded) if e.nulls is not None and columns[k].wire is not None
    ]
    # one layout key per row: a NULL bit per fixed-width column, the byte length of each text
    keys: list[npt.NDArray[np.int64]] = []
    if nullable:
        bits = np.zeros(n, np.int64)
        for bit, k in enumerate(nullable):
            nulls = encoded[k].nulls
            assert nulls is not None
            bits |= nulls.astype(np.int64) << bit
        keys.append(bits)
    keys.extend(encoded[k].lengths() for k in text)
    groups: list[tuple[npt.NDArray[np.int64] | None, dict[int, int]]]
    if n == 0:
        groups = []
    elif not keys or all(int(key.min()) == int(key.max()) for key in keys):
        groups = [(None, _layout_of([int(key[0]) for key in keys], nullable, text))]
    else:
        matrix = np.stack(keys, axis=1)
        unique, inverse = np.unique(matrix, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(unique)))])
        groups = [
            (order[bounds[g] : bounds[g + 1]], _layout_of(unique[g].tolist(), nullable, text))
            for g in range(len(unique))
        ]
    dtypes = [_row_dtype(columns, lengths) for _, lengths in groups]
    sizes = [
        (n if rows is None else len(rows)) * dtype.itemsize
        for (rows, _), dtype in zip(groups, dtypes, strict=True)
    ]
    head = len(COPY_HEADER) if header else 0
    total = head + sum(sizes) + (len(COPY_TRAILER) if trailer else 0)
    buffer = np.empty(total, np.uint8)
    if header:
        buffer[:head] = np.frombuffer(COPY_HEADER, np.uint8)
    if trailer:
        buffer[total - len(COPY_TRAILER) :] = np.frombuffer(COPY_TRAILER, np.uint8)
    offset = head
    for (rows, lengths), dtype, size in zip(groups, dtypes, sizes, strict=True):
        out = np.ndarray((size // dtype.itemsize,), dtype=dtype, buffer=buffer, offset=offset)
        _fill(out, rows, encoded, columns, lengths)
        offset += size
    return buffer.data


def _layout_of(key: list[int], nullable: list[int], text: list[int]) -> dict[int, int]:
    """Field length by column index for one layout key: -1 NULL, text byte count; fixed omitted."""
    lengths: dict[int, int] = {}
    position = 0
    if nullable:
        bits = key[0]
        position = 1
        for bit, k in enumerate(nullable):
            if bits >> bit & 1:
                lengths[k] = -1
    for k in text:
        lengths[k] = key[position]
        position += 1
    return lengths


def _row_dtype(columns: Sequence[CopyColumn], lengths: dict[int, int]) -> np.dtype[Any]:
    fields: list[tuple[Any, ...]] = [("count", ">i2")]
    for k, column in enumerate(columns):
        fields.append((f"l{k}", ">i4"))
        length = lengths.get(k)
        if length == -1:
            continue
        if column.wire is not None:
            fields.append((f"v{k}", column.wire))
        elif length:
            fields.append((f"v{k}", np.uint8, (length,)))
    return np.dtype(fields)


def _fill(
    out: npt.NDArray[Any],
    rows: npt.NDArray[np.int64] | None,
    encoded: list[_Encoded],
    columns: Sequence[CopyColumn],
    lengths: dict[int, int],
) -> None:
    # the field count and the lengths are the same in every row of a layout: copy one template
    # row over all rows as bytes, then write the values column by column
    template = np.zeros(1, out.dtype)
    template["count"] = len(columns)
    for k, column in enumerate(columns):
        length = lengths.get(k)
        template[f"l{k}"] = np.dtype(column.wire).itemsize if length is None else length
    out.view(np.uint8).reshape(len(out), out.dtype.itemsize)[:] = template.view(np.uint8)
    for k, (column, enc) in enumerate(zip(columns, encoded, strict=True)):
        length = lengths.get(k)
        if length == -1:
            continue
        if column.wire is not None:
            assert enc.values is not None
            out[f"v{k}"] = enc.values if rows is None else enc.values[rows]
        elif length:
            assert enc.offsets is not None and enc.data is not None
            starts = enc.offsets[:-1] if rows is None else enc.offsets[rows]
            out[f"v{k}"] = _gather(enc.data, starts, length)


def _gather(data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], length: int) -> Any:
    """``data[start : start + length]`` for every start, as an (n, length) array."""
    first = int(starts[0])
    if np.array_equal(starts, first + length * np.arange(len(starts))):  # contiguous: one slice
        return data[first : first + length * len(starts)].reshape(-1, length)
    return data[starts[:, None] + np.arange(length)]


def cluster(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """``table`` sorted by ``keys`` (stable): the index order, so B-tree inserts stay local and a
    meter's rows share heap pages (measured: COPY ~30 % faster than in the head-end's slot order).
    """
    if table.num_rows < 2:
        return table
    columns = []
    for key in reversed(keys):  # np.lexsort sorts by the last key first
        array = table.column(key)
        if pa.types.is_timestamp(array.type):
            array = array.cast(pa.int64())
        columns.append(array.fill_null(0).to_numpy() if array.null_count else array.to_numpy())
    order = np.lexsort(columns)
    return table.take(order)


def copy_chunks(
    table: pa.Table, columns: Sequence[CopyColumn], chunk_rows: int = CHUNK_ROWS
) -> Iterator[memoryview]:
    """The whole COPY stream of ``table``: header in the first chunk, trailer in the last."""
    n = table.num_rows
    starts = list(range(0, n, chunk_rows)) or [0]
    for i, start in enumerate(starts):
        yield encode_copy(
            table.slice(start, chunk_rows),
            columns,
            header=i == 0,
            trailer=i == len(starts) - 1,
        )
