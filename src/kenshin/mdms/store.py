"""The storage seam of the MDMS: one small interface, a backend per database.

Backends: :mod:`kenshin.mdms.duckdb_store` (embedded default). The PostgreSQL backend and the
Parquet archive of the MDMS issue implement the same protocol, and the same tests run on each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from kenshin.core.batches import CounterState
from kenshin.core.channels import Channel
from kenshin.core.timeslots import Resolution


@dataclass(frozen=True, slots=True)
class ReadingQuery:
    """Current versions of one meter's values with ``start < interval_end <= end``."""

    meter_key: int
    channel: Channel
    resolution: Resolution
    start_us: int
    end_us: int
    as_of_us: int | None = None  # what was known at this transaction time; None = now


class ReadingStore(Protocol):
    def write_meters(self, meters: pa.Table) -> None:
        """Replace the meter roster (``kenshin.core.schema.METERS_SCHEMA``)."""
        ...

    def write_specified(self, table: pa.Table) -> None:
        """Replace the roster of specified sub-meters (``kenshin.core.specified``, SPEC S3)."""
        ...

    def read_specified(self, parent_key: int | None = None) -> pa.Table:
        """The specified sub-meters (``SPECIFIED_SCHEMA``), all or those of one parent meter."""
        ...

    def append(
        self, readings: pa.Table, registers: pa.Table, counters: CounterState | None = None
    ) -> None:
        """Append new versions (never updates a row in place), and with them, in the same
        transaction, the head-end's replay windows ``counters`` when given."""
        ...

    def load_counters(self) -> CounterState:
        """The replay windows committed by :meth:`append`."""
        ...

    def read_meters(self) -> pa.Table:
        """The whole roster (``METERS_SCHEMA``), by meter key: what a head-end loads at start."""
        ...

    def meter_count(self) -> int: ...

    def list_meters(self, offset: int, limit: int) -> list[dict[str, Any]]:
        """Meters ordered by key."""
        ...

    def find_meter(self, supply_point_id: str) -> dict[str, Any] | None: ...

    def read(self, query: ReadingQuery) -> pa.Table:
        """Columns interval_end, value, quality, source, method, tx_time; by interval_end."""
        ...

    def latest_interval_end(
        self, meter_key: int, channel: Channel, resolution: Resolution
    ) -> int | None:
        """Epoch µs of the newest stored interval end of one meter's channel, None if none."""
        ...

    def reading_counts(self) -> dict[int, int]:
        """Stored rows by resolution [min]."""
        ...

    def set_meta(self, key: str, value: str) -> None: ...

    def get_meta(self, key: str) -> str | None: ...

    def close(self) -> None: ...
