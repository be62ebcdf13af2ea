"""The Parquet archive: closed months of readings, kept for the retention period (SPEC S1, S2).

Layout (ARCHITECTURE "Storage"; DuckDB and Spark read the same files)::

    ROOT/readings/date=2026-04-01/bucket=03/part-2026_04-0.parquet
    ROOT/register_reads/date=2026-04-01/bucket=03/part-2026_04-0.parquet
    ROOT/months.json        the months archived, written last (a month is there or not)

``bucket`` is ``meter_key % buckets``, so the history of one meter is one bucket directory per
day; rows inside a file are sorted by meter and time. ``date`` and the month are those the row
belongs to (:mod:`kenshin.mdms.months`): the value ending at midnight is filed under the day
before. Every distinct version is archived, not only the current one, so ``as_of`` reads and the
history work on archived months as on hot ones.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Collection
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.dataset as ds

from kenshin.core.schema import READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.errors import StoreError
from kenshin.mdms import versions
from kenshin.mdms.months import month_name, row_bounds_us, row_date_text
from kenshin.mdms.store import MeterRange, ReadingQuery, meter_keys_sql, meter_range_sql
from kenshin.secrecy import private_umask

DEFAULT_BUCKETS = 16
_TIME = {"readings": "interval_end", "register_reads": "read_at"}
_SCHEMA = {"readings": READINGS_SCHEMA, "register_reads": REGISTER_READS_SCHEMA}


class ParquetArchive:
    def __init__(self, root: str | Path, *, buckets: int = DEFAULT_BUCKETS) -> None:
        if buckets < 1:
            raise StoreError(f"an archive needs at least one meter bucket, not {buckets}")
        self.root = Path(root)
        self.buckets = buckets
        self._manifest = self.root / "months.json"
        self._months: list[int] = []
        self._stamp: tuple[int, int, int] | None = None

    def months(self) -> list[int]:
        """The archived months. The manifest is read again only when its file changed, so a
        point read asking which of its months are archived costs one ``stat``."""
        try:
            status = self._manifest.stat()
        except FileNotFoundError:
            return []
        # every write replaces the file (a new inode), so this changes even within one tick
        stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
        if stamp != self._stamp:
            data = json.loads(self._manifest.read_text())
            if data.get("buckets", self.buckets) != self.buckets:
                raise StoreError(
                    f"archive {self.root} was written with {data['buckets']} buckets, "
                    f"not {self.buckets}"
                )
            self._months = sorted(int(m) for m in data["months"])
            self._stamp = stamp
        return list(self._months)

    def held(self, months: list[int]) -> list[int]:
        """Those of ``months`` that are archived."""
        archived = set(self.months())
        return [m for m in months if m in archived]

    def _save_months(self, months: list[int]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps({"buckets": self.buckets, "months": sorted(set(months))}))
        tmp.replace(self._manifest)
        self._stamp = None  # this process's writes are always seen, whatever the file's stamp

    def write_month(self, month: int, readings: pa.Table, registers: pa.Table) -> int:
        """Write one month (every version, sorted by meter and time); rows written.

        Writing a month again replaces its files, so an interrupted archive run can be repeated.
        """
        # X3: Arrow creates the directories and files itself, with the process umask; meter
        # data is the user's alone (files 0600, directories 0700)
        with private_umask():
            self._write_month(month, readings, registers)
        return int(readings.num_rows)

    def _write_month(self, month: int, readings: pa.Table, registers: pa.Table) -> None:
        for kind, table in (("readings", readings), ("register_reads", registers)):
            self._remove_month_files(kind, month)
            if not table.num_rows:
                continue
            time = table.column(_TIME[kind]).cast(pa.int64()).to_numpy()
            keys = table.column("meter_key").to_numpy()
            with_parts = table.append_column("date", pa.array(row_date_text(time))).append_column(
                "bucket", pa.array((keys % self.buckets).astype(np.int16))
            )
            ds.write_dataset(
                with_parts,
                self.root / kind,
                format="parquet",
                partitioning=ds.partitioning(
                    pa.schema([("date", pa.string()), ("bucket", pa.int16())]), flavor="hive"
                ),
                basename_template=f"part-{month_name(month)}-{{i}}.parquet",
                existing_data_behavior="overwrite_or_ignore",
                preserve_order=True,
                file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
            )
        self._save_months([*self.months(), month])

    def _remove_month_files(self, kind: str, month: int) -> None:
        base = self.root / kind
        if not base.exists():
            return
        for path in base.glob(f"date=*/bucket=*/part-{month_name(month)}-*.parquet"):
            path.unlink()

    def _files(self, kind: str, months: list[int], buckets: Collection[int] | None) -> list[str]:
        """The files of ``months`` in ``buckets`` (every bucket when None)."""
        files: list[str] = []
        base = self.root / kind
        patterns = ["bucket=*"] if buckets is None else [f"bucket={b}" for b in set(buckets)]
        for month in months:
            for pattern in patterns:
                found = base.glob(f"date=*/{pattern}/part-{month_name(month)}-*")
                files.extend(str(p) for p in found)
        return sorted(files)

    def _select(
        self,
        files: list[str],
        schema: pa.Schema,
        where: str = "true",
        keys: npt.NDArray[np.int32] | None = None,
    ) -> pa.Table:
        """The ``schema`` columns of the rows of ``files`` that satisfy ``where``, in which
        ``keys`` may be named as the one-column table ``wanted_keys`` (``meter_keys_sql``)."""
        if not files:
            return schema.empty_table()
        con = duckdb.connect()
        try:
            if keys is not None:
                con.register("wanted_keys", pa.table({"meter_key": pa.array(keys, pa.int32())}))
            table = con.sql(
                f"SELECT {', '.join(schema.names)} FROM read_parquet({sorted(files)!r}, "
                f"hive_partitioning = false) WHERE {where}"
            ).to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(f"reading the archive {self.root} failed: {exc}") from exc
        finally:
            con.close()
        return versions.conform_to(table, schema)

    def read_versions(self, query: ReadingQuery, months: list[int]) -> pa.Table:
        """Every archived version of one meter's cells in the query's window (READINGS_SCHEMA)."""
        files = self._files("readings", months, [query.meter_key % self.buckets])
        return self._select(files, READINGS_SCHEMA, versions.duckdb_cell_where(query))

    def read_window_versions(
        self,
        channel: int,
        resolution: int,
        start_us: int,
        end_us: int,
        months: list[int],
        meters: MeterRange | None = None,
        keys: npt.NDArray[np.int32] | None = None,
    ) -> pa.Table:
        """Every archived version row of every meter's cells of ``channel`` and ``resolution``
        in ``(start, end]`` (``versions.VERSION_ROWS_SCHEMA``), of ``meters`` and of the sorted
        ``keys`` when given: what a fleet-wide read of an archived month needs (every bucket,
        or the buckets of ``keys``)."""
        where = (
            f"channel = {int(channel)} AND resolution = {int(resolution)} "
            f"AND interval_end > make_timestamptz({int(start_us)}) "
            f"AND interval_end <= make_timestamptz({int(end_us)})"
            + meter_range_sql(meters)
            + meter_keys_sql(keys)
        )
        buckets = None if keys is None else np.unique(keys % self.buckets).tolist()
        files = self._files("readings", months, buckets)
        return self._select(files, versions.VERSION_ROWS_SCHEMA, where, keys)

    def read_register_rows(
        self,
        channel: int,
        start_us: int,
        end_us: int,
        months: list[int],
        meters: MeterRange | None = None,
    ) -> pa.Table:
        """Every archived register read of ``channel`` at instants in ``[start, end]``
        (``versions.REGISTER_ROWS_SCHEMA``), from the day directories that can hold them."""
        days = row_date_text(np.array([start_us, end_us], np.int64))
        first, last = dt.date.fromisoformat(str(days[0])), dt.date.fromisoformat(str(days[1]))
        names = {month_name(m) for m in months}
        files = []
        base = self.root / "register_reads"
        day = first
        while day <= last:
            for path in base.glob(f"date={day.isoformat()}/bucket=*/part-*.parquet"):
                if path.name.split("-")[1] in names:
                    files.append(str(path))
            day += dt.timedelta(days=1)
        where = (
            f"channel = {int(channel)} AND read_at >= make_timestamptz({int(start_us)}) "
            f"AND read_at <= make_timestamptz({int(end_us)})" + meter_range_sql(meters)
        )
        return self._select(files, versions.REGISTER_ROWS_SCHEMA, where)

    def read_month(self, kind: str, month: int) -> pa.Table:
        """One archived month whole (checks, re-import)."""
        return self._select(self._files(kind, [month], None), _SCHEMA[kind])

    def drop_month(self, month: int) -> None:
        """Delete one month (retention: older than the retention period)."""
        for kind in _TIME:
            self._remove_month_files(kind, month)
            base = self.root / kind
            if base.exists():  # remove the day directories the month leaves empty
                low, high = row_bounds_us(month)
                start = dt.date.fromisoformat(_date_of(low))
                end = dt.date.fromisoformat(_date_of(high - 1))
                day = start
                while day <= end:
                    path = base / f"date={day.isoformat()}"
                    if path.exists() and not any(path.rglob("*.parquet")):
                        shutil.rmtree(path)
                    day += dt.timedelta(days=1)
        self._save_months([m for m in self.months() if m != month])


def _date_of(epoch_us: int) -> str:
    return str(row_date_text(np.array([epoch_us]))[0])
