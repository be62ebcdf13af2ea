"""Remote ampere control that really limits (issue 16 item 1), end to end over the wire A-route:
the head-end lowers the limit of evening households; the meters trip, re-close or lock out, say
so in A-route events the MDMS stores, answer polls with the lockout flag, and count less than the
same fleet left alone."""

from __future__ import annotations

import datetime as dt

import numpy as np

from kenshin.app.system import build_system
from kenshin.aroute.frames import CommandKind, OperatingState
from kenshin.core.events import EventCode
from kenshin.core.switch import SwitchState
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.fleet.simulator import FleetConfig
from kenshin.hes.polling import PollState
from tests.fleet.test_faults import _lossless

EVENING = dt.datetime(2026, 1, 14, 17, 0, tzinfo=JST)  # a winter weekday


def _system():  # type: ignore[no-untyped-def]
    config = FleetConfig(n_meters=400, start=EVENING, seed=5)
    return build_system(config, aroute="wire", network=_lossless(), background_writer=False)


def test_lower_limits_trip_lock_out_and_cut_the_energy() -> None:
    control, left_alone = _system(), _system()
    pop = control.fleet.population
    until = EVENING + dt.timedelta(hours=2)
    before = control.fleet.meters.registers()[0].astype(np.int64)
    left_alone.run(until)
    alone_all = left_alone.fleet.meters.registers()[0].astype(np.int64) - before
    # the 40 heaviest households with a switch and a contract of 30 A or more get 10 A: 1 kW
    candidates = np.flatnonzero(control.fleet.meters.has_switch & (pop.contract_a >= 30))
    households = candidates[np.argsort(-alone_all[candidates], kind="stable")[:40]]
    now = to_epoch_us(EVENING)
    limit = CommandKind.SET_AMPERE_LIMIT
    records = [
        control.hes.commands.request(
            int(key), limit, (10,), now, authorization=control.authorize(int(key), limit, (10,))
        )
        for key in households
    ]
    control.run(EVENING + dt.timedelta(minutes=20))
    # the head-end has heard none of these meters yet: no route, so nothing is sent and no
    # attempt is spent (they would fail unsent otherwise)
    waiting = [control.hes.commands.get(r.command_id) for r in records]
    unheard = [r for r in waiting if control.hes.route[r.meter_key] < 0]
    assert unheard and all(r.state.name == "QUEUED" and r.attempts == 0 for r in unheard)
    control.run(until)
    control.mdms.flush()
    done = [control.hes.commands.get(r.command_id).state.name for r in records]
    assert done == ["ACKNOWLEDGED"] * len(records)
    assert not control.hes.stats.frames_rejected  # a trip and its re-close: two counters

    events = control.store.read_events(now, to_epoch_us(until) + 3_600_000_000)
    codes = events.column("code").to_numpy()
    keys = events.column("meter_key").to_numpy()
    tripped = set(keys[codes == EventCode.SWITCH_TRIPPED].tolist())
    locked = set(keys[codes == EventCode.SWITCH_LOCKED_OUT].tolist())
    assert len(tripped) >= 20 and tripped <= set(households.tolist())  # only the limited
    # the heaviest need more than 1 kW just for what they never shed: they lock out
    assert int(households[0]) in locked and locked <= tripped
    detail = events.column("detail").to_numpy()[codes == EventCode.SWITCH_TRIPPED]
    assert set(detail.tolist()) == {10}  # each trip says the limit in force
    states = control.fleet.meters.switch_state
    assert all(states[k] == SwitchState.LOCKED_OUT for k in locked)

    # the energy of the limited households, against the same fleet left alone
    used = (control.fleet.meters.registers()[0].astype(np.int64) - before)[households]
    alone = alone_all[households]
    assert used.sum() < 0.8 * alone.sum() and (used <= alone).all()
    others = np.setdiff1d(np.flatnonzero(control.fleet.meters.has_switch), households)
    moved = control.fleet.meters.registers()[0].astype(np.int64) - before
    moved_alone = left_alone.fleet.meters.registers()[0].astype(np.int64) - before
    assert np.array_equal(moved[others], moved_alone[others])  # nobody else is touched

    # a poll of a locked-out meter says so; a remote reset closes it again
    key = int(households[0])  # locked out
    batch = control.hes.polls.request(np.array([key]), to_epoch_us(control.now))
    control.run(control.now + dt.timedelta(minutes=5))
    [answer] = control.hes.polls.result(batch).polls
    assert answer.state is PollState.ANSWERED and answer.response is not None
    assert answer.response.state & OperatingState.LOCKED_OUT
    assert not answer.response.state & OperatingState.SWITCH_CLOSED
    at = to_epoch_us(control.now)
    back = control.authorize(key, limit, (30,))
    control.hes.commands.request(key, limit, (30,), at, authorization=back)
    reset = control.authorize(key, CommandKind.SWITCH_CLOSE)
    control.hes.commands.request(key, CommandKind.SWITCH_CLOSE, (), at, authorization=reset)
    control.run(control.now + dt.timedelta(minutes=10))
    assert control.fleet.meters.switch_state[key] == SwitchState.CONNECTED
    control.close()
    left_alone.close()
