"""The meters' register and recorder invariants, driven by synthetic power (no load model)."""

import datetime as dt

import numpy as np
import pytest

from kenshin.core.channels import Channel
from kenshin.core.meterspec import MeterClass
from kenshin.core.switch import SwitchState
from kenshin.core.timeslots import JST, Resolution
from kenshin.errors import CapabilityError
from kenshin.fleet.meters import MODULUS, MeterFleet, RecorderPlan
from kenshin.fleet.population import PopulationConfig, build_population

START = dt.datetime(2026, 4, 1, tzinfo=JST)


@pytest.fixture
def meters() -> MeterFleet:
    population = build_population(PopulationConfig(n_meters=300), np.random.default_rng(7))
    return MeterFleet(population, seed=7, start=START)


def drive(meters: MeterFleet, steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = meters.n_meters
    for _ in range(steps):
        load = rng.gamma(2.0, 300.0, n)
        pv = np.where(rng.random(n) < 0.1, rng.uniform(0, 3000, n), 0.0)
        meters.advance(load, pv, load * 0.2, np.full(n, 1010, dtype=np.int16))


def test_sums_of_finer_intervals_equal_coarser_ones(meters):
    drive(meters, 6 * 8)  # four hours
    for ch in (Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE):
        v30 = meters.interval_values(Resolution.MIN30, ch, 8)
        v15 = meters.interval_values(Resolution.MIN15, ch, 16)
        v5 = meters.interval_values(Resolution.MIN5, ch, 48)
        assert np.array_equal(v15.reshape(8, 2, -1).sum(axis=1), v30)
        assert np.array_equal(v5.reshape(8, 6, -1).sum(axis=1), v30)
        assert v30.sum() > 0


def test_interval_sum_equals_register_delta_across_rollover(meters):
    # push every register close to rollover, then run a day so some roll over
    meters.preset_registers(np.full((3, meters.n_meters), MODULUS - 1500))
    drive(meters, 6, seed=1)  # one slot, so the recorders restart from the new registers
    before = meters.registers()
    drive(meters, 288)
    after = meters.registers()
    rolled = after[0] < before[0]
    assert rolled.sum() > 0  # the test exercises rollover
    v30 = meters.interval_values(Resolution.MIN30, Channel.ACTIVE_FORWARD, 48)
    assert np.array_equal(v30.sum(axis=0), (after[0] - before[0]) % MODULUS)
    assert (v30 >= 0).all()


def test_one_minute_values_add_up_to_five_minute_values(meters):
    drive(meters, 12)
    keys = np.array([0, 5, 17, 299])
    times, regs = meters.one_minute_registers(keys)
    assert len(times) == 61 and regs.shape == (61, 4)
    assert times[-1] == meters.now_us
    one_min = (regs[1:] - regs[:-1]) % MODULUS
    five = meters.interval_values(Resolution.MIN5, Channel.ACTIVE_FORWARD, 12)[:, keys]
    assert np.array_equal(one_min.reshape(12, 5, 4).sum(axis=1), five)
    # not just the 5-min value in one minute: spread over the minutes
    assert (one_min > 0).sum() > 30


def test_one_minute_values_are_reproducible(meters):
    drive(meters, 12)
    _, first = meters.one_minute_registers(np.arange(10))
    _, again = meters.one_minute_registers(np.arange(10))
    assert np.array_equal(first, again)
    with pytest.raises(ValueError, match="60 minutes"):
        meters.one_minute_registers(np.arange(2), minutes=61)


def test_open_switch_stops_counting(meters):
    meters.switch_state[:] = SwitchState.DISCONNECTED
    meters.switch_state[0] = SwitchState.CONNECTED
    before = meters.registers()
    drive(meters, 6)
    moved = (meters.registers() != before).any(axis=0)
    assert moved[0] and not moved[1:].any()
    assert (meters.voltage_dv[1:] == 0).all()


def test_recorder_refuses_what_it_no_longer_holds(meters):
    drive(meters, 6)
    ring = meters.ring5
    with pytest.raises(CapabilityError, match="not held"):
        ring.rows_for(np.array([meters.now_us - ring.depth * ring.step_us]))
    assert ring.rows_for(np.array([meters.now_us])).tolist() == [ring._head]


def test_start_must_be_on_a_slot_boundary():
    population = build_population(PopulationConfig(n_meters=5), np.random.default_rng(1))
    with pytest.raises(ValueError, match="30-min boundary"):
        MeterFleet(population, 1, START + dt.timedelta(minutes=5))


def test_small_fleets_keep_the_spec_retention_big_ones_what_the_budget_allows():
    small = RecorderPlan.from_budget(2_000, 256 * 2**20)
    # 45 days of 30-min values (M3, M4), and the snapshot before the oldest of them
    assert small.depth_30 == 45 * 48 + 2
    assert small.depth_5 == 10 * 288 + 2
    big = RecorderPlan.from_budget(1_000_000, 256 * 2**20)
    assert big.depth_5 == 13  # still an hour of 5-min snapshots for 1-minute values (B3)
    assert 3 <= big.depth_30 < small.depth_30


def test_recording_periods_size_the_rings_and_say_what_a_meter_still_holds():
    """SPEC M4: the utility's recording periods for next-generation meters; gen-1 meters keep
    30-min values 45 days whatever the setting (M3), so the 30-min ring keeps that long."""
    population = build_population(PopulationConfig(n_meters=50), np.random.default_rng(3))
    day = dt.timedelta(days=1)
    meters = MeterFleet(
        population, 3, START, recording_period_30_15=day, recording_period_5=2 * day
    )
    assert (meters.ring15.depth, meters.ring5.depth) == (96 + 2, 2 * 288 + 2)
    assert meters.ring30.depth == 45 * 48 + 2
    gen2 = int(np.flatnonzero(population.generation == 2)[0])
    gen1 = int(np.flatnonzero(population.generation == 1)[0])
    drive(meters, 12 * 30)  # 30 hours
    now, us_day = meters.now_us, 86_400_000_000
    assert meters.holds(gen2, Resolution.MIN30, now - us_day)
    assert not meters.holds(gen2, Resolution.MIN30, now - us_day - 1)
    assert not meters.holds(gen2, Resolution.MIN15, now - us_day - 1)
    assert meters.holds(gen2, Resolution.MIN5, now - 29 * us_day // 24)
    assert meters.holds(gen1, Resolution.MIN30, now - us_day - 1)
    assert not meters.holds(gen1, Resolution.MIN15, now)  # gen-1 records no 15-min values


def test_instantaneous_current_follows_power_voltage_and_wiring(meters):
    n = meters.n_meters
    meters.advance(np.full(n, 2020.0), np.zeros(n), np.zeros(n), np.full(n, 1010, dtype=np.int16))
    cls = meters.population.meter_class
    keys = np.arange(n)
    current = meters.instantaneous_current_a(keys)
    assert np.allclose(meters.power_w, 2020.0)
    two_wire = cls == MeterClass.LV_1P2W
    assert np.allclose(current[0, two_wire], 20.0)  # 2020 W / 101 V on one leg
    assert np.allclose(current[1, two_wire], 0.0)
    three_wire = cls == MeterClass.LV_1P3W
    assert np.allclose(current[:, three_wire].sum(axis=0), 20.0)  # split over two legs
    hv = cls == MeterClass.HV
    assert np.allclose(current[:, hv], 2020.0 / (np.sqrt(3) * 6600.0))


def test_emergency_profiles_follow_take_over_and_roll_back(meters: MeterFleet) -> None:
    """Issue 16: a campaign re-plans every half hour — each new profile follows the one in
    force, even when that one is itself a follower that took over; a profile starting now
    replaces both (a rollback: nothing queued comes back)."""
    minute = 60_000_000
    t0 = meters.now_us
    at = meters.limit_in_force
    base = int(meters.ampere_limit_a[5])
    meters.set_profile(5, 30, t0 + 30 * minute, t0 + 150 * minute)  # 18:00 → 20:30
    meters.now_us = t0 + 35 * minute
    meters.set_profile(5, 20, t0 + 60 * minute, t0 + 150 * minute)  # follows from 18:30
    assert at(t0 + 40 * minute)[5] == 30 and at(t0 + 65 * minute)[5] == 20
    meters.now_us = t0 + 65 * minute  # the follower took over; the next one follows it
    meters.set_profile(5, 15, t0 + 90 * minute, t0 + 150 * minute)
    assert at(t0 + 70 * minute)[5] == 20 and at(t0 + 95 * minute)[5] == 15
    assert at(t0 + 150 * minute)[5] == base  # back by itself
    meters.now_us = t0 + 70 * minute  # a rollback: in force now, and the follower is gone
    meters.set_profile(5, base, t0 + 70 * minute, t0 + 71 * minute)
    assert at(t0 + 95 * minute)[5] == base and at(t0 + 120 * minute)[5] == base
