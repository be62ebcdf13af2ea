"""The switch's state machine (issue 16 item 1), transition by transition: every state × every
trigger against a table written out here by hand (an independent copy of the rules: a change
to one without the other fails)."""

from __future__ import annotations

import numpy as np
import pytest

from kenshin.core.switch import SwitchState, Trigger, apply, next_state

C, D, T, L = (
    SwitchState.CONNECTED,
    SwitchState.DISCONNECTED,
    SwitchState.TRIPPED,
    SwitchState.LOCKED_OUT,
)
# rows: the state before; columns: remote disconnect, remote reconnect, limiter trip, re-close
# due, too many trips, button on site
EXPECTED = {
    C: (D, C, T, C, C, C),
    D: (D, C, D, D, D, D),  # a remote disconnect: no trip, no re-close, no button closes it
    T: (D, C, T, C, L, C),
    L: (D, C, L, L, L, C),  # locked out: only a reset (remote or on site) closes it
}
CASES = [
    (state, trigger, after)
    for state, row in EXPECTED.items()
    for trigger, after in zip(Trigger, row, strict=True)
]


@pytest.mark.parametrize(("state", "trigger", "after"), CASES, ids=lambda v: getattr(v, "name", v))
def test_each_transition(state: SwitchState, trigger: Trigger, after: SwitchState) -> None:
    assert next_state(state, trigger) is after
    states = np.array([int(state)] * 3, np.int8)
    moved = apply(states, trigger, np.array([True, False, True]))
    assert states.tolist() == [int(after), int(state), int(after)]
    assert moved.tolist() == [after is not state, False, after is not state]


def test_the_dlms_control_states() -> None:
    assert [s.dlms_control_state for s in (D, C, T, L)] == [0, 1, 2, 2]
