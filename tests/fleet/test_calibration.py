"""Calibration of the fleet models against Japanese figures (SPEC Facts; docs/fleet-model.md).

One simulated week in each month of 2026 for 2,000 Tokyo-area meters stands in for the year.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from kenshin.core.customers import CustomerType
from kenshin.core.meterspec import MeterClass
from kenshin.core.timeslots import JST
from kenshin.fleet.load import LoadModel
from kenshin.fleet.population import Population, PopulationConfig, build_population
from kenshin.fleet.voltage import VoltageModel
from kenshin.fleet.weather import SkyRegime
from kenshin.grid.topology import TopologyConfig

DAYS_PER_MONTH = 7
MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
F64 = npt.NDArray[np.float64]


@dataclass
class Year:
    population: Population
    monthly_kwh: F64  # (12, meters), scaled from the sampled week to the month
    pv_kwh: float  # scaled to the year
    voltage_by_hour: F64  # mean 100 V-class voltage by hour of day [V]
    share_100_inside: float
    share_100_above: float
    share_200_inside: float


def make_population(n: int, seed: int) -> Population:
    # short feeders, so a small fleet still has a handful of them with different PV propensity
    config = PopulationConfig(n_meters=n, topology=TopologyConfig(customers_per_feeder=250))
    return build_population(config, np.random.default_rng(seed))


@pytest.fixture(scope="module")
def year() -> Year:
    population = make_population(2000, 3)
    load, volts = LoadModel(population, 11), VoltageModel(population, 11)
    n = len(population)
    single = np.isin(population.meter_class, [MeterClass.LV_1P2W, MeterClass.LV_1P3W])
    three = population.meter_class == MeterClass.LV_3P3W
    energy_wh = np.zeros((12, n))
    pv_wh = 0.0
    counts = np.zeros(4)  # 100 V inside, 100 V above, 200 V inside, samples per step
    by_hour = np.zeros(24)
    for month in range(1, 13):
        for offset in range(DAYS_PER_MONTH):
            midnight = dt.datetime(2026, month, 8 + offset, tzinfo=JST)
            for k in range(288):
                power = load.step(midnight + dt.timedelta(minutes=5 * k))
                voltage = volts.step(power.load_w - power.pv_w)
                energy_wh[month - 1] += power.load_w
                pv_wh += float(power.pv_w.sum())
                v100, v200 = voltage[single], voltage[three]
                counts += [
                    float(np.count_nonzero((v100 >= 950) & (v100 <= 1070))),
                    float(np.count_nonzero(v100 > 1070)),
                    float(np.count_nonzero((v200 >= 1820) & (v200 <= 2220))),
                    1.0,
                ]
                by_hour[k // 12] += float(v100.mean()) / 10.0
    energy_wh *= 5 / 60
    days = DAYS_PER_MONTH * 12
    return Year(
        population=population,
        monthly_kwh=energy_wh / 1000 / DAYS_PER_MONTH * MONTH_DAYS[:, None],
        pv_kwh=pv_wh * 5 / 60 / 1000 / days * 365,
        voltage_by_hour=by_hour / (12 * days),
        share_100_inside=counts[0] / (counts[3] * single.sum()),
        share_100_above=counts[1] / (counts[3] * single.sum()),
        share_200_inside=counts[2] / (counts[3] * three.sum()),
    )


def household_mean_kwh(year: Year, *types: CustomerType) -> F64:
    mask = np.isin(year.population.customer_type, [int(t) for t in types])
    return np.asarray(year.monthly_kwh[:, mask].sum(axis=0) / 12)


def test_household_monthly_consumption_matches_japanese_surveys(year: Year) -> None:
    # SPEC Facts: 248 kWh/month (report) … about 348 (2021 survey)
    monthly = household_mean_kwh(
        year, CustomerType.HOUSEHOLD_DETACHED, CustomerType.HOUSEHOLD_APARTMENT
    )
    assert 250 <= monthly.mean() <= 350
    assert 0.4 <= monthly.std() / monthly.mean() <= 0.7
    assert np.median(monthly) < monthly.mean()  # right-skewed, like real bills


def test_detached_houses_use_more_than_apartments(year: Year) -> None:
    detached = household_mean_kwh(year, CustomerType.HOUSEHOLD_DETACHED).mean()
    apartment = household_mean_kwh(year, CustomerType.HOUSEHOLD_APARTMENT).mean()
    assert detached > 1.2 * apartment


def test_consumption_grows_with_the_ampere_contract(year: Year) -> None:
    households = np.isin(year.population.customer_type, [1, 2])
    annual = year.monthly_kwh.sum(axis=0)
    contract = year.population.contract_a
    small = annual[households & (contract <= 30)].mean()
    large = annual[households & (contract >= 50)].mean()
    assert large > 1.4 * small


def test_households_peak_in_winter_and_summer(year: Year) -> None:
    households = np.isin(year.population.customer_type, [1, 2])
    by_month = year.monthly_kwh[:, households].mean(axis=1) / MONTH_DAYS
    january, may, august = by_month[0], by_month[4], by_month[7]
    assert january > 1.4 * may
    assert august > 1.15 * may


def test_low_voltage_power_load_factor(year: Year) -> None:
    motors = year.population.customer_type == CustomerType.LV_POWER
    mean_w = year.monthly_kwh[:, motors].sum(axis=0) / 8760 * 1000
    load_factor = mean_w / (year.population.contract_kw[motors] * 1000)
    assert 0.2 <= load_factor.mean() <= 0.35


def test_pv_share_of_detached_houses_is_about_eight_percent() -> None:
    population = make_population(40_000, 5)  # builds in well under a second
    detached = population.customer_type == CustomerType.HOUSEHOLD_DETACHED
    with_pv = population.pv_kw[detached] > 0
    assert with_pv.mean() == pytest.approx(0.08, abs=0.01)
    assert np.mean(population.pv_kw[detached][with_pv]) == pytest.approx(4.5, abs=0.3)


def test_pv_annual_yield_per_kw_is_japanese(year: Year) -> None:
    per_kw = year.pv_kwh / float(year.population.pv_kw.sum())
    assert 1000 <= per_kw <= 1300


def test_voltage_stays_within_the_legal_range(year: Year) -> None:
    # SPEC Facts: 101 ± 6 V on 100 V supply, 202 ± 20 V on 200 V supply
    assert year.share_100_inside >= 0.98
    assert year.share_200_inside >= 0.98
    assert 0 < year.share_100_above < 0.02


def test_voltage_sags_at_the_evening_peak(year: Year) -> None:
    night = year.voltage_by_hour[2:5].mean()
    evening = year.voltage_by_hour[18:21].mean()
    assert 0.2 < night - evening < 3.0


def test_over_voltage_appears_on_pv_heavy_feeders_at_a_sunny_spring_noon() -> None:
    population = make_population(6000, 8)
    load, volts = LoadModel(population, 21), VoltageModel(population, 21)
    topology = population.topology
    day = dt.date(2026, 4, 1)
    while load.weather.day(day).regime is not SkyRegime.CLEAR:
        day += dt.timedelta(days=1)
    single = np.isin(population.meter_class, [MeterClass.LV_1P2W, MeterClass.LV_1P3W])
    # PV-heavy feeders: the top quarter by rooftop PV capacity per low-voltage customer
    pv_per_customer_kw = np.bincount(
        topology.feeder, weights=population.pv_kw, minlength=topology.n_feeders
    ) / np.maximum(np.bincount(topology.feeder, weights=single, minlength=topology.n_feeders), 1)
    heavy_feeders = pv_per_customer_kw >= np.quantile(pv_per_customer_kw, 0.75)
    assert topology.feeder_pv_propensity[heavy_feeders].mean() > 1.0
    heavy = single & heavy_feeders[topology.feeder]
    light = single & ~heavy_feeders[topology.feeder]
    above = np.zeros(2)
    start = dt.datetime(day.year, day.month, day.day, 10, tzinfo=JST)
    for k in range(48):  # 10:00–14:00
        power = load.step(start + dt.timedelta(minutes=5 * k))
        over = volts.step(power.load_w - power.pv_w) > 1070
        above += np.count_nonzero(over & heavy), np.count_nonzero(over & light)
    heavy_share = above[0] / (48 * heavy.sum())
    light_share = above[1] / (48 * light.sum())
    assert heavy_share > 0.005
    assert heavy_share > 3 * light_share
