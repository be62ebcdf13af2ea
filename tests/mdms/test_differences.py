"""Specified-meter differences (SPEC S3): hand-computed examples on both backends, the roster of
specified meters in each store, and a simulated day end to end."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kenshin.app.system import build_system
from kenshin.core.batches import readings_table
from kenshin.core.channels import Channel
from kenshin.core.quality import Quality, Rule, Source
from kenshin.core.schema import REGISTER_READS_SCHEMA
from kenshin.core.specified import SPECIFIED_SCHEMA, SpecifiedKind
from kenshin.core.timeslots import JST, Resolution
from kenshin.fleet.simulator import FleetConfig
from kenshin.mdms import versions
from kenshin.mdms.differences import combine, run_differences
from kenshin.mdms.store import ReadingQuery
from kenshin.mdms.sweep import day_window
from tests.mdms.conftest import Backend
from tests.mdms.test_duckdb_store import NO_REGISTERS
from tests.mdms.test_duckdb_store import rows as _rows_of

DAY = dt.date(2026, 4, 8)
START, END = day_window(DAY)
US30 = Resolution.MIN30.microseconds
EV, PV = SpecifiedKind.EV_CHARGER, SpecifiedKind.PV_INVERTER
NOW = END + 2 * 3_600_000_000


def roster(*rows: tuple[int, int, SpecifiedKind]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"meter_key": m, "parent_key": p, "kind": int(k), "device_id": 10**14 + m}
            for m, p, k in rows
        ],
        schema=SPECIFIED_SCHEMA,
    )


def values(
    meter: int,
    per_slot: list[int | None],
    *,
    channel: Channel = Channel.ACTIVE_FORWARD,
    quality: Quality = Quality.VALID,
    rule: int = 0,
    at: int = END,
) -> pa.Table:
    """One day of 30-min values of one meter (None: a MISSING placeholder with no value)."""
    present = np.array([v is not None for v in per_slot])
    value = np.array([0 if v is None else v for v in per_slot])
    labels = np.where(present, int(quality), int(Quality.MISSING))
    return readings_table(
        np.full(48, meter),
        int(channel),
        30,
        START + (np.arange(48) + 1) * US30,
        value,
        present,
        labels,
        int(Source.METER_PUSH),
        0,
        np.where(present, rule, int(Rule.MISSING)),
        at,
    )


def store_values(store: Any, *tables: pa.Table) -> None:
    store.append(pa.concat_tables(tables), REGISTER_READS_SCHEMA.empty_table())


def differences(store: Any, meter: int, as_of: int | None = None) -> pa.Table:
    query = ReadingQuery(meter, Channel.DIFFERENCE_FORWARD, Resolution.MIN30, START, END, as_of)
    return store.read(query)


def test_the_roster_of_specified_meters_round_trips(backend: Backend) -> None:
    store = backend.open()
    assert store.read_specified().num_rows == 0
    store.write_specified(roster((101, 1, EV), (102, 2, PV), (103, 2, EV)))
    assert store.read_specified(2).column("meter_key").to_pylist() == [102, 103]
    assert store.read_specified().to_pylist()[0] == {
        "meter_key": 101,
        "parent_key": 1,
        "kind": int(EV),
        "device_id": 10**14 + 101,
    }
    store.write_specified(roster((104, 3, PV)))  # replaced whole
    assert store.read_specified().column("meter_key").to_pylist() == [104]


def test_an_ev_charger_is_subtracted_with_labels_for_each_case(backend: Backend) -> None:
    store = backend.open()
    store.write_specified(roster((101, 1, EV)))
    main = [100] * 48
    charger: list[int | None] = [30] * 48
    charger[4] = 130  # more than the house drew: 100 − 130 = −30
    charger[9] = None  # the charger's value is missing
    # slot 20 of the main meter: a later version, estimated by the sweep
    estimated = values(1, [100] * 48, quality=Quality.ESTIMATED, rule=int(Rule.MISSING), at=END + 1)
    store_values(
        store,
        values(1, main),
        values(101, charger),
        estimated.filter(pa.array(np.arange(48) == 19)),
    )
    report = run_differences(store, DAY, now_us=NOW)
    assert (report.parents, report.cells, report.written) == (1, 48, 48)

    table = differences(store, 1)
    got = dict(
        zip(
            range(1, 49),
            zip(
                table.column("value").to_pylist(),
                table.column("quality").to_pylist(),
                table.column("failed_rule").to_pylist(),
                strict=True,
            ),
            strict=True,
        )
    )
    assert got[1] == (70, Quality.VALID, 0)
    assert got[5] == (-30, Quality.SUSPECT, Rule.NEGATIVE)
    assert got[10] == (None, Quality.MISSING, Rule.MISSING)
    assert got[20] == (70, Quality.ESTIMATED, Rule.MISSING)
    assert set(table.column("source").to_pylist()) == {int(Source.ESTIMATE)}
    assert report.quality == {"valid": 45, "estimated": 1, "suspect": 1, "missing": 1}

    # a second run with nothing new writes nothing; a late charger value changes one cell
    assert run_differences(store, DAY, now_us=NOW + 1).written == 0
    late = values(101, [30] * 48, at=NOW + 2).filter(pa.array(np.arange(48) == 9))
    store.append(late, REGISTER_READS_SCHEMA.empty_table())
    assert run_differences(store, DAY, now_us=NOW + 3).written == 1
    table = differences(store, 1)
    assert table.column("value")[9].as_py() == 70
    assert table.column("version")[9].as_py() == 2
    assert differences(store, 1, as_of=NOW + 1).column("value")[9].as_py() is None


def test_a_pv_inverter_gives_the_house_own_consumption(backend: Backend) -> None:
    store = backend.open()
    store.write_specified(roster((201, 2, PV), (301, 3, EV)))
    noon = np.arange(48) >= 20
    store_values(
        store,
        values(2, [40] * 48),  # forward: import
        values(2, [60 if n else 0 for n in noon], channel=Channel.ACTIVE_REVERSE),  # export
        values(201, [150 if n else 0 for n in noon]),  # generation
        values(3, [10] * 48),
        # meter 3's charger sent nothing at all: every slot missing
    )
    run_differences(store, DAY, now_us=NOW)
    own = differences(store, 2).column("value").to_pylist()
    assert own[:20] == [40] * 20  # night: import only
    assert own[20:] == [130] * 28  # 40 imported + (150 − 60) self-consumed
    assert set(differences(store, 2).column("quality").to_pylist()) == {Quality.VALID}
    three = differences(store, 3)
    assert three.num_rows == 48
    assert set(three.column("quality").to_pylist()) == {Quality.MISSING}
    assert three.column("value").null_count == 48


def test_combine_carries_the_input_labels() -> None:
    # two parents; terms: main 0, charger of 0, main 1, charger of 1; two slots each
    value = np.array([[10, 10], [4, 12], [5, 5], [1, 1]], np.int64)
    present = np.array([[1, 1], [1, 1], [1, 0], [1, 1]], bool)
    quality = np.array([[1, 2], [3, 1], [6, 5], [1, 1]], np.int16)
    rule = np.array([[0, int(Rule.SPIKE)], [int(Rule.ZERO_RUN), 0], [int(Rule.OUTAGE), 0], [0, 0]])
    total, ok, q, r = combine(
        value,
        present,
        quality,
        rule.astype(np.int32),
        np.array([1, -1, 1, -1]),
        np.array([0, 0, 1, 1]),
        2,
    )
    assert total.tolist() == [[6, -2], [4, 0]]
    assert ok.tolist() == [[True, True], [True, False]]
    assert q.tolist() == [
        [Quality.SUSPECT, Quality.SUSPECT],  # a suspect input; a negative difference
        [Quality.OUTAGE, Quality.MISSING],
    ]
    assert r.tolist() == [
        [Rule.ZERO_RUN, Rule.SPIKE | Rule.NEGATIVE],
        [Rule.OUTAGE, Rule.MISSING],
    ]


def test_a_simulated_day_gives_valid_non_negative_differences() -> None:
    start = dt.datetime(2026, 5, 2, tzinfo=JST)
    config = FleetConfig(n_meters=600, start=start, seed=4, specified_share=0.3)
    system = build_system(config)
    system.run(start + dt.timedelta(days=1))
    specified = system.store.read_specified()
    kinds = set(specified.column("kind").to_pylist())
    assert kinds == {int(EV), int(PV)}
    assert system.schedule is not None
    [report] = system.schedule.differences
    parents = len(set(specified.column("parent_key").to_pylist()))
    assert (report.parents, report.quality) == (parents, {"valid": parents * 48})
    day = system.store.read_window(
        Channel.DIFFERENCE_FORWARD, Resolution.MIN30, *day_window(start.date())
    )
    assert day.num_rows == parents * 48
    assert min(day.column("value").to_pylist()) >= 0
    system.close()


def test_parents_rows_are_read_by_key_and_only_theirs(store, monkeypatch) -> None:
    """The differences ask the store for the meters they need by key, and only those meters'
    rows leave it: the same current versions as one scan of everything, filtered."""
    from kenshin.mdms import differences

    day = dt.date(2026, 4, 2)
    start, end = differences.day_window(day)
    us30 = Resolution.MIN30.microseconds
    for meter in range(21):
        ends = [start + us30, start + 2 * us30]
        store.append(_rows_of(meter, ends, [meter, meter + 100], start + 3 * us30), NO_REGISTERS)
    store.append(_rows_of(7, [start + us30], [777], start + 4 * us30), NO_REGISTERS)  # newer
    keys = np.array([19, 1, 8, 7])
    read = store.read_window_versions
    scanned: list[int] = []

    def spy(*args: Any, **kwargs: Any) -> pa.Table:
        rows = read(*args, **kwargs)
        scanned.extend(rows.column("meter_key").to_pylist())
        return rows

    monkeypatch.setattr(store, "read_window_versions", spy)
    got = differences._current(store, Channel.ACTIVE_FORWARD, start, end, keys)
    monkeypatch.undo()
    assert sorted(set(scanned)) == [1, 7, 8, 19]
    everything = versions.current_cells(
        store.read_window_versions(Channel.ACTIVE_FORWARD, Resolution.MIN30, start, end), us30
    )
    want = everything.filter(pc.is_in(everything.column("meter_key"), pa.array(keys, pa.int32())))
    order = ["meter_key", "interval_end"]
    assert got.sort_by([(c, "ascending") for c in order]).equals(
        want.sort_by([(c, "ascending") for c in order])
    )
    assert sorted(set(got.column("meter_key").to_pylist())) == [1, 7, 8, 19]
    assert 777 in got.column("value").to_pylist()
