"""The limiter's physics and the households' reaction (issue 16 item 1; SPEC R3), on a handful of
meters with chosen demand: nothing changes at the contract; a lower limit trips once, re-closes
after the area's delay and leaves a household that sheds; a limit under the essential load trips
at every re-close until the lockout; a reset starts the count over; what was shed comes partly
back afterwards."""

from __future__ import annotations

import numpy as np
import pytest

from kenshin.core.events import EventCode
from kenshin.core.household_response import DEFERRED_SHARE, SAFE_MARGIN, VOLTS
from kenshin.core.ids import Area
from kenshin.core.switch import SwitchState
from kenshin.fleet.limiter import AREA_LIMITER, STEP_S, Limiter, limiter_settings

T0 = 1_780_000_000_000_000 - (1_780_000_000_000_000 % (STEP_S * 1_000_000))
STEP_US = STEP_S * 1_000_000


def _limiter(n: int, contract_a: int = 40, area: Area = Area.TOHOKU, switch: bool = True):  # type: ignore[no-untyped-def]
    states = np.full(n, int(SwitchState.CONNECTED), np.int8)
    habit = np.full(n, contract_a, np.int16)
    limiter = Limiter(np.full(n, switch), states, habit, limiter_settings(area), seed=7)
    return limiter, states


def _steps(limiter, states, demand_w, limit_a, steps, start=T0):  # type: ignore[no-untyped-def]
    served, events = [], []
    n = len(demand_w)
    for k in range(steps):
        out, _, happened = limiter.step(
            start + k * STEP_US,
            np.asarray(demand_w, np.float64),
            np.zeros(n),
            np.asarray(limit_a, np.int16),
            np.ones(n, dtype=bool),
        )
        served.append(out)
        events += list(
            zip(
                happened.keys.tolist(),
                happened.codes.tolist(),
                happened.at_us.tolist(),
                strict=True,
            )
        )
    return np.array(served), events


def test_at_or_above_the_contract_nothing_changes() -> None:
    limiter, states = _limiter(4)
    demand = np.array([3900.0, 3000.0, 200.0, 0.0])  # the load model keeps it under 4 kW
    served, events = _steps(limiter, states, demand, [40, 40, 60, 40], 12)
    assert np.array_equal(served, np.tile(demand, (12, 1))) and events == []


def test_a_lower_limit_trips_once_then_the_household_sheds() -> None:
    limiter, states = _limiter(1)
    demand = np.array([2500.0])  # 25 A of a 40 A contract; the new cap is 20 A (2 kW)
    served, events = _steps(limiter, states, demand, [20], 12)
    trips = [e for e in events if e[1] == EventCode.SWITCH_TRIPPED]
    recloses = [e for e in events if e[1] == EventCode.SWITCH_RECLOSED]
    assert len(trips) >= 1 and len(recloses) == len(trips)
    reclose_s = AREA_LIMITER[Area.TOHOKU].reclose_s
    assert recloses[0][2] - trips[0][2] == reclose_s * 1_000_000  # the area's re-close delay
    assert states[0] == SwitchState.CONNECTED
    comfortable = 20 * VOLTS / SAFE_MARGIN
    assert served[-1][0] == pytest.approx(comfortable)  # it keeps its mean under the cap
    # the step with the trip lost the re-close time too
    assert served[0][0] == pytest.approx(comfortable * (1 - reclose_s / STEP_S))


def test_a_limit_under_the_essential_load_locks_out() -> None:
    limiter, states = _limiter(1, area=Area.HOKURIKU)
    demand = np.array([1500.0])  # essential 525 W; a 5 A cap (500 W) cannot hold it
    settings = AREA_LIMITER[Area.HOKURIKU]
    served, events = _steps(limiter, states, demand, [5], 6)
    trips = [at for _, code, at in events if code == EventCode.SWITCH_TRIPPED]
    locked = [at for _, code, at in events if code == EventCode.SWITCH_LOCKED_OUT]
    assert len(trips) == settings.lockout_trips and len(locked) == 1
    assert locked[0] == trips[-1]  # the trip that reached the count locks it out
    assert trips[-1] - trips[0] < settings.lockout_window_s * 1_000_000
    assert states[0] == SwitchState.LOCKED_OUT
    assert served[-1][0] == 0.0  # nothing flows until a reset
    # a remote reset: connected, and the trips before it no longer count
    states[0] = SwitchState.CONNECTED
    served, events = _steps(limiter, states, demand, [5], 1, start=T0 + 6 * STEP_US)
    trips = [at for _, code, at in events if code == EventCode.SWITCH_TRIPPED]
    locked = [at for _, code, at in events if code == EventCode.SWITCH_LOCKED_OUT]
    # the count starts over: locked out again only at the fourth trip after the reset
    assert len(trips) == settings.lockout_trips and locked == [trips[-1]]


def test_lockout_counts_follow_the_area() -> None:
    hokuriku, tohoku = AREA_LIMITER[Area.HOKURIKU], AREA_LIMITER[Area.TOHOKU]
    assert (hokuriku.reclose_s, hokuriku.lockout_trips) == (60, 4)
    assert (tohoku.reclose_s, tohoku.lockout_trips, tohoku.lockout_window_s) == (10, 10, 1800)
    limiter, states = _limiter(1, area=Area.TOHOKU)
    _, events = _steps(limiter, states, [1500.0], [5], 2)
    trips = [at for _, code, at in events if code == EventCode.SWITCH_TRIPPED]
    assert len(trips) == tohoku.lockout_trips  # ten trips 12 s apart, then locked out
    assert np.diff(trips).tolist() == [12_000_000] * 9


def test_without_a_switch_nothing_is_limited() -> None:
    limiter, states = _limiter(1, switch=False)  # HV (M2, R5)
    served, events = _steps(limiter, states, [2500.0], [5], 3)
    assert (served == 2500.0).all() and events == []


def test_what_was_shed_comes_partly_back() -> None:
    limiter, states = _limiter(1)
    demand = np.array([2500.0])
    served, _ = _steps(limiter, states, demand, [20], 12)
    shed_wh = float((demand[0] - served).sum() * STEP_S / 3600)
    after, _ = _steps(limiter, states, demand, [40], 24, start=T0 + 12 * STEP_US)
    back_wh = float((after - demand[0]).sum() * STEP_S / 3600)
    assert after.max() > demand[0]  # a rebound above the usual demand …
    assert back_wh == pytest.approx(DEFERRED_SHARE * shed_wh, rel=0.02)  # … of half the shed
    assert after[-1][0] == demand[0]  # and then as before
