"""Behaviour of the fleet's physical models: determinism, shapes, calendar, PV, HVAC, voltage."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from kenshin.core.customers import CustomerType
from kenshin.core.ids import AREA_SITES, Area
from kenshin.core.meterspec import MeterClass
from kenshin.core.timeslots import JST
from kenshin.fleet.load import DayType, LoadModel, StepPower, day_type
from kenshin.fleet.population import Population, PopulationConfig, build_population
from kenshin.fleet.voltage import VoltageModel
from kenshin.fleet.weather import SkyRegime, WeatherModel
from kenshin.grid.topology import TopologyConfig

STEP = dt.timedelta(minutes=5)


@pytest.fixture(scope="module")
def population() -> Population:
    config = PopulationConfig(n_meters=1500, topology=TopologyConfig(customers_per_feeder=300))
    return build_population(config, np.random.default_rng(42))


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=JST)


def run(model: LoadModel, start: dt.datetime, steps: int) -> list[StepPower]:
    return [model.step(start + k * STEP) for k in range(steps)]


def mean_load(model: LoadModel, start: dt.datetime, steps: int, mask: np.ndarray) -> float:
    return float(np.mean([s.load_w[mask].mean() for s in run(model, start, steps)]))


def first_day(model: LoadModel, regime: SkyRegime, start: dt.date) -> dt.date:
    day = start
    while model.weather.day(day).regime is not regime:
        day += dt.timedelta(days=1)
    return day


def test_same_seed_gives_identical_output(population: Population) -> None:
    start = at(dt.date(2026, 5, 11), 11)
    runs = []
    for seed in (7, 7, 8):
        load, volts = LoadModel(population, seed), VoltageModel(population, seed)
        steps = run(load, start, 6)
        voltage = [volts.step(s.load_w - s.pv_w) for s in steps]
        runs.append((np.stack([s.load_w for s in steps]), np.stack(voltage)))
    (load_a, volt_a), (load_b, volt_b), (load_c, volt_c) = runs
    np.testing.assert_array_equal(load_a, load_b)
    np.testing.assert_array_equal(volt_a, volt_b)
    assert not np.array_equal(load_a, load_c)
    assert not np.array_equal(volt_a, volt_c)


def test_a_day_looks_the_same_whatever_day_came_before() -> None:
    site = AREA_SITES[Area.TOKYO]
    fresh, warmed = WeatherModel(site, 3), WeatherModel(site, 3)
    for offset in range(5):
        warmed.day(dt.date(2026, 3, 1) + dt.timedelta(days=offset))
    day = dt.date(2026, 3, 10)
    np.testing.assert_array_equal(fresh.day(day).temp_c, warmed.day(day).temp_c)
    np.testing.assert_array_equal(fresh.day(day).clear_sky_index, warmed.day(day).clear_sky_index)
    assert not np.array_equal(WeatherModel(site, 4).day(day).temp_c, fresh.day(day).temp_c)


def test_outputs_have_the_promised_shapes_dtypes_and_signs(population: Population) -> None:
    load, volts = LoadModel(population, 1), VoltageModel(population, 1)
    n = len(population)
    for power in run(load, at(dt.date(2026, 1, 20), 17), 12):
        for values in (power.load_w, power.pv_w, power.reactive_var):
            assert values.shape == (n,)
            assert values.dtype == np.float64
            assert np.isfinite(values).all()
            assert (values >= 0).all()
        assert isinstance(power.temperature_c, float)
        voltage = volts.step(power.load_w - power.pv_w)
        assert voltage.shape == (n,)
        assert voltage.dtype == np.int16
    assert (power.load_w > 0).mean() > 0.99


def test_households_stay_within_their_ampere_contract(population: Population) -> None:
    load = LoadModel(population, 2)
    limited = population.contract_a > 0
    limit_w = population.contract_a[limited] * 100.0
    # the winter evening peak, when heating, cooking and baths coincide
    for power in run(load, at(dt.date(2026, 1, 21), 18), 36):
        assert (power.load_w[limited] <= limit_w + 1e-6).all()


def tan(power_factor: float) -> float:
    return float(np.tan(np.arccos(power_factor)))


def test_reactive_power_follows_the_customer_power_factor(population: Population) -> None:
    power = LoadModel(population, 3).step(at(dt.date(2026, 6, 3), 10))
    ratio = power.reactive_var / np.maximum(power.load_w, 1e-9)
    households = np.isin(population.customer_type, [1, 2]) & (power.load_w > 0)
    motors = (population.customer_type == CustomerType.LV_POWER) & (power.load_w > 0)
    assert (ratio[households] >= tan(0.99) - 1e-6).all()
    assert (ratio[households] <= tan(0.95) + 1e-6).all()
    assert (ratio[motors] >= tan(0.90) - 1e-6).all()
    assert (ratio[motors] <= tan(0.80) + 1e-6).all()


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (dt.date(2026, 5, 4), DayType.HOLIDAY),  # Greenery Day (a Monday)
        (dt.date(2026, 5, 11), DayType.WEEKDAY),
        (dt.date(2026, 5, 9), DayType.SATURDAY),
        (dt.date(2026, 5, 10), DayType.HOLIDAY),  # Sunday
        (dt.date(2026, 8, 14), DayType.HOLIDAY),  # Obon
        (dt.date(2026, 12, 30), DayType.HOLIDAY),  # year-end
        (dt.date(2027, 1, 4), DayType.WEEKDAY),
    ],
)
def test_japanese_calendar(day: dt.date, expected: DayType) -> None:
    assert day_type(day) is expected


def test_shops_and_offices_run_lower_on_a_public_holiday(population: Population) -> None:
    business = population.customer_type == CustomerType.SHOP_OFFICE
    holiday = mean_load(LoadModel(population, 4), at(dt.date(2026, 5, 4), 10), 72, business)
    weekday = mean_load(LoadModel(population, 4), at(dt.date(2026, 5, 11), 10), 72, business)
    assert holiday < 0.8 * weekday


def test_pv_is_zero_at_night_and_strong_at_a_clear_noon(population: Population) -> None:
    load = LoadModel(population, 5)
    has_pv = population.pv_kw > 0
    assert has_pv.sum() >= 20
    day = first_day(load, SkyRegime.CLEAR, dt.date(2026, 4, 1))
    night = load.step(at(day, 1))
    assert (night.pv_w == 0).all()
    noon = run(load, at(day, 11, 50), 4)[-1]
    assert (noon.pv_w[~has_pv] == 0).all()
    per_kw = noon.pv_w[has_pv] / (population.pv_kw[has_pv] * 1000.0)
    assert np.median(per_kw) > 0.5
    assert (per_kw <= 1.0 + 1e-6).all()


def test_pv_is_weaker_under_overcast(population: Population) -> None:
    load = LoadModel(population, 5)
    has_pv = population.pv_kw > 0
    clear = first_day(load, SkyRegime.CLEAR, dt.date(2026, 4, 1))
    grey = first_day(load, SkyRegime.OVERCAST, dt.date(2026, 4, 1))
    sunny = load.step(at(clear, 12)).pv_w[has_pv].sum()
    dull = LoadModel(population, 5).step(at(grey, 12)).pv_w[has_pv].sum()
    assert dull < 0.6 * sunny


def test_cooling_raises_august_afternoon_household_load(population: Population) -> None:
    households = np.isin(population.customer_type, [1, 2])
    august, may = LoadModel(population, 6), LoadModel(population, 6)
    hot = mean_load(august, at(dt.date(2026, 8, 5), 13), 36, households)
    mild = mean_load(may, at(dt.date(2026, 5, 13), 13), 36, households)
    assert august.step(at(dt.date(2026, 8, 5), 16)).temperature_c > 27
    assert hot > 1.2 * mild


def test_voltage_is_zero_for_hv_and_near_nominal_for_lv(population: Population) -> None:
    load, volts = LoadModel(population, 9), VoltageModel(population, 9)
    power = load.step(at(dt.date(2026, 10, 7), 19))
    voltage = volts.step(power.load_w - power.pv_w)
    hv = ~population.is_low_voltage
    assert hv.any()
    assert (voltage[hv] == 0).all()
    single = np.isin(population.meter_class, [MeterClass.LV_1P2W, MeterClass.LV_1P3W])
    three = population.meter_class == MeterClass.LV_3P3W
    assert 950 <= np.median(voltage[single]) <= 1070
    assert 1900 <= np.median(voltage[three]) <= 2140


def test_reverse_flow_raises_voltage(population: Population) -> None:
    volts = VoltageModel(population, 10), VoltageModel(population, 10)
    lv = population.is_low_voltage
    forward = volts[0].step(np.where(lv, 800.0, 0.0))
    reverse = volts[1].step(np.where(lv, -800.0, 0.0))
    assert (reverse[lv].astype(int) - forward[lv] > 0).mean() > 0.99


def test_step_refuses_naive_times_and_steps_past_midnight(population: Population) -> None:
    load = LoadModel(population, 11)
    with pytest.raises(ValueError, match="time zone"):
        load.step(dt.datetime(2026, 5, 11, 12))
    with pytest.raises(ValueError, match="midnight"):
        load.step(at(dt.date(2026, 5, 11), 23, 55), minutes=15)


def test_other_step_lengths_average_the_same_minutes(population: Population) -> None:
    start = at(dt.date(2026, 5, 11), 12)
    half_hour = LoadModel(population, 12).step(start, minutes=30)
    fives = run(LoadModel(population, 12), start, 6)
    assert half_hour.temperature_c == pytest.approx(np.mean([s.temperature_c for s in fives]))
    has_pv = population.pv_kw > 0
    np.testing.assert_allclose(
        half_hour.pv_w[has_pv], np.mean([s.pv_w[has_pv] for s in fives], axis=0), rtol=0.05
    )


def test_supply_point_ids_find_their_meter_keys() -> None:
    pop = build_population(PopulationConfig(n_meters=500), np.random.default_rng(4))
    picked = [int(k) for k in (7, 0, 499, 123)]
    ids = [str(pop.supply_point_id[k]) for k in picked]
    assert pop.keys_of([*ids, "0399999999999999999999"]) == [*picked, None]
