"""What a meter keeps between runs of ``kenshin fleet`` (issue 13): its frame counters, and the
settings commands gave it -- the switch, the ampere limit, the A5 soft switch, A3 real-time
sending -- so a second run does not quietly undo a command the head-end saw acknowledged."""

from __future__ import annotations

import datetime as dt

import numpy as np

from kenshin.app.services import resume_fleet, save_fleet_state
from kenshin.app.system import policy_for, simulated_field
from kenshin.aroute.keys import KeyRing, load_master_key
from kenshin.core.switch import SwitchState
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.fleet.state import FleetState

CONFIG = FleetConfig(n_meters=30, start=dt.datetime(2026, 4, 1, tzinfo=JST), seed=8)


def field():  # type: ignore[no-untyped-def]
    return simulated_field(Fleet(CONFIG), policy_for(CONFIG), KeyRing(load_master_key(None)))


def test_a_resumed_fleet_keeps_its_counters_and_commanded_settings(tmp_path) -> None:
    first = field()
    for _ in range(6):
        first.step()
        list(first.due(first.now_us))
    first.fleet.meters.switch_state[3] = SwitchState.DISCONNECTED  # as switch_open leaves it
    first.fleet.meters.switch_state[7] = SwitchState.LOCKED_OUT  # as the limiter may
    first.fleet.meters.ampere_limit_a[4] = 20
    first.radio.soft_switch_15[5] = not first.radio.soft_switch_15[5]
    first.radio.realtime[6] = not first.radio.realtime[6]
    path = tmp_path / "fleet.npz"
    save_fleet_state(first, path)

    second = field()
    assert resume_fleet(second, path) is not None
    assert second.now_us == first.now_us
    assert np.all(second.radio.up_counter >= first.radio.up_counter)
    assert second.fleet.meters.switch_state[3] == SwitchState.DISCONNECTED
    assert second.fleet.meters.switch_state[7] == SwitchState.LOCKED_OUT
    assert second.fleet.meters.ampere_limit_a[4] == 20
    assert second.radio.soft_switch_15[5] == first.radio.soft_switch_15[5]
    assert second.radio.realtime[6] == first.radio.realtime[6]
    # the settings apply from where the run stopped: the registers there are the first run's
    assert np.array_equal(second.fleet.meters.registers(), first.fleet.meters.registers())


def test_a_state_written_before_the_settings_were_kept_still_resumes(tmp_path) -> None:
    first = field()
    first.step()
    path = tmp_path / "old.npz"
    FleetState(CONFIG.describe(), first.now_us, first.radio.up_counter).save(path)
    second = field()
    assert resume_fleet(second, path) is not None
    assert second.fleet.meters.switch_closed.all()


def test_a_state_with_the_switch_as_open_or_closed_still_resumes(tmp_path) -> None:
    """States written before the limiter kept the switch as a bool (issue 16)."""
    first = field()
    first.step()
    closed = np.ones(CONFIG.n_meters, dtype=bool)
    closed[2] = False
    path = tmp_path / "bool.npz"
    settings = {"switch_closed": closed, "ampere_limit_a": first.fleet.meters.ampere_limit_a}
    FleetState(CONFIG.describe(), first.now_us, first.radio.up_counter, settings).save(path)
    second = field()
    assert resume_fleet(second, path) is not None
    assert second.fleet.meters.switch_state[2] == SwitchState.DISCONNECTED
    assert second.fleet.meters.switch_closed.sum() == CONFIG.n_meters - 1
