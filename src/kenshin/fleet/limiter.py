"""The meter's current limiter and how households live with it (issue 16 item 1; SPEC M6, R3).

Each 5-minute step, for every meter with a switch (single-phase LV; HV has none, M2/R5):

- the **cap** is the ampere limit × 100 V (0 A: no limit, the minimum-charge areas);
- the household's **peak** import in the step is its mean import × a peak factor drawn per meter
  and step (lognormal, median ``PEAK_MEDIAN``: a kettle or a microwave on top of the rest);
- a household **not used to** the cap trips once when its peak goes over it; after the re-close
  it sheds (puts off the dryer, the second heater) and keeps its mean under ``cap / SAFE_MARGIN``
  — but never under its **essential** load (fridge, lights, standby, some cooking, at least
  ``ESSENTIAL_MIN_W``);
- a household used to the cap that still wants more than ``cap / SAFE_MARGIN`` trips again with
  ``RETRY_TRIP`` per step (an appliance tried again);
- a household whose essential load alone (``ESSENTIAL_SHARE`` of its usual demand, a moving
  average over ``USUAL_HOURS``, with the compressors' peak) is over the cap cannot adapt: it
  trips again each time the switch re-closes, until the lockout;
- **lockout** after the area's count of trips within its window: nothing flows until a reset;
- what was shed comes back later in part (``DEFERRED_SHARE``: laundry, a dishwasher, water
  heating) once the household is no longer held back, at most ``REBOUND_MAX`` of its demand a
  step: a campaign's end has a rebound.

Area settings (re-close delay, lockout count and window) are per utility: ``AREA_LIMITER``, from
the utilities' customer pages (docs/control.md). While the switch is open the meter counts
nothing; trips, re-closes and lockouts are reported as A-route events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kenshin.core.events import EventCode
from kenshin.core.household_response import (
    DEFERRED_SHARE,
    ESSENTIAL_MIN_W,
    ESSENTIAL_PEAK,
    REBOUND_MAX,
    SAFE_MARGIN,
    USUAL_HOURS,
    VOLTS,
    essential_load,
    kept_load,
)
from kenshin.core.ids import Area
from kenshin.core.switch import SwitchState, Trigger, apply

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

STEP_S = 300
PEAK_MEDIAN = 1.5  # a step's peak import / its mean (assumption: docs/control.md)
PEAK_SIGMA = 0.25
RETRY_TRIP = 0.1  # per step, for a household held back by its cap
NEVER = -(2**62)


@dataclass(frozen=True, slots=True)
class LimiterSettings:
    reclose_s: int  # the switch re-closes this long after a trip
    lockout_trips: int  # … unless this many trips came within the window
    lockout_window_s: int
    min_over_s: int = 2  # over the limit this long before it trips (assumption)


AREA_LIMITER: dict[Area, LimiterSettings] = {
    Area.HOKKAIDO: LimiterSettings(15, 8, 600),  # ~15 s; 8 on/off cycles "in a short time"
    Area.TOHOKU: LimiterSettings(10, 10, 1800),  # ~10 s; 10 trips in 30 min
    Area.HOKURIKU: LimiterSettings(60, 4, 600),  # ~1 min; 3–4 trips in 10 min
    Area.CHUBU: LimiterSettings(10, 10, 1800),  # ~10 s; lockout not published: as Tohoku
}
DEFAULT_LIMITER = LimiterSettings(10, 10, 1800)  # the others: 10–60 s published, lockout not


def limiter_settings(area: Area) -> LimiterSettings:
    return AREA_LIMITER.get(area, DEFAULT_LIMITER)


@dataclass(frozen=True, slots=True)
class SwitchEvents:
    """What the limiter did in a step, by meter: (meter keys, code, when [µs])."""

    keys: npt.NDArray[np.int64]
    codes: npt.NDArray[np.int8]
    at_us: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def none(cls) -> SwitchEvents:
        return cls(np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.int64))


class Limiter:
    def __init__(
        self,
        has_switch: Mask,
        states: npt.NDArray[np.int8],
        habit_a: npt.NDArray[np.int16],
        settings: LimiterSettings,
        seed: int,
    ) -> None:
        """``states``: the meters' switch states (``SwitchState``), shared and changed in
        place; ``habit_a``: the limit each household has long lived with (its contract; 0 for
        none). At or above it the limiter changes nothing: the load model already keeps a
        household within its contract."""
        n = len(has_switch)
        self.has_switch = has_switch
        self.states = states
        self.habit_a = habit_a
        self.settings = settings
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4C494D]))  # "LIM"
        self.reclose_at_us = np.full(n, -1, np.int64)
        # the last trips of each meter (a ring), enough for the lockout count
        self._trips = np.full((n, settings.lockout_trips), NEVER, np.int64)
        self._trip_slot = np.zeros(n, np.int64)
        self.used_to_a = habit_a.copy()  # the limit a household has learned to live with
        self.deferred_wh = np.zeros(n)
        self.usual_w: F64 | None = None  # each household's usual demand (moving average)
        self._was = states.copy()
        self.trips = 0
        self.lockouts = 0

    def step(
        self,
        start_us: int,
        demand_w: F64,
        pv_w: F64,
        limit_a: npt.NDArray[np.int16],
        powered: Mask,
    ) -> tuple[F64, F64, SwitchEvents]:
        """One step from ``start_us``: (load served [W], the share of the step the switch was
        closed, what happened)."""
        s = self.settings
        events: list[tuple[npt.NDArray[np.int64], EventCode, npt.NDArray[np.int64]]] = []
        if self.usual_w is None:
            self.usual_w = demand_w.astype(np.float64).copy()
        else:
            weight = STEP_S / 3600 / USUAL_HOURS
            self.usual_w += weight * (demand_w - self.usual_w)
        step_us = STEP_S * 1_000_000
        end_us = start_us + step_us
        # reconnected or reset by a command since the last step: the trip history starts over
        reset = np.flatnonzero(
            (self.states == SwitchState.CONNECTED)
            & (self._was != SwitchState.CONNECTED)
            & (self._was != SwitchState.TRIPPED)
        )
        self._trips[reset] = NEVER
        # re-closes within this step (a trip near the end of the last one)
        tripped = np.flatnonzero(self.states == SwitchState.TRIPPED)
        closed_share = (self.states == SwitchState.CONNECTED).astype(np.float64)
        if len(tripped):
            closes_at = np.maximum(self.reclose_at_us[tripped], start_us)
            due = tripped[closes_at < end_us]
            closed_share[due] = (end_us - closes_at[closes_at < end_us]) / step_us
            self._reclose(due, events)
        limited = (limit_a > 0) & ((self.habit_a == 0) | (limit_a < self.habit_a))
        watched = np.flatnonzero(
            (self.states == SwitchState.CONNECTED) & self.has_switch & powered & limited
        )
        served = demand_w * closed_share
        rebound = np.flatnonzero(self.deferred_wh > 0)
        if not len(watched) and not len(rebound):
            self._was = self.states.copy()
            return served, closed_share, _events(events)

        w = watched
        demand = demand_w[w]
        cap = limit_a[w].astype(np.float64) * VOLTS
        comfortable = cap / SAFE_MARGIN
        essential = essential_load(demand, self.usual_w[w], ESSENTIAL_MIN_W)
        peak = self._rng.lognormal(np.log(PEAK_MEDIAN), PEAK_SIGMA, len(w))
        import_w = np.maximum(demand - pv_w[w], 0.0)
        new_cap = self.used_to_a[w] != limit_a[w]
        over = import_w * peak > cap
        held = ~new_cap & (demand > comfortable)
        hopeless = np.maximum(essential - pv_w[w], 0.0) * ESSENTIAL_PEAK > cap
        retry = held & (self._rng.random(len(w)) < RETRY_TRIP)
        tripping = (over & new_cap) | retry | (over & hopeless)
        shedding = tripping | held
        kept = kept_load(demand, self.usual_w[w], cap, ESSENTIAL_MIN_W)
        wanted = np.where(shedding, kept, demand)
        self.used_to_a[w[tripping]] = limit_a[w[tripping]]

        # the trips: once for those who adapt; again at each re-close for the hopeless, until
        # the lockout or the step's end
        cycle_us = (s.reclose_s + s.min_over_s) * 1_000_000
        first_at = start_us + s.min_over_s * 1_000_000
        repeats = np.where(hopeless, step_us // cycle_us, 1) * tripping
        dark_us = np.zeros(len(w))
        for k in range(int(repeats.max(initial=0))):
            at = first_at + k * cycle_us
            now = (repeats > k) & (self.states[w] == SwitchState.CONNECTED)
            if not now.any():
                break
            keys = w[now]
            apply(self.states, Trigger.LIMITER_TRIP, _mask(len(demand_w), keys))
            self.trips += len(keys)
            events.append((keys, EventCode.SWITCH_TRIPPED, np.full(len(keys), at)))
            self._trips[keys, self._trip_slot[keys] % s.lockout_trips] = at
            self._trip_slot[keys] += 1
            recent = (self._trips[keys] > at - s.lockout_window_s * 1_000_000).sum(axis=1)
            locking = keys[recent >= s.lockout_trips]
            if len(locking):
                apply(self.states, Trigger.TOO_MANY_TRIPS, _mask(len(demand_w), locking))
                self.lockouts += len(locking)
                events.append((locking, EventCode.SWITCH_LOCKED_OUT, np.full(len(locking), at)))
            reclosing = keys[recent < s.lockout_trips]
            self.reclose_at_us[reclosing] = at + s.reclose_s * 1_000_000
            back = np.minimum(self.reclose_at_us[keys], end_us)
            dark_us[now] += np.where(recent >= s.lockout_trips, end_us, back) - at
            self._reclose(reclosing[self.reclose_at_us[reclosing] < end_us], events)
        share = 1.0 - dark_us / step_us
        closed_share[w] = share
        served[w] = wanted * share

        # what was shed is partly used later, once nothing holds the household back
        shed_wh = np.zeros(len(demand_w))
        shed_wh[w] = (demand - wanted) * share * STEP_S / 3600
        self.deferred_wh += DEFERRED_SHARE * shed_wh
        free = np.ones(len(demand_w), dtype=bool)
        free[w[shedding]] = False
        back = np.flatnonzero(free & (self.deferred_wh > 0) & (closed_share > 0))
        if len(back):
            cap_all = np.where(limited[back], limit_a[back] * VOLTS / SAFE_MARGIN, np.inf)
            room = np.minimum(REBOUND_MAX * demand_w[back], np.maximum(cap_all - served[back], 0))
            extra = np.minimum(room, self.deferred_wh[back] * 3600 / STEP_S)
            served[back] += extra * closed_share[back]
            self.deferred_wh[back] -= extra * closed_share[back] * STEP_S / 3600
        self._was = self.states.copy()
        return served, closed_share, _events(events)

    def _reclose(
        self,
        keys: npt.NDArray[np.int64],
        events: list[tuple[npt.NDArray[np.int64], EventCode, npt.NDArray[np.int64]]],
    ) -> None:
        moved = apply(self.states, Trigger.RECLOSE_DUE, _mask(len(self.states), keys))
        keys = np.flatnonzero(moved)
        if len(keys):
            events.append((keys, EventCode.SWITCH_RECLOSED, self.reclose_at_us[keys].copy()))


def _mask(n: int, keys: npt.NDArray[np.int64]) -> Mask:
    mask = np.zeros(n, dtype=bool)
    mask[keys] = True
    return mask


def _events(
    parts: list[tuple[npt.NDArray[np.int64], EventCode, npt.NDArray[np.int64]]],
) -> SwitchEvents:
    if not parts:
        return SwitchEvents.none()
    return SwitchEvents(
        np.concatenate([k for k, _, _ in parts]),
        np.concatenate([np.full(len(k), int(c), np.int8) for k, c, _ in parts]),
        np.concatenate([a for _, _, a in parts]),
    )
