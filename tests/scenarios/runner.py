"""Runs the given / when / then files of ``tests/scenarios/*.toml`` against a store.

A scenario names one JST ``day`` and speaks in slots of it (1–48 for 30-min values; register
boundaries 0–48). Steps happen in order, each at its own transaction time ``at``:

- ``ingest``: rows ``meter slot value [source]`` (a slot may be a range ``3-7``; source
  push | reread | poll, default push); ``off_grid``: rows ``meter minutes value`` whose interval
  ends ``minutes`` after the day starts (not on the slot grid);
- ``registers``: rows ``meter boundary register``;
- ``history``: ``days`` days before ``day`` of a flat ``value`` per slot for ``meters``, labelled
  valid (or ``estimated = [day offsets]`` as estimated days);
- ``sweep = true``: the VEE sweep of ``day`` with the ``[vee]`` settings and ``outages`` rows
  ``meter first_slot last_slot outage|disconnect``;
- ``edit``: rows ``meter slot value`` with ``reason`` and ``editor``;
- ``archive``: housekeeping with ``hot_months`` and ``retention_years`` at ``at``;
- ``reverse``: rows ``meter slot value`` ingested on the reverse channel;
- ``differences = true``: the specified-meter differences of ``day`` (SPEC S3), for the roster
  given at the top as ``specified`` rows ``meter parent kind`` (ev_charger | pv_inverter);
  sub-meters are not on the smart-meter roster ``meters`` (as in the fleet).

Expectations (``[[expect]]``): for ``meter`` (optionally ``as_of``), ``slots`` rows
``slot value quality method rule version`` (``-`` = no value / no rule, rule names joined by
``+``), ``gaps`` (slots in the gap list), ``history`` rows ``slot version value quality``,
``edits`` (number of audit rows), ``sum_equals_registers = [first, last]`` boundaries; ``channel``
(code or name, default active_forward) says which channel ``slots`` and ``history`` look at;
``span = [first, last]`` boundaries widens what ``slots``, ``count`` and ``history`` read (default
the day, ``[0, 48]``; slot 49 is the next day's first); ``month_rows``, ``month_registers``,
``archived_rows`` and ``archived_registers`` map ``"YYYY-MM"`` to the rows filed in that hot or
archived month (one month convention on every backend, ``kenshin.mdms.months``).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from kenshin.core.batches import readings_table
from kenshin.core.channels import Channel
from kenshin.core.quality import EstimationMethod, Quality, Rule, Source
from kenshin.core.schema import METERS_SCHEMA, REGISTER_READS_SCHEMA, TIMESTAMP
from kenshin.core.specified import SPECIFIED_SCHEMA, SpecifiedKind
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.mdms import versions
from kenshin.mdms.archive import ParquetArchive
from kenshin.mdms.differences import run_differences
from kenshin.mdms.edits import Edit, edit_readings
from kenshin.mdms.housekeeping import RetentionPolicy, run_housekeeping
from kenshin.mdms.months import month_name, parse_month
from kenshin.mdms.store import ReadingQuery
from kenshin.mdms.sweep import SupplyWindow, day_window, label_on_ingest, run_sweep
from kenshin.mdms.vee import VeeConfig

SCENARIOS = sorted(Path(__file__).parent.glob("*.toml"))
US30 = Resolution.MIN30.microseconds
_SOURCES = {"push": Source.METER_PUSH, "reread": Source.REREAD, "poll": Source.POLL}


def load(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def _rows(text: str) -> list[list[str]]:
    lines = [line.split("#", 1)[0].split() for line in text.strip().splitlines()]
    return [line for line in lines[1:] if line]  # the first line names the columns


def _slots(text: str) -> list[int]:
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(text)]


def _at(text: str) -> int:
    moment = dt.datetime.fromisoformat(text)
    return to_epoch_us(moment if moment.tzinfo else moment.replace(tzinfo=JST))


class Scenario:
    def __init__(self, spec: dict[str, Any], store: Any, tmp: Path) -> None:
        self.spec = spec
        self.store = store
        self.day = dt.date.fromisoformat(spec["day"])
        self.start, _ = day_window(self.day)
        self.channel = Channel.ACTIVE_FORWARD
        self.vee = VeeConfig.from_mapping(spec.get("vee", {}))
        self.archive = ParquetArchive(tmp / "archive")
        self.store.archive = self.archive
        keys = spec.get("meters", [1])
        self.store.write_meters(_roster(keys))
        self.specified = _rows(spec.get("specified", "h\n"))
        if self.specified:
            self.store.write_specified(_specified(self.specified))

    def end_of(self, slot: int) -> int:
        return self.start + slot * US30

    def run(self) -> None:
        for step in self.spec.get("step", []):
            self.step(step)

    def step(self, step: dict[str, Any]) -> None:
        at = _at(step["at"])
        readings: list[pa.Table] = []
        if "history" in step:
            readings.append(self._history(step["history"], at))
        if "ingest" in step:
            for meter, slot, value, *source in _rows(step["ingest"]):
                src = _SOURCES[source[0]] if source else Source.METER_PUSH
                slots = _slots(slot)
                readings.append(
                    self._readings(int(meter), [self.end_of(s) for s in slots], int(value), src, at)
                )
        if "reverse" in step:
            for meter, slot, value in _rows(step["reverse"]):
                ends = [self.end_of(s) for s in _slots(slot)]
                table = self._readings(int(meter), ends, int(value), Source.METER_PUSH, at)
                channel = pa.array(np.full(len(ends), int(Channel.ACTIVE_REVERSE), np.uint8))
                readings.append(table.set_column(1, "channel", channel))
        if "off_grid" in step:
            for meter, minutes, value in _rows(step["off_grid"]):
                end = self.start + int(minutes) * 60_000_000
                readings.append(
                    self._readings(int(meter), [end], int(value), Source.METER_PUSH, at)
                )
        registers = REGISTER_READS_SCHEMA.empty_table()
        if "registers" in step:
            rows = _rows(step["registers"])
            registers = pa.Table.from_arrays(
                [
                    pa.array([int(r[0]) for r in rows], pa.int32()),
                    pa.array([int(self.channel)] * len(rows), pa.uint8()),
                    pa.array([self.end_of(int(r[1])) for r in rows], pa.int64()).cast(TIMESTAMP),
                    pa.array([int(r[2]) for r in rows], pa.int32()),
                    pa.array([int(Source.METER_PUSH)] * len(rows), pa.uint8()),
                    pa.array([at] * len(rows), pa.int64()).cast(TIMESTAMP),
                ],
                schema=REGISTER_READS_SCHEMA,
            )
        if readings or registers.num_rows:
            table = (
                pa.concat_tables(readings) if readings else versions.empty(versions.READINGS_SCHEMA)
            )
            self.store.append(label_on_ingest(table), registers)
        if step.get("sweep"):
            windows = [
                SupplyWindow(int(m), self.end_of(int(a) - 1), self.end_of(int(b)), kind)
                for m, a, b, kind in _rows(step.get("outages", "h\n"))
            ]
            run_sweep(
                self.store,
                self.day,
                config=self.vee,
                now_us=at,
                supply_windows=windows,
                clock_offsets_s={
                    int(m): float(sec) for m, sec in _rows(step.get("clock_offsets", "h\n"))
                },
                history_days=step.get("history_days"),
            )
        if step.get("differences"):
            run_differences(self.store, self.day, now_us=at)
        if "edit" in step:
            by_meter: dict[int, list[Edit]] = {}
            for meter, slot, value in _rows(step["edit"]):
                by_meter.setdefault(int(meter), []).append(Edit(self.end_of(int(slot)), int(value)))
            for meter, edits in by_meter.items():
                edit_readings(
                    self.store,
                    meter,
                    self.channel,
                    Resolution.MIN30,
                    edits,
                    reason=step.get("reason", ""),
                    editor=step.get("editor", ""),
                    now_us=at,
                )
        if "archive" in step:
            policy = RetentionPolicy(
                retention_years=step.get("retention_years", 3), hot_months=step.get("hot_months", 1)
            )
            run_housekeeping(self.store, self.archive, at, policy)

    def _readings(
        self, meter: int, ends: list[int], value: int, source: Source, at: int
    ) -> pa.Table:
        n = len(ends)
        return readings_table(
            np.full(n, meter),
            int(self.channel),
            int(Resolution.MIN30),
            np.array(ends),
            np.full(n, value),
            None,
            int(Quality.RAW),
            int(source),
            0,
            0,
            at,
        )

    def _history(self, spec: dict[str, Any], at: int) -> pa.Table:
        tables = []
        estimated = set(spec.get("estimated", []))
        for offset in range(1, int(spec["days"]) + 1):
            start, _ = day_window(self.day - dt.timedelta(days=offset))
            ends = start + (np.arange(48) + 1) * US30
            date = self.day - dt.timedelta(days=offset)
            for meter in spec.get("meters", [1]):
                label = Quality.ESTIMATED if offset in estimated else Quality.VALID
                value = _day_value(spec, date, offset in estimated)
                tables.append(
                    readings_table(
                        np.full(48, meter),
                        int(self.channel),
                        30,
                        ends,
                        np.full(48, value),
                        None,
                        int(label),
                        int(Source.ESTIMATE if offset in estimated else Source.METER_PUSH),
                        int(EstimationMethod.LIKE_DAY if offset in estimated else 0),
                        0,
                        at,
                    )
                )
        return pa.concat_tables(tables)

    # ---- observations (identical on every backend)

    def observe(
        self,
        meter: int,
        as_of: int | None = None,
        channel: Channel | None = None,
        span: tuple[int, int] = (0, 48),
    ) -> list[tuple[Any, ...]]:
        query = ReadingQuery(
            meter,
            channel or self.channel,
            Resolution.MIN30,
            self.end_of(span[0]),
            self.end_of(span[1]),
            as_of,
        )
        table = self.store.read(query)
        ends = table.column("interval_end").cast(pa.int64()).to_pylist()
        return [
            ((e - self.start) // US30, v, Quality(q).label, EstimationMethod(m).label, r, ver)
            for e, v, q, m, r, ver in zip(
                ends,
                table.column("value").to_pylist(),
                table.column("quality").to_pylist(),
                table.column("method").to_pylist(),
                table.column("failed_rule").to_pylist(),
                table.column("version").to_pylist(),
                strict=True,
            )
        ]

    def history(
        self, meter: int, channel: Channel | None = None, span: tuple[int, int] = (0, 48)
    ) -> list[tuple[Any, ...]]:
        query = ReadingQuery(
            meter,
            channel or self.channel,
            Resolution.MIN30,
            self.end_of(span[0]),
            self.end_of(span[1]),
        )
        table = self.store.read_versions(query)
        ends = table.column("interval_end").cast(pa.int64()).to_pylist()
        return [
            ((e - self.start) // US30, ver, v, Quality(q).label)
            for e, ver, v, q in zip(
                ends,
                table.column("version").to_pylist(),
                table.column("value").to_pylist(),
                table.column("quality").to_pylist(),
                strict=True,
            )
        ]

    def gaps(self, meter: int) -> list[int]:
        table = self.store.read_gaps(meter)
        ends = table.column("interval_end").cast(pa.int64()).to_pylist()
        return [(e - self.start) // US30 for e in ends]

    def check(self, expect: dict[str, Any]) -> None:
        meter = int(expect.get("meter", 1))
        as_of = _at(expect["as_of"]) if "as_of" in expect else None
        channel = Channel.parse(expect.get("channel", int(self.channel)))
        first, last = expect.get("span", [0, 48])
        got = {row[0]: row for row in self.observe(meter, as_of, channel, (first, last))}
        if "slots" in expect:
            for slot_text, value, quality, method, rule, version in _rows(expect["slots"]):
                for slot in _slots(slot_text):
                    want = (
                        slot,
                        None if value == "-" else int(value),
                        quality,
                        method,
                        _rule(rule),
                        int(version),
                    )
                    assert got.get(slot) == want, f"slot {slot}: got {got.get(slot)}, want {want}"
        if "count" in expect:
            assert len(got) == expect["count"]
        if "gaps" in expect:
            assert self.gaps(meter) == expect["gaps"]
        if "history" in expect:
            want_h = [
                (int(s), int(ver), None if v == "-" else int(v), q)
                for s, ver, v, q in _rows(expect["history"])
            ]
            slots = {w[0] for w in want_h}
            history = self.history(meter, channel, (first, last))
            assert [h for h in history if h[0] in slots] == want_h
        if "edits" in expect:
            assert self.store.read_edits(meter).num_rows == expect["edits"]
        if "sum_equals_registers" in expect:
            first, last = expect["sum_equals_registers"]
            values = [got[s][1] for s in range(first + 1, last + 1)]
            rows = self.store.read_register_rows(
                self.channel, self.end_of(first), self.end_of(last)
            )
            regs = versions.latest_register_reads(rows, US30)
            by_time = dict(
                zip(
                    regs.column("read_at").cast(pa.int64()).to_pylist(),
                    regs.column("register").to_pylist(),
                    strict=True,
                )
            )
            delta = (by_time[self.end_of(last)] - by_time[self.end_of(first)]) % 10**8
            assert None not in values and sum(values) == delta
        if "months_archived" in expect:
            assert len(self.archive.months()) == expect["months_archived"]
        if "hot_months" in expect:
            assert len(self.store.months("readings")) == expect["hot_months"]
        for key, kind, read in (
            ("month_rows", "readings", self.store.export_month),
            ("month_registers", "register_reads", self.store.export_month),
            ("archived_rows", "readings", self.archive.read_month),
            ("archived_registers", "register_reads", self.archive.read_month),
        ):
            for month, rows in expect.get(key, {}).items():
                got_rows = read(kind, parse_month(month)).num_rows
                assert got_rows == rows, f"{key} {month}: got {got_rows}, want {rows}"

    def month_rows(self) -> dict[str, int]:
        """Rows of each hot and archived month, by kind: where the backend filed them."""
        out = {}
        for kind in ("readings", "register_reads"):
            for month in self.store.months(kind):
                out[f"hot/{kind}/{month_name(month)}"] = self.store.export_month(
                    kind, month
                ).num_rows
            for month in self.archive.months():
                rows = self.archive.read_month(kind, month).num_rows
                out[f"archive/{kind}/{month_name(month)}"] = rows
        return out

    def dump(self) -> dict[str, Any]:
        """Everything observable, to compare backends."""
        out: dict[str, Any] = {}
        for meter in self.spec.get("meters", [1]):
            out[f"{meter}/current"] = self.observe(int(meter))
            out[f"{meter}/history"] = self.history(int(meter))
            out[f"{meter}/gaps"] = self.gaps(int(meter))
            out[f"{meter}/edits"] = (
                self.store.read_edits(int(meter)).drop_columns(["tx_time"]).to_pylist()
            )
        out["months"] = self.month_rows()
        for meter in sorted({int(row[1]) for row in self.specified}):
            out[f"{meter}/differences"] = self.observe(meter, channel=Channel.DIFFERENCE_FORWARD)
            out[f"{meter}/differences/history"] = self.history(meter, Channel.DIFFERENCE_FORWARD)
        return out


def _day_value(spec: dict[str, Any], date: dt.date, estimated: bool) -> int:
    if estimated and "estimated_value" in spec:
        return int(spec["estimated_value"])
    by_class = spec.get("by_class")
    if by_class:
        from kenshin.mdms.daytypes import DayClass, day_class

        label = DayClass(int(day_class([date])[0])).name.lower()
        return int(by_class[label])
    return int(spec["value"])


def _rule(text: str) -> int:
    if text == "-":
        return 0
    flags = 0
    for name in text.split("+"):
        flags |= int(Rule[name.upper()])
    return flags


def _specified(rows: list[list[str]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "meter_key": int(m),
                "parent_key": int(p),
                "kind": int(SpecifiedKind.parse(kind)),
                "device_id": 900 + int(m),
            }
            for m, p, kind in rows
        ],
        schema=SPECIFIED_SCHEMA,
    )


def _roster(keys: list[int]) -> pa.Table:
    n = len(keys)
    columns: dict[str, Any] = {}
    for field in METERS_SCHEMA:
        if field.name == "meter_key":
            columns[field.name] = pa.array(keys, field.type)
        elif field.name == "supply_point_id":
            columns[field.name] = pa.array([f"SP{k:020d}" for k in keys], field.type)
        elif pa.types.is_boolean(field.type):
            columns[field.name] = pa.array([False] * n, field.type)
        else:
            columns[field.name] = pa.array([0] * n, field.type)
    return pa.table(columns, schema=METERS_SCHEMA)
