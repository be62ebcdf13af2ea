"""Housekeeping of the MDMS: compaction, the Parquet archive and retention (SPEC S1, S2).

One pass, run by hand (``kenshin archive``) or on a schedule by the system:

1. closed months still in the hot store are compacted (DuckDB: rewritten sorted by meter);
2. closed months older than ``hot_months`` are written to the archive, then dropped from the hot
   store (the archive holds every version, so nothing a read can see is lost);
3. months older than the retention period (3 years by default, S1) are deleted everywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa

from kenshin.errors import StoreError
from kenshin.mdms.archive import ParquetArchive
from kenshin.mdms.months import month_name, month_of
from kenshin.mdms.store import Housekeeping

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    retention_years: int = 3  # SPEC S1: 3 years on the servers (gen-1 kept 2)
    hot_months: int = 2  # the current month and the one before stay in the hot store

    def __post_init__(self) -> None:
        if self.retention_years < 1:
            raise StoreError(f"retention must be at least one year, not {self.retention_years}")
        if self.hot_months < 1:
            raise StoreError(f"at least the current month stays hot, not {self.hot_months}")


@dataclass
class HousekeepingReport:
    compacted: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    archived_rows: int = 0
    deleted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"compacted {len(self.compacted)} month(s), archived {len(self.archived)} "
            f"({self.archived_rows:,} readings), deleted {len(self.deleted)} past retention"
        )


def run_housekeeping(
    store: Housekeeping,
    archive: ParquetArchive | None,
    now_us: int,
    policy: RetentionPolicy | None = None,
) -> HousekeepingReport:
    policy = policy or RetentionPolicy()
    report = HousekeepingReport()
    current = month_of(now_us)
    oldest_kept = current - 12 * policy.retention_years + 1
    hot = store.months("readings")
    for month in hot:
        if month < oldest_kept:
            continue
        if month < current and store.needs_compaction(month):
            store.compact(month)
            report.compacted.append(month_name(month))
        if archive is not None and month <= current - policy.hot_months:
            readings = store.export_month("readings", month)
            registers = store.export_month("register_reads", month)
            if month in archive.months():  # late versions arrived after archiving: merge
                readings = _merge(archive.read_month("readings", month), readings)
                registers = _merge(archive.read_month("register_reads", month), registers)
            report.archived_rows += archive.write_month(month, readings, registers)
            store.drop_month(month)
            report.archived.append(month_name(month))
            log.info("archived %s to %s", month_name(month), archive.root)
    for month in sorted(set(store.months("readings")) | set(store.months("register_reads"))):
        if month < oldest_kept:
            store.drop_month(month)
            report.deleted.append(month_name(month))
    if archive is not None:
        for month in archive.months():
            if month < oldest_kept:
                archive.drop_month(month)
                report.deleted.append(month_name(month))
    return report


def _merge(old: pa.Table, new: pa.Table) -> pa.Table:
    return pa.concat_tables([old, new.cast(old.schema)]) if old.num_rows else new
