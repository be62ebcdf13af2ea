"""End to end: simulated meters → in-process A-route → HES → MDMS → DuckDB, checked in the store."""

import datetime as dt

import duckdb
import numpy as np
import pytest

from kenshin.app.system import build_system
from kenshin.core.channels import Channel
from kenshin.core.timeslots import JST, Resolution
from kenshin.errors import InvalidSetting
from kenshin.fleet.simulator import FleetConfig
from kenshin.hes.policy import CollectionPolicy

START = dt.datetime(2026, 5, 2, tzinfo=JST)  # includes a weekend and Golden Week holidays


def simulate(path, seed=3, meters=400, days=1, send_15min=False):
    config = FleetConfig(n_meters=meters, start=START, seed=seed, send_15min=send_15min)
    system = build_system(config, path)
    summary = system.run(START + dt.timedelta(days=days))
    system.close()
    return summary


@pytest.fixture(scope="module")
def day_db(tmp_path_factory):
    """A day with the soft switch on (SPEC A5), so that every resolution is delivered."""
    path = tmp_path_factory.mktemp("sys") / "day.duckdb"
    summary = simulate(path, send_15min=True)
    con = duckdb.connect(str(path), read_only=True)
    yield con, summary
    con.close()


def test_every_meter_delivers_every_30_min_slot(day_db):
    con, summary = day_db
    per_meter = con.execute(
        "SELECT meter_key, count(*) FROM readings WHERE resolution = 30 AND channel = 1 "
        "AND meter_key IN (SELECT meter_key FROM meters) GROUP BY 1"
    ).fetchall()
    assert len(per_meter) == 400
    assert {c for _, c in per_meter} == {48}
    # SPEC S3: the specified sub-meters (keys after the smart meters') send theirs too
    sub_meters = con.execute(
        "SELECT s.meter_key, count(r.value) FROM specified_meters s "
        "LEFT JOIN readings r ON r.meter_key = s.meter_key AND r.resolution = 30 "
        "AND r.channel = 1 GROUP BY 1"
    ).fetchall()
    assert sub_meters and {c for _, c in sub_meters} == {48}
    assert min(k for k, _ in sub_meters) >= 400
    assert (
        summary.values_by_resolution[30]
        # channel 5: the differences the MDMS computes (SPEC S3), not delivered values
        == con.execute(
            "SELECT count(*) FROM readings WHERE resolution = 30 AND channel != 5"
        ).fetchone()[0]
    )


def test_sum_of_30_min_values_equals_register_difference(day_db):
    con, _ = day_db
    # slots 2..48 lie between the first and the last register read (SPEC M5: rollover-safe)
    bad = con.execute(
        """
        WITH regs AS (
            SELECT meter_key, channel, arg_min(register, read_at) AS first_reg,
                   arg_max(register, read_at) AS last_reg, min(read_at) AS first_at
            FROM register_reads GROUP BY 1, 2),
        sums AS (
            SELECT r.meter_key, r.channel, sum(r.value) AS total
            FROM readings r JOIN regs g USING (meter_key, channel)
            WHERE r.resolution = 30 AND r.interval_end > g.first_at GROUP BY 1, 2)
        SELECT count(*) FROM regs JOIN sums USING (meter_key, channel)
        WHERE (last_reg - first_reg + 100000000) % 100000000 != total
        """
    ).fetchone()[0]
    assert bad == 0
    checked = con.execute("SELECT count(DISTINCT meter_key) FROM register_reads").fetchone()[0]
    assert checked == 400


def test_finer_values_add_up_to_30_min_values(day_db):
    con, _ = day_db
    for resolution, per_slot in ((15, 2), (5, 6)):
        rows = con.execute(
            f"""
            WITH fine AS (
                SELECT meter_key, channel,
                       time_bucket(INTERVAL 30 MINUTE, interval_end - INTERVAL 1 MICROSECOND)
                           AS slot,
                       sum(value) AS total, count(*) AS n
                FROM readings WHERE resolution = {resolution} AND channel IN (1, 2)
                GROUP BY 1, 2, 3)
            SELECT count(*) AS compared,
                   count(*) FILTER (WHERE f.total != c.value OR f.n != {per_slot})
            FROM fine f JOIN readings c
              ON c.resolution = 30 AND c.meter_key = f.meter_key
             AND c.channel = f.channel
             AND c.interval_end = f.slot + INTERVAL 30 MINUTE
            """
        ).fetchone()
        compared, mismatched = rows
        assert compared > 0
        assert mismatched == 0


