"""The storage contract of the MDMS: small role protocols, one backend per database.

Backends: :mod:`kenshin.mdms.duckdb_store` (embedded default) and
:mod:`kenshin.mdms.postgres_store` (service mode). Each implements :class:`ReadingStore`, the
union of the roles below; mypy checks that at the end of this module, and the conformance suite
(``tests/mdms/test_store_contract.py``, the scenario files) runs the same tests on each backend.

Consumers take the narrowest role they use — the VEE sweep a :class:`SweepStore`, housekeeping a
:class:`Housekeeping`, manual edits an :class:`EditStore` — so a new backend (or a test double)
knows what each part needs, and a part cannot reach past its role.

Conventions every backend keeps: rows are never updated in place (a correction is a new version,
the current one has the latest ``tx_time``); a reading belongs to the slot that ends at its
``interval_end`` and is read with ``start < interval_end <= end``; rows are filed by the JST
month they belong to (:mod:`kenshin.mdms.months`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
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


# (first, last) meter key, inclusive: the block of a sweep done in parts
MeterRange = tuple[int, int]


def meter_range_sql(meters: MeterRange | None, prefix: str = "") -> str:
    """`` AND meter_key BETWEEN first AND last`` (integers, so safe to inline), or nothing;
    ``prefix`` qualifies the column (``"r."``)."""
    if meters is None:
        return ""
    return f" AND {prefix}meter_key BETWEEN {int(meters[0])} AND {int(meters[1])}"


def meter_keys_sql(keys: npt.NDArray[np.int32] | None, table: str = "wanted_keys") -> str:
    """DuckDB's filter on the sorted meter ``keys`` registered as the one-column ``table``:
    the semi-join keeps their rows, the range of the keys lets zone maps and row-group
    statistics skip the rest of the key range. Nothing when ``keys`` is None."""
    if keys is None:
        return ""
    low, high = int(keys[0]), int(keys[-1])
    return meter_range_sql((low, high)) + f" AND meter_key IN (SELECT meter_key FROM {table})"


class Roster(Protocol):
    """The installed meters (``METERS_SCHEMA``) and the specified sub-meters behind them."""

    def write_meters(self, meters: pa.Table) -> None:
        """Replace the meter roster (``kenshin.core.schema.METERS_SCHEMA``)."""
        ...

    def read_meters(self) -> pa.Table:
        """The whole roster (``METERS_SCHEMA``), by meter key: what a head-end loads at start."""
        ...

    def meter_count(self) -> int: ...

    def list_meters(self, offset: int, limit: int) -> list[dict[str, Any]]:
        """Meters ordered by key."""
        ...

    def find_meter(self, supply_point_id: str) -> dict[str, Any] | None: ...

    def write_specified(self, table: pa.Table) -> None:
        """Replace the roster of specified sub-meters (``kenshin.core.specified``, SPEC S3)."""
        ...

    def read_specified(self, parent_key: int | None = None) -> pa.Table:
        """The specified sub-meters (``SPECIFIED_SCHEMA``), all or those of one parent meter."""
        ...


class Meta(Protocol):
    """Small named settings of a store (the fleet that made it, the layout)."""

    def set_meta(self, key: str, value: str) -> None: ...

    def get_meta(self, key: str) -> str | None: ...


class ReadingWriter(Protocol):
    """Appends versions; the head-end's replay windows are committed with the values."""

    def append(
        self,
        readings: pa.Table,
        registers: pa.Table,
        counters: CounterState | None = None,
        events: pa.Table | None = None,
    ) -> None:
        """Append new versions (never updates a row in place), and with them, in the same
        transaction, the head-end's replay windows ``counters`` and the meter ``events``
        (``EVENTS_SCHEMA``; an event already stored is kept as it was) when given."""
        ...

    def load_counters(self) -> CounterState:
        """The replay windows committed by :meth:`append`."""
        ...


