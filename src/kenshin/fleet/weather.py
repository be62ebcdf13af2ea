"""Area weather for the simulated fleet: air temperature and a clear-sky index, minute by minute.

Everything random about a day is drawn from ``(seed, date)`` (the temperature anomaly from
``(seed, year)``), so a day looks the same whichever step a simulation started at.

- Temperature [°C]: the area's climatology from :data:`~kenshin.core.ids.AREA_SITES` (annual
  sinusoid peaking early August), a diurnal cycle peaking at 14:00 whose range depends on the sky,
  and a day-to-day anomaly that follows an AR(1) process over the year.
- Clear-sky index [-] (measured / clear-sky irradiance): each day has a sky regime (clear, partly
  cloudy, overcast, rain) drawn with monthly probabilities for the Pacific or the Sea of Japan side;
  within the day a slow drift plus, on broken-cloud days, minute-scale sun/cloud switching.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from kenshin.core.ids import Area, AreaSite

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

MINUTES_PER_DAY = 1440
# The clear-sky index of a day runs this many minutes past midnight so each feeder can look it up
# with its own lag (clouds reach feeders at different times).
SKY_PAD_MIN = 60

TAG_TEMPERATURE = 0x7E3A
TAG_SKY = 0x5C1E

PEAK_DAY_OF_YEAR = 216.0  # about 4 August: warmest day of a Japanese year
DAYS_PER_YEAR = 365.2425
DIURNAL_MIN_MINUTE = 5 * 60  # coldest around sunrise
DIURNAL_PEAK_MINUTE = 14 * 60  # warmest around 14:00
ANOMALY_SD_C = 2.2  # day-to-day anomaly of the daily mean [°C]
ANOMALY_PHI = 0.75  # day-to-day persistence of the anomaly
_ANOMALY_BURN_IN_DAYS = 40

# Areas on the Sea of Japan side: grey, snowy winters.
JAPAN_SEA_SIDE = frozenset({Area.HOKKAIDO, Area.TOHOKU, Area.HOKURIKU})


class SkyRegime(IntEnum):
    CLEAR = 0
    PARTLY_CLOUDY = 1
    OVERCAST = 2
    RAIN = 3


# P(regime) by month (rows Jan..Dec; columns clear, partly, overcast, rain). Pacific side: dry,
# sunny winters, the rainy season (梅雨) in June–July, typhoons and showers in September.
_PACIFIC = np.array(
    [
        [0.55, 0.25, 0.12, 0.08],
        [0.50, 0.25, 0.13, 0.12],
        [0.38, 0.28, 0.18, 0.16],
        [0.36, 0.30, 0.18, 0.16],
        [0.38, 0.30, 0.17, 0.15],
        [0.18, 0.30, 0.28, 0.24],
        [0.24, 0.32, 0.24, 0.20],
        [0.38, 0.34, 0.16, 0.12],
        [0.26, 0.32, 0.22, 0.20],
        [0.34, 0.30, 0.20, 0.16],
        [0.44, 0.28, 0.16, 0.12],
        [0.52, 0.26, 0.13, 0.09],
    ]
)
_JAPAN_SEA = _PACIFIC.copy()
_JAPAN_SEA[[0, 1, 11]] = [
    [0.10, 0.25, 0.35, 0.30],
    [0.15, 0.27, 0.30, 0.28],
    [0.10, 0.25, 0.35, 0.30],
]
_JAPAN_SEA[[2, 10]] = [[0.28, 0.30, 0.22, 0.20], [0.25, 0.30, 0.25, 0.20]]

# Diurnal half-range [°C] and shift of the daily mean [°C] by regime: clear days swing most.
_DIURNAL_HALF_RANGE_C = np.array([4.8, 3.8, 2.2, 1.3])
_REGIME_MEAN_OFFSET_C = np.array([0.4, 0.2, -0.4, -1.0])


@dataclass(frozen=True, slots=True)
class DayWeather:
    """One JST day of area weather at 1-minute resolution (index 0 = 00:00–00:01)."""

    day: dt.date
    regime: SkyRegime
    temp_c: F32  # air temperature, 1440 minute means [°C]
    clear_sky_index: F32  # 1440 + SKY_PAD_MIN minute means [-], 0 … ~1.1

    @property
    def mean_temp_c(self) -> float:
        return float(self.temp_c.mean())


def climatology_temp_c(site: AreaSite, day_of_year: float | F64) -> F64:
    """Long-term mean daily temperature for a (fractional) day of the year [°C]."""
    phase = 2.0 * np.pi * (np.asarray(day_of_year, dtype=np.float64) - PEAK_DAY_OF_YEAR)
    return np.asarray(site.mean_temp_c + site.temp_amplitude_c * np.cos(phase / DAYS_PER_YEAR))


def diurnal_shape(minute_of_day: F64) -> F64:
    """Diurnal temperature shape in [-1, 1]: -1 at 05:00, +1 at 14:00, half-cosines between."""
    m = np.mod(minute_of_day - DIURNAL_MIN_MINUTE, MINUTES_PER_DAY)
    rise = DIURNAL_PEAK_MINUTE - DIURNAL_MIN_MINUTE
    warming = -np.cos(np.pi * m / rise)
    cooling = np.cos(np.pi * (m - rise) / (MINUTES_PER_DAY - rise))
    return np.asarray(np.where(m < rise, warming, cooling))


def regime_probabilities(month: int, japan_sea_side: bool) -> F64:
    table = _JAPAN_SEA if japan_sea_side else _PACIFIC
    return np.asarray(table[month - 1])


class WeatherModel:
    """Deterministic weather of one area; :meth:`day` is cached for the last few days asked."""

    def __init__(self, site: AreaSite, seed: int, japan_sea_side: bool = False) -> None:
        self.site = site
        self.seed = seed
        self.japan_sea_side = japan_sea_side
        self._anomaly_by_year: dict[int, F64] = {}
        self._days: dict[dt.date, DayWeather] = {}

    def anomaly_c(self, day: dt.date) -> float:
        """Anomaly of the daily mean temperature [°C]: AR(1) over the year from (seed, year)."""
        year = day.year
        series = self._anomaly_by_year.get(year)
        if series is None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, TAG_TEMPERATURE, year]))
            n = _ANOMALY_BURN_IN_DAYS + 367
            shocks = rng.standard_normal(n) * ANOMALY_SD_C * np.sqrt(1.0 - ANOMALY_PHI**2)
            values = np.empty(n)
            values[0] = rng.standard_normal() * ANOMALY_SD_C
            for i in range(1, n):  # 400 scalar steps once per simulated year
                values[i] = ANOMALY_PHI * values[i - 1] + shocks[i]
            series = values[_ANOMALY_BURN_IN_DAYS:]
            self._anomaly_by_year[year] = series
        return float(series[day.timetuple().tm_yday - 1])

    def day(self, day: dt.date) -> DayWeather:
        cached = self._days.get(day)
        if cached is not None:
            return cached
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, TAG_SKY, day.toordinal()]))
        probabilities = regime_probabilities(day.month, self.japan_sea_side)
        regime = SkyRegime(int(rng.choice(len(SkyRegime), p=probabilities)))
        sky = _clear_sky_index(regime, rng)
        temp = self._temperature(day, regime)
        weather = DayWeather(day=day, regime=regime, temp_c=temp, clear_sky_index=sky)
        if len(self._days) >= 4:
            self._days.pop(next(iter(self._days)))
        self._days[day] = weather
        return weather

    def _temperature(self, day: dt.date, regime: SkyRegime) -> F32:
        minutes = np.arange(MINUTES_PER_DAY, dtype=np.float64) + 0.5
        frac = minutes / MINUTES_PER_DAY
        doy = day.timetuple().tm_yday - 1 + frac
        # anomaly drifts linearly to the next day's so midnight has no jump
        today = self.anomaly_c(day)
        tomorrow = self.anomaly_c(day + dt.timedelta(days=1))
        anomaly = today + (tomorrow - today) * frac
        temp = (
            climatology_temp_c(self.site, doy)
            + anomaly
            + _REGIME_MEAN_OFFSET_C[regime]
            + _DIURNAL_HALF_RANGE_C[regime] * diurnal_shape(minutes)
        )
        return np.asarray(temp, dtype=np.float32)


def _clear_sky_index(regime: SkyRegime, rng: np.random.Generator) -> F32:
    n = MINUTES_PER_DAY + SKY_PAD_MIN
    minutes = np.arange(n, dtype=np.float64)
    # slow drift: random knots every 45 min, linearly interpolated
    knots_x = np.arange(0, n + 45, 45, dtype=np.float64)
    knots = rng.standard_normal(len(knots_x))
    slow = np.interp(minutes, knots_x, knots)
    if regime in (SkyRegime.OVERCAST, SkyRegime.RAIN):
        level = rng.uniform(0.2, 0.42) if regime is SkyRegime.OVERCAST else rng.uniform(0.06, 0.18)
        kt = level * (1.0 + 0.35 * slow)
        return np.clip(kt, 0.03, 0.8).astype(np.float32)
    if regime is SkyRegime.CLEAR:
        cloud_share, sun_mean_min, cloud_kt = 0.04, 90.0, rng.uniform(0.5, 0.8)
    else:
        cloud_share, sun_mean_min, cloud_kt = rng.uniform(0.3, 0.7), 10.0, rng.uniform(0.2, 0.5)
    cloud_mean_min = sun_mean_min * cloud_share / (1.0 - cloud_share)
    # alternating sun/cloud spells with exponential lengths (a two-state renewal process)
    n_spells = int(2 * n / min(sun_mean_min, cloud_mean_min)) + 20
    lengths = rng.exponential(1.0, n_spells)
    lengths[0::2] *= sun_mean_min
    lengths[1::2] *= cloud_mean_min
    first_cloudy = int(rng.random() < cloud_share)
    ends = np.cumsum(lengths)
    spell = np.searchsorted(ends, minutes, side="right")
    cloudy = (spell + first_cloudy) % 2 == 1
    sun_kt = 0.99 + 0.02 * slow
    kt = np.where(cloudy, cloud_kt * (1.0 + 0.25 * slow), sun_kt)
    # cloud-edge enhancement: the minute after a cloud passes is brighter than clear sky
    edge = np.zeros(n, dtype=bool)
    edge[1:] = cloudy[:-1] & ~cloudy[1:]
    kt = np.where(edge, kt * 1.08, kt)
    return np.clip(kt, 0.03, 1.15).astype(np.float32)
