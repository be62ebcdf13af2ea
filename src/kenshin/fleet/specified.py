"""Specified sub-meters (特例計量器, SPEC S3): EV chargers and PV inverters behind smart meters.

A share of detached households get an EV charger with its own meter, and a share of the PV
households a PV inverter whose meter is a specified one. Each sub-meter keeps an 8-digit register
in its parent's register units; its 30-min values are register differences, like the smart
meters' (SPEC M5).

Consistency with the parent (docs/fleet-model.md, "Specified meters"):

- **EV charger.** Chargers sit in detached houses without PV. While a session is on (evenings
  or from 23:00 on the night tariff, 1–4 h, on 40 % of the days) the charger draws its rating
  (3 or 6 kW), and that draw is part of the house's load, so the parent's forward energy is the
  house's own load plus the charger's: ``main forward − charger ≥ 0`` holds in truth. (Carving
  the draw out of the existing load instead would leave the parent unchanged but cap a charger at
  the few hundred watts a house draws: about 0.5 kWh a day.)
- **PV inverter.** It counts the parent's PV output; the parent's reverse energy is the export
  (PV − self-consumption), so ``forward − reverse + PV`` is the house's own consumption.

Register counts are rounded per meter, so two meters can disagree by a count even when the energy
agrees. The sub-meter registers are therefore counted jointly with the parent's: in every 5-min
step a charger advances by at most what the parent's forward register advanced, and an inverter by
at least what the reverse register advanced (the rest carries to later steps, so totals stay
exact within a count or two). The counted values then obey the physical inequalities on every
slot, and a negative difference in the MDMS always means a fault, never rounding.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.core.customers import CustomerType
from kenshin.core.specified import SPECIFIED_SCHEMA, SpecifiedKind
from kenshin.core.timeslots import JST, US_PER_MINUTE, Resolution, from_epoch_us, to_epoch_us
from kenshin.fleet.meters import MODULUS
from kenshin.fleet.population import Population

TAG_SPECIFIED = 0x5350  # "SP": which households, ratings, habits, initial registers
TAG_SESSIONS = 0x5353  # per day: who plugs in, when, for how long
EV_RATINGS_W = (3000.0, 6000.0)  # 200 V 15 A and 30 A home chargers
EV_RATING_WEIGHTS = (0.7, 0.3)
PLUG_IN_PROBABILITY = 0.4  # about 1,400 kWh a year: 10,000 km at 0.14 kWh/km
NIGHT_TARIFF_SHARE = 0.6  # these start at 23:00; the others when the car comes home
DEVICE_ID_BASE = 9 * 10**13  # sub-meter addresses: area × 10**14 + 9 × 10**13 + n

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class SpecifiedRoster:
    meter_key: npt.NDArray[np.int32]
    parent_key: npt.NDArray[np.int32]
    kind: npt.NDArray[np.uint8]
    device_id: I64

    def __len__(self) -> int:
        return len(self.meter_key)

    def table(self) -> pa.Table:
        return pa.Table.from_arrays(
            [
                pa.array(self.meter_key),
                pa.array(self.parent_key),
                pa.array(self.kind),
                pa.array(self.device_id),
            ],
            schema=SPECIFIED_SCHEMA,
        )


def choose_specified(
    population: Population, ev_share: float, pv_share: float, seed: int
) -> SpecifiedRoster:
    """EV chargers on ``ev_share`` of detached households without PV, specified PV inverters on
    ``pv_share`` of the PV households; keys follow the smart meters', by parent then kind."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, TAG_SPECIFIED]))
    with_pv = np.flatnonzero(population.pv_kw > 0)
    detached = np.flatnonzero(
        (population.customer_type == CustomerType.HOUSEHOLD_DETACHED) & (population.pv_kw <= 0)
    )
    ev = detached[rng.random(len(detached)) < ev_share]
    pv = with_pv[rng.random(len(with_pv)) < pv_share]
    parents = np.concatenate([ev, pv]).astype(np.int32)
    kinds = np.concatenate(
        [np.full(len(ev), SpecifiedKind.EV_CHARGER), np.full(len(pv), SpecifiedKind.PV_INVERTER)]
    ).astype(np.uint8)
    order = np.lexsort((kinds, parents))
    m = len(parents)
    return SpecifiedRoster(
        meter_key=(len(population) + np.arange(m)).astype(np.int32),
        parent_key=parents[order],
        kind=kinds[order],
        device_id=int(population.area) * 10**14 + DEVICE_ID_BASE + np.arange(1, m + 1),
    )


