"""Exports (kenshin.mdms.export, issue 13 item 3) on every backend: the current value of every
cell, the same as each meter's point read (an independent path: the reading rule per meter, in
the store), in physical units as the API gives them, across a month boundary, after the older
month was archived, and as known at a past time (SPEC S2)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kenshin.app.stores import remember_archive
from kenshin.core.channels import Channel
from kenshin.core.quality import EstimationMethod, Quality, Rule, Source
from kenshin.core.schema import METERS_SCHEMA
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.mdms.export import ExportRequest, export_days, write_export
from kenshin.mdms.housekeeping import RetentionPolicy, run_housekeeping
from kenshin.mdms.store import ReadingQuery
from tests.mdms.test_duckdb_store import NO_REGISTERS, roster, rows
from tests.mdms.test_reports import with_source

US30 = Resolution.MIN30.microseconds
MIN = 60_000_000
START = to_epoch_us(dt.datetime(2026, 4, 30, tzinfo=JST))  # April's last day, then May 1
END = START + 2 * 86_400_000_000
METERS = 3


def fill(store) -> None:  # type: ignore[no-untyped-def]
    meters = roster(METERS)
    for name, values in (
        ("area", [3] * METERS),
        ("customer_type", [1] * METERS),
        ("generation", [2] * METERS),
        ("unit_exponent", [-2, -1, -2]),  # 0.01 kWh, 0.1 kWh counts
        ("coefficient", [1, 1, 40]),  # a transformer-rated meter multiplies by 40
    ):
        index = METERS_SCHEMA.names.index(name)
        keys = np.asarray(meters.column("meter_key"))
        column = pa.array([values[k] for k in keys], METERS_SCHEMA.field(name).type)
        meters = meters.set_column(index, name, column)
    store.write_meters(meters)
    for meter in range(METERS):
        ends = [START + (s + 1) * US30 for s in range(96)]
        store.append(rows(meter, ends, [meter * 100 + s for s in range(96)], END), NO_REGISTERS)
    # meter 1: slot 10 re-estimated later, slot 60 (May) corrected by a re-read later still
    late = END + 60 * MIN
    estimate = rows(1, [START + 11 * US30], [999], late, Quality.ESTIMATED)
    store.append(
        with_source(
            estimate,
            Source.ESTIMATE,
            method=int(EstimationMethod.LIKE_DAY),
            failed_rule=int(Rule.SPIKE | Rule.SUM_CHECK),
        ),
        NO_REGISTERS,
    )
    reread = rows(1, [START + 61 * US30], [555], late + 60 * MIN, Quality.VALID)
    store.append(with_source(reread, Source.REREAD), NO_REGISTERS)


def exported(store, **kwargs) -> pa.Table:  # type: ignore[no-untyped-def]
    return pa.concat_tables(list(export_days(store, ExportRequest(START, END, **kwargs))))


def point_reads(store, meter: int, as_of_us: int | None = None) -> pa.Table:  # type: ignore[no-untyped-def]
    query = ReadingQuery(meter, Channel.ACTIVE_FORWARD, Resolution.MIN30, START, END, as_of_us)
    return store.read(query)


def check_against_point_reads(store, table: pa.Table, as_of_us: int | None = None) -> None:  # type: ignore[no-untyped-def]
    scale = {0: 0.01, 1: 0.1, 2: 0.4}
    for meter in range(METERS):
        mine = table.filter(
            pa.compute.equal(table.column("supply_point_id").cast(pa.string()), f"03{meter:020d}")
        )
        expected = point_reads(store, meter, as_of_us)
        assert (
            mine.column("interval_end").to_pylist() == expected.column("interval_end").to_pylist()
        )
        assert mine.column("raw").to_pylist() == expected.column("value").to_pylist()
        assert mine.column("value").to_pylist() == pytest.approx(
            [v * scale[meter] for v in expected.column("value").to_pylist()]
        )
        qualities = [Quality(q).label for q in expected.column("quality").to_pylist()]
        assert mine.column("quality").cast(pa.string()).to_pylist() == qualities


def test_an_export_is_every_meters_current_values(store) -> None:  # type: ignore[no-untyped-def]
    fill(store)
    table = exported(store)
    assert table.num_rows == METERS * 96
    check_against_point_reads(store, table)
    row = table.filter(pa.compute.equal(table.column("raw"), 999)).to_pylist()[0]
    assert (row["quality"], row["source"], row["method"]) == ("estimated", "estimate", "like_day")
    assert row["rules"] == "spike sum_check" and row["value"] == pytest.approx(99.9)
    assert table.column("rules").null_count == table.num_rows - 1


def test_as_of_gives_what_was_known_then(store) -> None:  # type: ignore[no-untyped-def]
    fill(store)
    before = END + 30 * MIN  # the estimate and the re-read came later
    table = exported(store, as_of_us=before)
    check_against_point_reads(store, table, before)
    assert 999 not in table.column("raw").to_pylist()


def test_an_archived_month_is_exported_as_before(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fill(store)
    whole = exported(store)
    remember_archive(store, tmp_path / "archive")
    now = to_epoch_us(dt.datetime(2026, 7, 1, tzinfo=JST))
    report = run_housekeeping(store, store.archive, now, RetentionPolicy(hot_months=1))
    assert report.archived  # April and May left the hot store
    assert store.months("readings") == []
    assert exported(store).to_pylist() == whole.to_pylist()


def test_chosen_meters_only_and_files_round_trip(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fill(store)
    table = exported(store, meter_keys=np.array([2], np.int64))
    assert set(table.column("supply_point_id").cast(pa.string()).to_pylist()) == {f"03{2:020d}"}
    request = ExportRequest(START, END)
    out = tmp_path / "out"
    out.mkdir()
    parquet = out / "x.parquet"
    assert write_export(export_days(store, request), parquet, "parquet") == METERS * 96
    assert pq.read_table(parquet).to_pylist() == exported(store).to_pylist()
    csv = out / "x.csv"
    write_export(export_days(store, request), csv, "csv")
    lines = csv.read_text().splitlines()
    assert len(lines) == METERS * 96 + 1
    assert lines[1].split(",")[3] == '"2026-04-30T00:30:00+09:00"'
    assert sorted(p.name for p in out.iterdir()) == ["x.csv", "x.parquet"]  # no leftovers
