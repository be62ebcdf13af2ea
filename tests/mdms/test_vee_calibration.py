"""VEE on clean simulated days (issue 13 item 7): with one to four days of history, at most
0.05 % of the values are flagged; a gross error in the same store is still caught. The fleet is
the simulator's (households, shops, PV, weather), an oracle independent of the rules."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kenshin.app.system import build_system
from kenshin.core.channels import Channel
from kenshin.core.quality import Quality, Rule
from kenshin.core.timeslots import JST, Resolution
from kenshin.fleet.simulator import FleetConfig
from kenshin.mdms import versions
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.store import ReadingQuery
from kenshin.mdms.sweep import day_window, run_sweep
from tests.mdms.test_duckdb_store import NO_REGISTERS, rows

START = dt.datetime(2026, 4, 6, tzinfo=JST)  # a Monday: weekdays, then a weekend
DAYS = 6
MAX_FLAGGED = 0.0005


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "c.duckdb"
    system = build_system(FleetConfig(n_meters=1500, start=START, seed=13), path)
    system.run(START + dt.timedelta(days=DAYS))
    system.close()
    return path


RULES = Rule.SPIKE | Rule.HIGH_LOW | Rule.ZERO_RUN | Rule.SUM_CHECK | Rule.NEGATIVE


def current(store: DuckDBStore, day: dt.date) -> pa.Table:
    start, end = day_window(day)
    rows = store.read_window_versions(Channel.ACTIVE_FORWARD, Resolution.MIN30, start, end)
    return versions.current_cells(rows, Resolution.MIN30.microseconds)


def test_a_clean_fleet_is_almost_never_flagged(clean) -> None:
    store = DuckDBStore(clean, read_only=True)
    try:
        days = [current(store, (START + dt.timedelta(days=d)).date()) for d in range(DAYS)]
        meters = store.meter_count()
    finally:
        store.close()
    values = sum(t.num_rows for t in days)
    flagged = sum(
        int(pc.sum(pc.not_equal(pc.bit_wise_and(t.column("failed_rule"), int(RULES)), 0)).as_py())
        for t in days
    )
    # every slot of every meter (and of the specified sub-meters behind some, SPEC S3), once
    assert values >= meters * 48 * DAYS
    assert flagged / values <= MAX_FLAGGED, f"{flagged} of {values} flagged"


def test_a_gross_error_is_still_caught(clean) -> None:
    """A value 10 × the largest half hour its meter showed all week (a wrong multiplier, a
    register glitch) on the last day, arriving after the day's sweep: swept again, it is
    estimated as a spike."""
    day = (START + dt.timedelta(days=DAYS - 1)).date()
    _, end = day_window(day)
    store = DuckDBStore(clean)
    try:
        meter = 7  # any meter of the roster
        week = pa.concat_tables(
            [current(store, (START + dt.timedelta(days=d)).date()) for d in range(DAYS)]
        )
        mine = week.filter(pc.equal(week.column("meter_key"), meter))
        most = int(pc.max(mine.column("value")).as_py())
        at = end - 20 * Resolution.MIN30.microseconds
        store.append(rows(meter, [at], [10 * max(most, 100)], end + 3_600_000_000), NO_REGISTERS)
        report = run_sweep(store, day, now_us=end + 2 * 3_600_000_000)
        query = ReadingQuery(meter, Channel.ACTIVE_FORWARD, Resolution.MIN30, at - 1, at)
        got = store.read(query).to_pylist()[0]
    finally:
        store.close()
    assert report.rules.get("spike", 0) >= 1
    assert got["quality"] == int(Quality.ESTIMATED) and got["failed_rule"] & int(Rule.SPIKE)