def test_five_minute_sample_is_next_generation_and_about_ten_percent(day_db):
    """SPEC A2: about 10 % of the LV meters and, separately, of the HV/EHV meters."""
    con, _ = day_db
    by_class = con.execute(
        """
        SELECT meter_class >= 4 AS hv, count(*), count(*) FILTER (WHERE sampled_5min),
               count(*) FILTER (WHERE sampled_5min AND generation = 1)
        FROM meters GROUP BY 1 ORDER BY 1
        """
    ).fetchall()
    assert [hv for hv, *_ in by_class] == [False, True]
    for _, meters, sampled, gen1_sampled in by_class:
        assert sampled == round(0.10 * meters)
        assert gen1_sampled == 0
    # what each sampled meter sends: LV active, reactive and voltage; HV no voltage
    channels = con.execute(
        """
        WITH per_meter AS (
            SELECT m.meter_class >= 4 AS hv, list(DISTINCT r.channel ORDER BY r.channel) AS ch
            FROM readings r JOIN meters m USING (meter_key) WHERE r.resolution = 5
            GROUP BY m.meter_key, m.meter_class)
        SELECT hv, ch, count(*) FROM per_meter GROUP BY ALL
        """
    ).fetchall()
    assert sorted(channels) == [
        (False, [1, 2, 3, 4], by_class[0][2]),
        (True, [1, 2, 3], by_class[1][2]),
    ]
    # LV sampled meters send voltage, inside the statutory band most of the time
    volts = np.array(
        [v for (v,) in con.execute("SELECT value FROM readings WHERE channel = 4").fetchall()]
    )
    assert len(volts) > 0
    assert ((volts >= 950) & (volts <= 1070) | (volts >= 1820) & (volts <= 2220)).mean() > 0.95


def test_gen1_meters_send_no_15_or_5_minute_values(day_db):
    con, _ = day_db
    leaked = con.execute(
        "SELECT count(*) FROM readings r JOIN meters m USING (meter_key) "
        "WHERE m.generation = 1 AND r.resolution < 30"
    ).fetchone()[0]
    assert leaked == 0


def test_soft_switch_off_by_default_15_min_values_stay_on_the_meters(tmp_path):
    """SPEC A5, M1: by default next-generation meters send 30-min values and only record 15-min
    ones: none reach the store, none are swept, and the recorders hold them (2 × 15 = 30)."""
    config = FleetConfig(n_meters=200, start=START, seed=5)
    assert not config.send_15min
    system = build_system(config, tmp_path / "off.duckdb")
    system.run(START + dt.timedelta(days=1, hours=3))
    counts = system.store.reading_counts()
    assert counts.get(15, 0) == 0 and counts[30] > 0 and counts[5] > 0
    assert system.schedule is not None and system.schedule.sweeps
    assert {r.resolution for r in system.schedule.other_sweeps} == {
        Resolution.MIN30,
        Resolution.MIN5,
    }
    meters = system.fleet.meters
    gen2 = system.fleet.population.generation == 2
    for channel in (Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE):
        fifteen = meters.interval_values(Resolution.MIN15, channel, 48)
        thirty = meters.interval_values(Resolution.MIN30, channel, 24)
        assert fifteen[:, gen2].any()
        assert np.array_equal(fifteen[0::2] + fifteen[1::2], thirty)
    system.close()


def test_the_head_end_and_the_fleet_share_one_soft_switch():
    import threading

    def writers() -> int:
        return sum(t.name == "mdms-writer" for t in threading.enumerate())

    config = FleetConfig(n_meters=20, start=START, seed=5)
    before = writers()
    with pytest.raises(InvalidSetting, match="soft switch"):
        build_system(config, aroute="wire", policy=CollectionPolicy(send_15min=True))
    assert writers() == before  # refused before a store or a writer thread was opened


def test_same_seed_same_values_other_seed_other_values(tmp_path):
    def values(path):
        with duckdb.connect(str(path), read_only=True) as con:
            return con.execute(
                "SELECT meter_key, channel, resolution, epoch_us(interval_end), value "
                "FROM readings "
                "ORDER BY ALL"
            ).fetchall()

    simulate(tmp_path / "a.duckdb", seed=11, meters=120, days=1)
    simulate(tmp_path / "b.duckdb", seed=11, meters=120, days=1)
    simulate(tmp_path / "c.duckdb", seed=12, meters=120, days=1)
    a, b, c = (
        values(tmp_path / "a.duckdb"),
        values(tmp_path / "b.duckdb"),
        values(tmp_path / "c.duckdb"),
    )
    assert a == b
    assert a != c
