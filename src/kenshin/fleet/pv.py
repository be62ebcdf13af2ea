"""Rooftop PV output from pvlib clear-sky irradiance and the area's clear-sky index.

Once per day and area, pvlib gives the clear-sky irradiance (Ineichen model with a monthly Linke
turbidity for Japan's hazy, humid summers) on a 30° roof facing south-east, south and south-west,
minute by minute. Each step, per feeder (clouds reach feeders at different times, see
:data:`~kenshin.fleet.weather.SKY_PAD_MIN`):

    irradiance = kt · (a · POA_clear + (1 − a) · GHI_clear)       a = clip((kt − 0.3) / 0.6, 0, 1)

so under thick cloud the light is diffuse and a tilted roof no longer gains over a flat one. Each
PV meter turns that into AC power with its capacity, a per-meter performance ratio and the cell
temperature loss (−0.4 %/°C), clipped at the power conditioner's rating.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pvlib

from kenshin.core.ids import AreaSite
from kenshin.core.timeslots import JST
from kenshin.fleet.population import Population
from kenshin.fleet.weather import MINUTES_PER_DAY, SKY_PAD_MIN, DayWeather

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

TAG_PV = 0x9F17
TILT_DEG = 30.0
AZIMUTHS_DEG = (135.0, 180.0, 225.0)  # SE, S, SW roofs
AZIMUTH_WEIGHTS = (0.25, 0.5, 0.25)
# Linke turbidity by month for Japanese lowlands: clean winter air, hazy humid summers.
LINKE_TURBIDITY = (2.8, 3.0, 3.4, 3.7, 3.9, 4.2, 4.5, 4.4, 4.0, 3.5, 3.1, 2.8)
PERFORMANCE_RATIO = 0.84  # inverter, wiring, soiling, mismatch; the temperature loss comes on top
TEMP_COEFFICIENT_PER_C = -0.004  # crystalline silicon power vs cell temperature [1/°C]
CELL_HEATING_C_PER_W_M2 = 0.03  # roof-mounted cell rise over air [°C per W/m²]
STC_IRRADIANCE_W_M2 = 1000.0


@dataclass(frozen=True, slots=True)
class ClearSkyDay:
    """Clear-sky irradiance of one day at 1-minute resolution (minute means)."""

    day: dt.date
    ghi_w_m2: F32  # global horizontal (1440) [W/m²]
    poa_w_m2: F32  # plane of array for each of AZIMUTHS_DEG (3, 1440) [W/m²]


def clear_sky_day(site: AreaSite, day: dt.date) -> ClearSkyDay:
    """pvlib clear-sky GHI and 30°-tilt POA irradiance at the middle of every minute of ``day``."""
    start = pd.Timestamp(dt.datetime(day.year, day.month, day.day, tzinfo=JST))
    times = pd.date_range(start + pd.Timedelta(seconds=30), periods=MINUTES_PER_DAY, freq="1min")
    position = pvlib.solarposition.get_solarposition(times, site.latitude, site.longitude)
    zenith = position["apparent_zenith"].to_numpy()
    azimuth = position["azimuth"].to_numpy()
    ghi = np.zeros(MINUTES_PER_DAY, dtype=np.float32)
    poa = np.zeros((len(AZIMUTHS_DEG), MINUTES_PER_DAY), dtype=np.float32)
    up = zenith < 90.0  # pvlib's formulas divide by zero at night; night stays 0
    if up.any():
        z, a = zenith[up], azimuth[up]
        airmass = pvlib.atmosphere.get_absolute_airmass(pvlib.atmosphere.get_relative_airmass(z))
        dni_extra = pvlib.irradiance.get_extra_radiation(day.timetuple().tm_yday)
        clear = pvlib.clearsky.ineichen(
            z, airmass, LINKE_TURBIDITY[day.month - 1], altitude=0.0, dni_extra=dni_extra
        )
        ghi[up] = clear["ghi"]
        for k, surface_azimuth in enumerate(AZIMUTHS_DEG):
            total = pvlib.irradiance.get_total_irradiance(
                TILT_DEG, surface_azimuth, z, a, clear["dni"], clear["ghi"], clear["dhi"]
            )
            poa[k, up] = np.maximum(np.nan_to_num(total["poa_global"]), 0.0)
    return ClearSkyDay(day=day, ghi_w_m2=ghi, poa_w_m2=poa)


def plane_irradiance_w_m2(poa_clear: F32, ghi_clear: F32, kt: F32) -> F32:
    """Irradiance on the roof under clear-sky index ``kt`` [W/m²] (broadcasting arrays)."""
    direct_share = np.clip((kt - 0.3) / 0.6, 0.0, 1.0)
    return np.asarray(kt * (direct_share * poa_clear + (1.0 - direct_share) * ghi_clear))


def temperature_factor(irradiance_w_m2: F32, air_temp_c: float) -> F32:
    """Power relative to 25 °C cells [-]."""
    cell_c = air_temp_c + CELL_HEATING_C_PER_W_M2 * irradiance_w_m2
    return np.asarray(1.0 + TEMP_COEFFICIENT_PER_C * (cell_c - 25.0))


class PvModel:
    """Per-meter PV parameters, fixed at construction; :meth:`step_w` is vectorized."""

    def __init__(self, population: Population, seed: int) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([seed, TAG_PV]))
        self.n = len(population)
        pv_kw = np.asarray(population.pv_kw, dtype=np.float32)
        self.index = np.flatnonzero(pv_kw > 0)
        n_pv = len(self.index)
        n_feeders = population.topology.n_feeders
        self.n_feeders = n_feeders
        self.rated_w = pv_kw[self.index] * np.float32(1000.0)
        # shading, soiling and orientation quality differ from roof to roof
        self.ratio = (PERFORMANCE_RATIO * np.clip(rng.normal(1.0, 0.05, n_pv), 0.8, 1.1)).astype(
            np.float32
        )
        orientation = rng.choice(len(AZIMUTHS_DEG), size=n_pv, p=np.asarray(AZIMUTH_WEIGHTS))
        feeder = population.topology.feeder[self.index].astype(np.int64)
        self.flat_index = orientation * n_feeders + feeder
        self.feeder_lag_min = rng.integers(0, SKY_PAD_MIN, n_feeders)
        self._clear: ClearSkyDay | None = None

    def clear_sky(self, site: AreaSite, day: dt.date) -> ClearSkyDay:
        if self._clear is None or self._clear.day != day:
            self._clear = clear_sky_day(site, day)
        return self._clear

    def step_w(
        self, site: AreaSite, weather: DayWeather, minute: int, minutes: int, temp_c: float
    ) -> F64:
        """Mean AC output of every meter over ``minutes`` from ``minute`` of the day [W]."""
        out = np.zeros(self.n, dtype=np.float64)
        if len(self.index) == 0:
            return out
        clear = self.clear_sky(site, weather.day)
        window = slice(minute, minute + minutes)
        poa = clear.poa_w_m2[:, window]
        if not poa.any():
            return out  # night
        lagged = minute + self.feeder_lag_min[:, None] + np.arange(minutes)
        kt = weather.clear_sky_index[lagged]  # (feeders, minutes)
        irradiance = plane_irradiance_w_m2(poa[:, None, :], clear.ghi_w_m2[window], kt)
        per_minute = irradiance * temperature_factor(irradiance, temp_c)
        effective = per_minute.mean(axis=2).ravel()  # (azimuths × feeders)
        power = self.rated_w * self.ratio * effective[self.flat_index] / STC_IRRADIANCE_W_M2
        out[self.index] = np.minimum(power, self.rated_w)  # power conditioner limit
        return out