class PointReader(Protocol):
    """One meter's values: what the API serves."""

    def read(self, query: ReadingQuery) -> pa.Table:
        """Current versions (``versions.READ_SCHEMA``), by interval end."""
        ...

    def read_versions(self, query: ReadingQuery) -> pa.Table:
        """Every distinct version (``versions.HISTORY_SCHEMA``), by interval end and version."""
        ...

    def latest_interval_end(
        self, meter_key: int, channel: Channel, resolution: Resolution
    ) -> int | None:
        """Epoch µs of the newest stored interval end of one meter's channel, None if none."""
        ...

    def reading_counts(self) -> dict[int, int]:
        """Stored rows by resolution [min]."""
        ...


class SweepSource(Protocol):
    """Every meter's rows of a window, as stored: the VEE sweep and the S3 differences apply
    the reading rule to them in numpy (``kenshin.mdms.versions``)."""

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
        """Every version row of every meter's cells in ``(start, end]``, unordered
        (``versions.VERSION_ROWS_SCHEMA``): only meter keys in ``meters``, inclusive, when
        given (a sweep in blocks), and only the meter ``keys`` when given (the S3 differences'
        parents and sub-meters, scattered over the fleet); both when both are given. The
        store filters, so no other meter's rows leave it; ``keys`` empty reads nothing."""
        ...

    def read_register_rows(
        self, channel: Channel, start_us: int, end_us: int, meters: MeterRange | None = None
    ) -> pa.Table:
        """Every stored register read at instants in ``[start, end]`` (of ``meters`` when
        given), unordered (``versions.REGISTER_ROWS_SCHEMA``), archived months included."""
        ...

    def written_days(
        self, channel: Channel, resolution: Resolution, start_us: int, end_us: int, since_us: int
    ) -> dict[int, int]:
        """Days of ``(start, end]`` (numbered from ``start``) that received rows after
        ``since``, with the newest transaction time of each."""
        ...


class EventLog(Protocol):
    """Meter events as received (SPEC R1–R3), appended by :meth:`ReadingWriter.append`."""

    def read_events(self, start_us: int, end_us: int, meter_key: int | None = None) -> pa.Table:
        """Events that occurred in ``(start, end]`` (of one meter when given), by meter and
        time (``EVENTS_SCHEMA``)."""
        ...


class PrincipalBook(Protocol):
    """Who may use the system (``kenshin.security``): one JSON document per principal, with
    its secret's hash, never its secret."""

    def save_principal(self, name: str, document: str) -> None:
        """Insert or replace the principal ``name``."""
        ...

    def read_principals(self) -> list[tuple[str, str]]:
        """Every principal as (name, document), by name."""
        ...


class AuditLog(Protocol):
    """The API's audit trail (``AUDIT_SCHEMA``), append-only."""

    def append_audit(self, rows: pa.Table) -> None: ...

    def read_audit(
        self, start_us: int, end_us: int, principal: str | None = None, limit: int = 10_000
    ) -> pa.Table:
        """Rows with ``start < at <= end`` (of one principal when given), oldest first, at most
        ``limit``."""
        ...


class OutageLog(Protocol):
    """Outage events (``OUTAGES_SCHEMA``), each row replaced as its event moves on."""

    def save_outages(self, rows: pa.Table) -> None:
        """Insert the events, or replace those with the same ``event_id``."""
        ...

    def read_outages(self, start_us: int, end_us: int) -> pa.Table:
        """Events that started in ``(start, end]`` or are still open, by ``event_id``."""
        ...


class ControlBook(Protocol):
    """Switching campaigns and requests (``kenshin.control``; issue 16): one JSON document per
    record, replaced as the record moves on, so their status outlives the process."""

    def save_control_record(self, kind: str, record_id: int, document: str) -> None:
        """Insert or replace the record ``(kind, record_id)``."""
        ...

    def read_control_records(self, kind: str) -> list[tuple[int, str]]:
        """Every record of ``kind`` as (id, document), by id."""
        ...


class CommandLog(Protocol):
    """Every transition of every command (``COMMAND_LOG_SCHEMA``), append-only."""

    def append_command_log(self, rows: pa.Table) -> None: ...

    def read_command_log(self, command_id: int) -> pa.Table:
        """One command's transitions, oldest first."""
        ...