class SpecifiedMeters:
    """Registers and 30-min values of the sub-meters, advanced with the fleet's 5-min steps."""

    def __init__(
        self, roster: SpecifiedRoster, mwh_per_count: I64, seed: int, start: dt.datetime
    ) -> None:
        self.roster = roster
        self.seed = seed
        m = len(roster)
        self.parent = roster.parent_key.astype(np.intp)
        self.ev = np.flatnonzero(roster.kind == SpecifiedKind.EV_CHARGER)
        self.pv = np.flatnonzero(roster.kind == SpecifiedKind.PV_INVERTER)
        self.mwh_per_count = np.asarray(mwh_per_count, dtype=np.int64)[self.parent]
        rng = np.random.default_rng(np.random.SeedSequence([seed, TAG_SPECIFIED, 1]))
        self.initial = rng.integers(0, MODULUS // 10, m)
        n_ev = len(self.ev)
        self.rating_w = np.asarray(EV_RATINGS_W)[
            rng.choice(len(EV_RATINGS_W), n_ev, p=np.asarray(EV_RATING_WEIGHTS))
        ]
        night = rng.random(n_ev) < NIGHT_TARIFF_SHARE
        evening = 17 * 60 + 30 + 15 * rng.integers(0, 15, n_ev)  # 17:30 … 21:00
        self.habit_min = np.where(night, 23 * 60, evening)
        self.counted = np.zeros(m, dtype=np.int64)  # counts since the start (never wraps)
        self._energy_mwh = np.zeros(m, dtype=np.int64)  # exact energy since the start
        self._at_slot = self.registers()
        self.last_values = np.zeros(m, dtype=np.int32)  # the slot that ended last
        self._sessions: dict[dt.date, tuple[I64, I64]] = {}
        self._ev_w = np.zeros(n_ev)
        self.now_us = to_epoch_us(start)

    def registers(self) -> I64:
        return np.asarray((self.initial + self.counted) % MODULUS, dtype=np.int64)

    def _day_sessions(self, day: dt.date) -> tuple[I64, I64]:
        """Charging sessions starting on ``day``: epoch µs of start and end (end = start: none)."""
        if day not in self._sessions:
            rng = np.random.default_rng(
                np.random.SeedSequence([self.seed, TAG_SESSIONS, day.toordinal()])
            )
            n = len(self.ev)
            plugged = rng.random(n) < PLUG_IN_PROBABILITY
            start_min = self.habit_min + 5 * rng.integers(-6, 7, n)  # ± 30 min
            minutes = 5 * rng.integers(12, 49, n) * plugged  # 1–4 h
            midnight = to_epoch_us(dt.datetime.combine(day, dt.time(), tzinfo=JST))
            start = midnight + start_min * US_PER_MINUTE
            self._sessions[day] = (start, start + minutes * US_PER_MINUTE)
            for old in [d for d in self._sessions if d < day - dt.timedelta(days=1)]:
                del self._sessions[old]
        return self._sessions[day]

    def _charging(self, step_start_us: int) -> npt.NDArray[np.bool_]:
        day = from_epoch_us(step_start_us).astimezone(JST).date()
        on = np.zeros(len(self.ev), dtype=bool)
        for d in (day - dt.timedelta(days=1), day):  # a late session runs past midnight
            start, end = self._day_sessions(d)
            on |= (start <= step_start_us) & (step_start_us < end)
        return on

    def add_charging(self, load_w: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The fleet's load [W] with the chargers' draw over the next step added to their
        houses' (call once per step, before :meth:`advance`)."""
        self._ev_w = np.where(self._charging(self.now_us), self.rating_w, 0.0)
        if not self._ev_w.any():
            return load_w
        out = load_w.copy()
        out[self.parent[self.ev]] += self._ev_w
        return out

    def advance(
        self,
        pv_w: npt.NDArray[np.float64],
        closed: npt.NDArray[np.bool_],
        parent_steps: I64,
        minutes: int,
    ) -> None:
        """One step: PV of the whole fleet [W], the switch state, and how far each parent's
        forward and reverse registers moved in the step (shape (2, m), counts)."""
        step_start = self.now_us
        p = self.parent
        mwh_per_w = minutes / 60.0 * 1000.0
        power = np.zeros(len(self.roster))
        power[self.ev] = np.where(closed[p[self.ev]], self._ev_w, 0.0)
        power[self.pv] = np.where(closed[p[self.pv]], pv_w[p[self.pv]], 0.0)
        self._energy_mwh += np.rint(power * mwh_per_w).astype(np.int64)
        due = self._energy_mwh // self.mwh_per_count - self.counted
        step = np.maximum(due, 0)
        # counted jointly with the parent (module doc): charger ≤ forward, inverter ≥ reverse
        step[self.ev] = np.minimum(step[self.ev], parent_steps[0, self.ev])
        step[self.pv] = np.maximum(step[self.pv], parent_steps[1, self.pv])
        self.counted += step
        self.now_us = step_start + minutes * US_PER_MINUTE
        if self.now_us % Resolution.MIN30.microseconds == 0:
            registers = self.registers()
            self.last_values = ((registers - self._at_slot) % MODULUS).astype(np.int32)
            self._at_slot = registers
