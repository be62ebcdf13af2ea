"""Customer load for the whole fleet, one step at a time (vectorized; no loop over meters).

Each meter follows a routine ("kind": commuter household, shop, office building, factory...) with
hourly shapes for weekdays, Saturdays and Sundays/holidays, shifted by a per-meter offset of up to
±1 h. Every step the mean power of meter *i* is

    P_i = [s_i · shape_g(t) + h_i · occ_g(t) · HDD_k(t) + c_i · occ_g(t) · CDD_k(t)] · (1 + x_i(t))
          + w_i · heat_pump_water_heater(t) + appliance events_i(t)

clipped to what the contract allows (``contract_a`` × 100 V, or 1.1 × ``contract_kw``), where *g*
is the meter's group (kind × shift), *x_i* an AR(1) noise and HDD/CDD the degrees below the
heating / above the cooling threshold of the kind. Per-day tables (group × 1440 minutes) are built
once per JST day, so a step costs a handful of array operations over the fleet. Targets and the
figures they reproduce are in docs/fleet-model.md (SPEC Facts: 248–348 kWh/month per household).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kenshin.core.customers import AMPERE_STEPS_A, CustomerType
from kenshin.core.ids import AREA_SITES, AreaSite
from kenshin.core.timeslots import JST
from kenshin.fleet.customers import HOUSEHOLD_AMPERE_WEIGHTS
from kenshin.fleet.population import Population
from kenshin.fleet.profiles import (
    ALL_ELECTRIC_HEATING_FACTOR,
    APPLIANCES,
    BUSINESS_COOLING_ABOVE_C,
    BUSINESS_HEATING_BELOW_C,
    COOLING_W_PER_C,
    EVENTS_PER_DAY,
    HEATING_W_PER_C,
    HOUSEHOLD_COOLING_ABOVE_C,
    HOUSEHOLD_HEATING_BELOW_C,
    HOUSEHOLD_KINDS,
    HOUSEHOLD_MEDIAN_W,
    HOUSEHOLD_OCCUPANCY,
    HOUSEHOLD_SPREAD_SIGMA,
    HOUSEHOLD_TYPE_FACTOR,
    HVAC_SHARE_PER_C,
    KIND_MIX,
    LOAD_FACTOR,
    NO_CONTRACT_LIMIT_W,
    NOISE_SIGMA,
    NOISE_TIME_MIN,
    POWER_FACTOR,
    REFERENCE_AREA,
    SHAPES,
    SHIFTS_MIN,
    DayType,
    HourlyShape,
    Kind,
    day_type,
)
from kenshin.fleet.pv import PvModel
from kenshin.fleet.weather import (
    JAPAN_SEA_SIDE,
    MINUTES_PER_DAY,
    DayWeather,
    WeatherModel,
    climatology_temp_c,
    diurnal_shape,
)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

TAG_LOAD_PARAMS = 0x10AD
TAG_LOAD_STEPS = 0x57E9
TAG_WEATHER = 0x3EA7


@dataclass(frozen=True, slots=True)
class StepPower:
    load_w: F64  # mean active power drawn by each customer over the step [W], >= 0
    pv_w: F64  # mean PV generation over the step [W], >= 0 (0 where no PV)
    reactive_var: F64  # mean lagging reactive power of the load over the step [var], >= 0
    temperature_c: float  # area air temperature during the step [°C]


def _minute_profile(hourly: HourlyShape) -> F64:
    """Hourly means → 1440 minute values by periodic linear interpolation between hour centres."""
    centres = np.arange(24) * 60.0 + 30.0
    minutes = np.arange(MINUTES_PER_DAY) + 0.5
    return np.asarray(np.interp(minutes, centres, np.asarray(hourly), period=1440.0))


def _kind_tables() -> tuple[F64, F64]:
    """Shapes (kinds, day types, 1440) normalized to weekday mean 1, and HVAC occupancy alike."""
    n_kinds = len(Kind)
    shapes = np.empty((n_kinds, len(DayType), MINUTES_PER_DAY))
    occupancy = np.empty_like(shapes)
    for kind in Kind:
        rows = np.array([_minute_profile(h) for h in SHAPES[kind]])
        shapes[kind] = rows / rows[DayType.WEEKDAY].mean()
        if kind in HOUSEHOLD_OCCUPANCY:
            weekday, weekend = HOUSEHOLD_OCCUPANCY[kind]
            occupancy[kind] = [_minute_profile(weekday)] + [_minute_profile(weekend)] * 2
        else:
            # businesses condition the air while working: activity above the weekday night level
            low, high = rows[DayType.WEEKDAY].min(), rows[DayType.WEEKDAY].max()
            occupancy[kind] = np.clip((rows - low) / (high - low), 0.0, 1.0)
    return shapes, occupancy


_SHAPE_TABLE, _OCCUPANCY_TABLE = _kind_tables()
_IS_HOUSEHOLD_KIND = np.isin(np.arange(len(Kind)), [int(k) for k in HOUSEHOLD_KINDS])
_HEATING_BELOW_C = np.where(_IS_HOUSEHOLD_KIND, HOUSEHOLD_HEATING_BELOW_C, BUSINESS_HEATING_BELOW_C)
_COOLING_ABOVE_C = np.where(_IS_HOUSEHOLD_KIND, HOUSEHOLD_COOLING_ABOVE_C, BUSINESS_COOLING_ABOVE_C)
_WEEK_WEIGHTS = np.array([5.0, 1.0, 1.0]) / 7.0


def effective_temp_c(temp_c: F64 | F32) -> F64:
    """Temperature HVAC responds to [°C]: buildings lag the air, so mix in the daily mean."""
    t = np.asarray(temp_c, dtype=np.float64)
    return np.asarray(0.6 * t + 0.4 * t.mean())


def reference_degree_means(site: AreaSite) -> tuple[F64, F64]:
    """Year means of occupancy × heating and × cooling degrees per kind in ``site``'s climate
    [°C], from its climatology with an average diurnal cycle (used to calibrate energy)."""
    doy = np.arange(365.0)[:, None]
    minutes = np.arange(0, MINUTES_PER_DAY, 30, dtype=np.float64) + 15.0
    t_eff = climatology_temp_c(site, doy) + 0.6 * 3.5 * diurnal_shape(minutes)[None, :]
    occupancy = (_OCCUPANCY_TABLE[:, :, 15::30] * _WEEK_WEIGHTS[None, :, None]).sum(axis=1)
    heat_deg = np.maximum(_HEATING_BELOW_C[:, None, None] - t_eff[None], 0.0)
    cool_deg = np.maximum(t_eff[None] - _COOLING_ABOVE_C[:, None, None], 0.0)
    heat = (occupancy[:, None, :] * heat_deg).mean(axis=(1, 2))
    cool = (occupancy[:, None, :] * cool_deg).mean(axis=(1, 2))
    return heat, cool


def water_heater_profile(day: dt.date) -> F32:
    """Heat-pump water heater (エコキュート) duty over the night [-] per minute: cheap night
    tariff 23:00–07:00, running longer in winter when inlet water is cold."""
    winter = 0.5 + 0.5 * np.cos(2 * np.pi * (day.timetuple().tm_yday - 20) / 365.0)
    hours = 3.5 + 2.5 * winter  # hours of running at full power
    minute = np.arange(MINUTES_PER_DAY)
    since_23 = np.mod(minute - 23 * 60, MINUTES_PER_DAY)
    return np.asarray(since_23 < hours * 60, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class _DayTables:
    day: dt.date
    weather: DayWeather
    base: F32  # (groups, 1440) shape × seasonal factor
    heat: F32  # (groups, 1440) occupancy × heating degrees [°C]
    cool: F32  # (groups, 1440) occupancy × cooling degrees [°C]
    activity: F32  # (groups, 1440) appliance activity (households; mean 1 over the day)
    water_heater: F32  # (1440,)


class LoadModel:
    """Loads, PV and reactive power of a population; per-meter parameters are drawn once."""

    def __init__(self, population: Population, seed: int) -> None:
        self.population = population
        self.n = n = len(population)
        self.site = AREA_SITES[population.area]
        self.weather = WeatherModel(
            self.site,
            int(np.random.SeedSequence([seed, TAG_WEATHER]).generate_state(1)[0]),
            population.area in JAPAN_SEA_SIDE,
        )
        self.pv = PvModel(population, seed)
        rng = np.random.default_rng(np.random.SeedSequence([seed, TAG_LOAD_PARAMS]))
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, TAG_LOAD_STEPS]))
        ctype = population.customer_type

        kind = np.zeros(n, dtype=np.int64)
        pf = np.ones(n)
        sigma = np.zeros(n)
        for t in CustomerType:
            idx = np.flatnonzero(ctype == t)
            if len(idx) == 0:
                continue
            kinds, weights = zip(*KIND_MIX[t], strict=True)
            kind[idx] = np.asarray(kinds)[rng.choice(len(kinds), len(idx), p=np.asarray(weights))]
            pf[idx] = rng.uniform(*POWER_FACTOR[t], len(idx))
            sigma[idx] = NOISE_SIGMA[t]
        household = np.isin(ctype, [int(t) for t in CustomerType if t.is_household])
        # households keep looser hours than businesses [min]
        shift_sd = np.where(household, 25.0, 12.0)
        shift = np.clip(np.rint(rng.normal(0.0, shift_sd) / 15.0) + 4, 0, len(SHIFTS_MIN) - 1)
        self.group = (kind * len(SHIFTS_MIN) + shift).astype(np.intp)
        self.n_groups = len(Kind) * len(SHIFTS_MIN)
        self.tan_phi = np.tan(np.arccos(pf)).astype(np.float32)
        self.noise_sigma = sigma.astype(np.float32)
        self._noise = (rng.standard_normal(n) * sigma).astype(np.float32)
        self._noise_scale_minutes = -1
        self._noise_phi = np.float32(0.0)
        self._noise_shock = np.zeros(n, dtype=np.float32)

        mean_w, heat_w, cool_w, water_w, limit_w, events, ordinary_heat_w = (
            self._household_parameters(rng, ctype, kind)
        )
        self._business_parameters(rng, ctype, kind, mean_w, heat_w, cool_w, limit_w)
        ordinary_heat_w = np.where(household, ordinary_heat_w, heat_w)
        # The routine's share of the mean is what remains after HVAC and appliances in the
        # reference climate; all-electric homes' water heater and extra heating come on top.
        heat_ref, cool_ref = reference_degree_means(AREA_SITES[REFERENCE_AREA])
        event_w = events * _mean_event_energy_wh() / 24.0
        rest = mean_w - ordinary_heat_w * heat_ref[kind] - cool_w * cool_ref[kind] - event_w
        shape_mean = (_SHAPE_TABLE.mean(axis=2) @ _WEEK_WEIGHTS)[kind]
        self.scale_w = (np.maximum(rest, 0.3 * mean_w) / shape_mean).astype(np.float32)
        self.heat_w_per_c = heat_w.astype(np.float32)
        self.cool_w_per_c = cool_w.astype(np.float32)
        self.water_heater_w = water_w.astype(np.float32)
        self.limit_w = limit_w.astype(np.float32)

        self.hh_index = np.flatnonzero(household)
        self.hh_rate_per_min = (events[self.hh_index] / MINUTES_PER_DAY).astype(np.float32)
        self.hh_group = self.group[self.hh_index]
        self._rate_cap = float(self.hh_rate_per_min.max()) if len(self.hh_index) else 0.0
        self._ev_meter = np.empty(0, dtype=np.intp)
        self._ev_power_w = np.empty(0, dtype=np.float32)
        self._ev_left_min = np.empty(0, dtype=np.float32)
        self._tables: _DayTables | None = None

    # --- parameters ------------------------------------------------------------------------

    def _household_parameters(
        self, rng: np.random.Generator, ctype: npt.NDArray[np.uint8], kind: npt.NDArray[np.int64]
    ) -> tuple[F64, F64, F64, F64, F64, F64, F64]:
        """Households: target mean [W], heating and cooling [W/°C], water heater [W], limit [W],
        appliance events per day, and the heating of a gas-heated twin [W/°C]."""
        n = self.n
        mean_w, heat_w, cool_w, water_w = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        limit_w = np.full(n, np.inf)
        events, ordinary_heat_w = np.zeros(n), np.zeros(n)
        idx = np.flatnonzero(np.isin(ctype, [int(t) for t in HOUSEHOLD_TYPE_FACTOR]))
        m = len(idx)
        if m == 0:
            return mean_w, heat_w, cool_w, water_w, limit_w, events, ordinary_heat_w
        contract_a = self.population.contract_a[idx].astype(np.float64)
        # minimum-charge areas have no breaker: size the household as if it had one
        weights = np.asarray(HOUSEHOLD_AMPERE_WEIGHTS)
        guessed = np.asarray(AMPERE_STEPS_A, dtype=np.float64)[
            rng.choice(len(weights), m, p=weights / weights.sum())
        ]
        amperes = np.where(contract_a > 0, contract_a, guessed)
        size = (amperes / 40.0) ** 0.6
        detached = ctype[idx] == CustomerType.HOUSEHOLD_DETACHED
        type_factor = np.where(
            detached,
            HOUSEHOLD_TYPE_FACTOR[CustomerType.HOUSEHOLD_DETACHED],
            HOUSEHOLD_TYPE_FACTOR[CustomerType.HOUSEHOLD_APARTMENT],
        )
        s = HOUSEHOLD_SPREAD_SIGMA
        mean_w[idx] = HOUSEHOLD_MEDIAN_W * size * type_factor * rng.lognormal(0.0, s, m)
        # all-electric homes (オール電化): big contracts, heat pump water heater, electric heating
        p_all_electric = np.where(
            detached, np.select([amperes >= 60, amperes >= 50], [0.6, 0.2], 0.05), 0.03
        )
        all_electric = rng.random(m) < p_all_electric
        ordinary_heat_w[idx] = HEATING_W_PER_C * size * rng.lognormal(0.0, 0.5, m)
        heat_w[idx] = ordinary_heat_w[idx] * np.where(all_electric, ALL_ELECTRIC_HEATING_FACTOR, 1)
        cool_w[idx] = COOLING_W_PER_C * size * type_factor * rng.lognormal(0.0, 0.5, m)
        water_w[idx] = np.where(all_electric, rng.uniform(900.0, 1400.0, m), 0.0)
        limit_w[idx] = np.where(contract_a > 0, contract_a * 100.0, NO_CONTRACT_LIMIT_W)
        events[idx] = EVENTS_PER_DAY * np.sqrt(size) * rng.lognormal(0.0, 0.3, m)
        return mean_w, heat_w, cool_w, water_w, limit_w, events, ordinary_heat_w

    def _business_parameters(
        self,
        rng: np.random.Generator,
        ctype: npt.NDArray[np.uint8],
        kind: npt.NDArray[np.int64],
        mean_w: F64,
        heat_w: F64,
        cool_w: F64,
        limit_w: F64,
    ) -> None:
        pop = self.population
        for k, (low, high) in LOAD_FACTOR.items():
            idx = np.flatnonzero(
                (kind == k) & ~np.isin(ctype, [int(t) for t in HOUSEHOLD_TYPE_FACTOR])
            )
            if len(idx) == 0:
                continue
            contract_a = pop.contract_a[idx].astype(np.float64)
            contract_w = np.where(
                contract_a > 0, contract_a * 100.0, pop.contract_kw[idx].astype(np.float64) * 1e3
            )
            mean_w[idx] = contract_w * rng.uniform(low, high, len(idx))
            heating, cooling = HVAC_SHARE_PER_C[k]
            heat_w[idx] = mean_w[idx] * heating * rng.lognormal(0.0, 0.3, len(idx))
            cool_w[idx] = mean_w[idx] * cooling * rng.lognormal(0.0, 0.3, len(idx))
            # ampere breakers trip at the contract; demand contracts allow a little over
            limit_w[idx] = np.where(contract_a > 0, contract_w, contract_w * 1.1)

    # --- per day ---------------------------------------------------------------------------

    def _day_tables(self, day: dt.date) -> _DayTables:
        if self._tables is not None and self._tables.day == day:
            return self._tables
        weather = self.weather.day(day)
        dtype = day_type(day)
        shapes = _SHAPE_TABLE[:, dtype, :]
        occupancy = _OCCUPANCY_TABLE[:, dtype, :]
        # households light and heat water more in the dark half of the year
        winter = np.cos(2 * np.pi * (day.timetuple().tm_yday - 355) / 365.0)
        seasonal = np.where(_IS_HOUSEHOLD_KIND, 1.0 + 0.08 * winter, 1.0)[:, None]
        t_eff = effective_temp_c(weather.temp_c)
        heat_deg = np.maximum(_HEATING_BELOW_C[:, None] - t_eff[None, :], 0.0)
        cool_deg = np.maximum(t_eff[None, :] - _COOLING_ABOVE_C[:, None], 0.0)
        activity = np.where(
            _IS_HOUSEHOLD_KIND[:, None], shapes / shapes.mean(axis=1, keepdims=True), 0.0
        )

        def by_group(kind_table: F64) -> F32:
            # one row per (kind, shift): the routine moved by the shift, the weather not
            rolled = [np.roll(kind_table, int(s), axis=1) for s in SHIFTS_MIN]
            return (
                np.stack(rolled, axis=1).reshape(self.n_groups, MINUTES_PER_DAY).astype(np.float32)
            )

        occupancy_g = by_group(occupancy)
        repeat = len(SHIFTS_MIN)
        tables = _DayTables(
            day=day,
            weather=weather,
            base=by_group(shapes * seasonal),
            heat=occupancy_g * np.repeat(heat_deg, repeat, axis=0).astype(np.float32),
            cool=occupancy_g * np.repeat(cool_deg, repeat, axis=0).astype(np.float32),
            activity=by_group(activity),
            water_heater=water_heater_profile(day),
        )
        self._tables = tables
        return tables

    # --- per step --------------------------------------------------------------------------

    def step(self, start: dt.datetime, minutes: int = 5) -> StepPower:
        """Mean powers over [start, start + minutes). Called with consecutive steps (start
        advancing by `minutes` each call); `start` is timezone-aware (JST) and aligned to the
        step."""
        if start.tzinfo is None:
            raise ValueError(f"step start {start.isoformat()} has no time zone")
        local = start.astimezone(JST)
        minute = local.hour * 60 + local.minute
        if minutes < 1 or minute + minutes > MINUTES_PER_DAY:
            raise ValueError(f"a step of {minutes} min from {local:%H:%M} crosses midnight")
        tables = self._day_tables(local.date())
        window = slice(minute, minute + minutes)
        temp_c = float(tables.weather.temp_c[window].mean())

        load = np.take(tables.base[:, window].mean(axis=1), self.group)
        load *= self.scale_w
        for table, per_c in ((tables.heat, self.heat_w_per_c), (tables.cool, self.cool_w_per_c)):
            column = table[:, window].mean(axis=1)
            if column.any():
                load += per_c * np.take(column, self.group)
        load *= self._advance_noise(minutes)
        water = float(tables.water_heater[window].mean())
        if water > 0.0:
            load += self.water_heater_w * np.float32(water)
        self._add_appliances(load, tables.activity[:, window].mean(axis=1), minutes)
        np.minimum(load, self.limit_w, out=load)

        pv_w = self.pv.step_w(self.site, tables.weather, minute, minutes, temp_c)
        return StepPower(
            load_w=load.astype(np.float64),
            pv_w=pv_w,
            reactive_var=(load * self.tan_phi).astype(np.float64),
            temperature_c=temp_c,
        )

    def _advance_noise(self, minutes: int) -> F32:
        """AR(1) multiplier 1 + x [-]; uniform shocks are cheaper than normal ones and the
        sum of many of them is near-normal anyway."""
        if minutes != self._noise_scale_minutes:
            phi = np.exp(-minutes / NOISE_TIME_MIN)
            self._noise_phi = np.float32(phi)
            # a uniform on [-0.5, 0.5) has variance 1/12
            self._noise_shock = (self.noise_sigma * np.sqrt(12.0 * (1.0 - phi**2))).astype(
                np.float32
            )
            self._noise_scale_minutes = minutes
        shock = self._rng.random(self.n, dtype=np.float32)
        shock -= np.float32(0.5)
        shock *= self._noise_shock
        self._noise *= self._noise_phi
        self._noise += shock
        multiplier = self._noise + np.float32(1.0)
        np.maximum(multiplier, np.float32(0.2), out=multiplier)
        return multiplier

    def _add_appliances(self, load: F32, activity: F32, minutes: int) -> None:
        """Short bursts (kettles, microwaves, IH cookers, dryers) drawn by thinning: candidate
        households uniformly at the highest rate, kept with probability rate / highest rate."""
        rng = self._rng
        # events carried over from earlier steps
        take = np.minimum(self._ev_left_min, np.float32(minutes))
        meters, power, used = self._ev_meter, self._ev_power_w, take
        left = self._ev_left_min - take
        n_hh = len(self.hh_index)
        peak = float(activity.max()) if n_hh else 0.0
        if peak > 0.0:
            cap = self._rate_cap * peak
            n_candidates = int(rng.poisson(n_hh * cap * minutes))
            candidate = rng.integers(0, n_hh, n_candidates)
            rate = self.hh_rate_per_min[candidate] * activity[self.hh_group[candidate]]
            chosen = candidate[rng.random(n_candidates, dtype=np.float32) * cap < rate]
            k = len(chosen)
            kinds = rng.choice(len(APPLIANCES), k, p=APPLIANCES[:, 4])
            spec = APPLIANCES[kinds]
            new_power = rng.uniform(spec[:, 0], spec[:, 1]).astype(np.float32)
            duration = rng.uniform(spec[:, 2], spec[:, 3]).astype(np.float32)
            offset = rng.integers(0, minutes, k).astype(np.float32)
            new_take = np.minimum(duration, minutes - offset)
            meters = np.concatenate([meters, self.hh_index[chosen]])
            power = np.concatenate([power, new_power])
            used = np.concatenate([used, new_take])
            left = np.concatenate([left, duration - new_take])
        if len(meters):
            np.add.at(load, meters, power * used / np.float32(minutes))
        keep = left > 0
        self._ev_meter, self._ev_power_w, self._ev_left_min = meters[keep], power[keep], left[keep]


def _mean_event_energy_wh() -> float:
    """Mean energy of one appliance burst [Wh]."""
    mean_power_w = APPLIANCES[:, :2].mean(axis=1)
    mean_minutes = APPLIANCES[:, 2:4].mean(axis=1)
    return float((APPLIANCES[:, 4] * mean_power_w * mean_minutes).sum() / 60.0)