class GapBook(Protocol):
    """The slots VEE could not fill: the head-end's re-read list."""

    def replace_gaps(
        self,
        channel: Channel,
        resolution: Resolution,
        start_us: int,
        end_us: int,
        gaps: pa.Table,
    ) -> None:
        """The gap list of a window (interval ends in ``(start, end]``) is replaced whole."""
        ...

    def read_gaps(self, meter_key: int | None = None) -> pa.Table: ...


class EditLog(Protocol):
    """Manual edits: new versions and their audit rows, in one transaction."""

    def record_edits(self, readings: pa.Table, edits: pa.Table) -> None: ...

    def read_edits(self, meter_key: int) -> pa.Table: ...


class Housekeeping(Protocol):
    """Whole months: compaction, export to the archive, retention (SPEC S1)."""

    def months(self, kind: str = "readings") -> list[int]:
        """The months held in the hot store, ascending (``kind``: readings, register_reads)."""
        ...

    def needs_compaction(self, month: int) -> bool:
        """True when compacting the month would change it (rows arrived since the last time)."""
        ...

    def compact(self, month: int) -> int:
        """Rewrite one closed month for point reads (where the backend gains by it); rows."""
        ...

    def export_month(self, kind: str, month: int) -> pa.Table:
        """Every distinct version of one month (for the archive), sorted by meter and time."""
        ...

    def drop_month(self, month: int) -> None:
        """Drop one month of readings and register reads (retention, after archiving)."""
        ...


class CellReader(Protocol):
    """Exactly the cells named: what a re-read answer is compared with (``mdms.repeats``)."""

    def read_cell_versions(
        self,
        channel: Channel,
        resolution: Resolution,
        meter_keys: npt.NDArray[np.int32],
        interval_ends_us: npt.NDArray[np.int64],
    ) -> pa.Table:
        """Every version row of the cells (``meter_keys[i]``, ``interval_ends_us[i]``) of one
        channel and resolution, unordered (``versions.VERSION_ROWS_SCHEMA``); a cell nothing
        was stored for has no row."""
        ...


class AnswerSource(CellReader, SweepSource, Protocol):
    """What the MDMS compares re-read answers and late frames with (``mdms.repeats``)."""


class SweepStore(Roster, SweepSource, ReadingWriter, GapBook, Protocol):
    """What the daily VEE sweep and the S3 differences use."""


class ScheduledStore(SweepStore, Housekeeping, OutageLog, Protocol):
    """What the MDMS schedule uses: daily sweeps and monthly housekeeping."""


class EditStore(PointReader, EditLog, Protocol):
    """What manual edits use: the current versions they replace, and the edit log."""


class ServedStore(Roster, PointReader, GapBook, EditLog, EventLog, OutageLog, Protocol):
    """What the HTTP API reads (and edits)."""


class ReadingStore(
    Roster,
    Meta,
    ReadingWriter,
    PointReader,
    SweepSource,
    CellReader,
    GapBook,
    EditLog,
    EventLog,
    PrincipalBook,
    AuditLog,
    OutageLog,
    ControlBook,
    CommandLog,
    Housekeeping,
    Protocol,
):
    """A whole store: every role, plus its lifecycle."""

    archive: Any  # kenshin.mdms.archive.ParquetArchive read for archived months, or None

    @property
    def target(self) -> str:
        """Where the store is, for messages."""
        ...

    def checkpoint(self) -> None:
        """Make what was appended durable and compact on disk (before a clean stop)."""
        ...

    def close(self) -> None: ...


if TYPE_CHECKING:  # mypy checks that each backend implements the whole contract

    def _conforms(duck: Any, postgres: Any) -> tuple[ReadingStore, ReadingStore]:
        from kenshin.mdms.duckdb_store import DuckDBStore
        from kenshin.mdms.postgres_store import PostgresStore

        first: ReadingStore = DuckDBStore(duck)
        second: ReadingStore = PostgresStore(postgres)
        return first, second
