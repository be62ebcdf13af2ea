"""What every store backend shares, written once: the reading rule and the archive merge.

A backend supplies three primitives over its hot store — every version row of one meter's cells
(:meth:`StoreBase._hot_versions`), of a window's cells (:meth:`StoreBase._hot_window_versions`,
of a key range or a set of meter keys) and every register read of a window
(:meth:`StoreBase._hot_register_rows`) — and this layer adds the rows of archived months
(``kenshin.mdms.archive``, by the one month convention of ``kenshin.mdms.months``) and applies
the reading rule in numpy (``kenshin.mdms.versions``). So a point read, a history read and the
sweep's window and register reads mean the same on DuckDB and PostgreSQL, archived months
included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.core.channels import Channel
from kenshin.core.schema import READINGS_SCHEMA
from kenshin.core.timeslots import Resolution
from kenshin.mdms import versions
from kenshin.mdms.months import row_months_between
from kenshin.mdms.store import MeterRange, ReadingQuery


class StoreBase:
    archive: Any  # kenshin.mdms.archive.ParquetArchive read for archived months, or None

    # ---- primitives of each backend

    def _hot_versions(self, query: ReadingQuery) -> pa.Table:
        """Every stored version row of the query's cells in the hot store (READINGS_SCHEMA)."""
        raise NotImplementedError

    def _hot_register_rows(
        self, channel: Channel, start_us: int, end_us: int, meters: MeterRange | None
    ) -> pa.Table:
        """Every register read of the hot store at instants in ``[start, end]`` (of ``meters``
        when given; ``versions.REGISTER_ROWS_SCHEMA``)."""
        raise NotImplementedError

    def _hot_window_versions(
        self,
        channel: Channel,
        resolution: Resolution,
        start_us: int,
        end_us: int,
        meters: MeterRange | None,
        keys: npt.NDArray[np.int32] | None,
    ) -> pa.Table:
        """Every version row of every meter's cells in ``(start, end]`` in the hot store
        (``versions.VERSION_ROWS_SCHEMA``), unordered; of ``meters`` and of ``keys`` (sorted,
        unique, not empty) when given."""
        raise NotImplementedError

    # ---- shared

    def _archived(self, months: list[int]) -> list[int]:
        """Those of ``months`` the archive holds."""
        return [] if self.archive is None else list(self.archive.held(months))

    def _versions(self, query: ReadingQuery) -> pa.Table:
        hot = self._hot_versions(query)
        archived = self._archived(row_months_between(query.start_us, query.end_us))
        if not archived:
            return hot
        old = versions.conform_to(self.archive.read_versions(query, archived), READINGS_SCHEMA)
        return pa.concat_tables([old, versions.conform_to(hot, READINGS_SCHEMA)])

    def read(self, query: ReadingQuery) -> pa.Table:
        """Current versions (``versions.READ_SCHEMA``) of one meter's channel, by interval end:
        the hot rows and the archived ones, the reading rule in numpy (``versions.current_of``)."""
        return versions.conform_to(versions.current_of(self._versions(query)), versions.READ_SCHEMA)

    def read_versions(self, query: ReadingQuery) -> pa.Table:
        """Every distinct version (``versions.HISTORY_SCHEMA``), by interval end and version."""
        raw = self._versions(query)
        if not raw.num_rows:
            return versions.empty(versions.HISTORY_SCHEMA)
        return versions.history_of(raw)

    def read_window_versions(
        self,
        channel: Channel,
        resolution: Resolution,
        start_us: int,
        end_us: int,
        meters: MeterRange | None = None,
        *,
        keys: npt.NDArray[np.int32] | None = None,
    ) -> pa.Table:
        """Every version row of every meter's cells in ``(start, end]`` (of ``meters`` and of
        the meter ``keys`` when given), archived months included, unordered
        (``versions.VERSION_ROWS_SCHEMA``): a plain scan, for callers that apply the reading
        rule themselves (``versions.current_cells``)."""
        if keys is not None:
            keys = np.unique(np.asarray(keys, np.int32))  # sorted: its ends bound the scan
            if not keys.size:
                return versions.empty(versions.VERSION_ROWS_SCHEMA)
        rows = self._hot_window_versions(channel, resolution, start_us, end_us, meters, keys)
        archived = self._archived(row_months_between(start_us, end_us))
        if not archived:
            return rows
        old = self.archive.read_window_versions(
            int(channel), int(resolution), start_us, end_us, archived, meters, keys
        )
        return pa.concat_tables([versions.conform_to(old, versions.VERSION_ROWS_SCHEMA), rows])

    def read_register_rows(
        self, channel: Channel, start_us: int, end_us: int, meters: MeterRange | None = None
    ) -> pa.Table:
        """Every stored register read at instants in ``[start, end]``, archived months included,
        unordered (``versions.REGISTER_ROWS_SCHEMA``; ``versions.latest_register_reads`` picks
        the latest): a plain scan."""
        rows = self._hot_register_rows(channel, start_us, end_us, meters)
        archived = self._archived(row_months_between(start_us - 1, end_us))
        if not archived:
            return rows
        old = self.archive.read_register_rows(int(channel), start_us, end_us, archived, meters)
        return pa.concat_tables([rows, old])
