"""The meter's switch as a state machine (issue 16 item 1; SPEC M6, R3): one table of
(state, trigger) → state, the meter model and the head-end's reading of poll answers share it.

Modelled on the DLMS/COSEM disconnect control (class 70: connected, disconnected, ready for
reconnection) with the Japanese limiter behaviour (アンペアブレーカー機能): a trip opens the switch
for a re-close delay, and too many trips in a window lock it out until a reset (remote, or the
button on site). Two of our states are DLMS's *ready for reconnection*: ``TRIPPED`` (re-closes
by itself) and ``LOCKED_OUT`` (waits for a reset).

A remote disconnect can only be undone remotely: the button on site does not close a switch
the utility opened (X2: no unintended reconnection).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import numpy.typing as npt


class SwitchState(IntEnum):
    DISCONNECTED = 0  # opened remotely (DLMS 0)
    CONNECTED = 1  # (DLMS 1)
    TRIPPED = 2  # the limiter opened it; re-closes after the area's delay (DLMS 2, ready)
    LOCKED_OUT = 3  # too many trips in the window: waits for a reset (DLMS 2, ready)

    @property
    def dlms_control_state(self) -> int:
        """0 disconnected, 1 connected, 2 ready for reconnection."""
        return min(int(self), 2)


class Trigger(IntEnum):
    REMOTE_DISCONNECT = 0  # SWITCH_OPEN command (DLMS b, c)
    REMOTE_RECONNECT = 1  # SWITCH_CLOSE command: reconnect, or reset after a lockout (a)
    LIMITER_TRIP = 2  # current over the limit for the minimum time (g)
    RECLOSE_DUE = 3  # the re-close delay has passed (h)
    TOO_MANY_TRIPS = 4  # the trip that reaches the lockout count in the window
    BUTTON = 5  # the customer or a field worker resets it on site (e)


S, T = SwitchState, Trigger
# every (state, trigger) pair that moves; every other pair leaves the state as it is
TRANSITIONS: dict[tuple[SwitchState, Trigger], SwitchState] = {
    (S.CONNECTED, T.REMOTE_DISCONNECT): S.DISCONNECTED,
    (S.TRIPPED, T.REMOTE_DISCONNECT): S.DISCONNECTED,
    (S.LOCKED_OUT, T.REMOTE_DISCONNECT): S.DISCONNECTED,
    (S.DISCONNECTED, T.REMOTE_RECONNECT): S.CONNECTED,
    (S.TRIPPED, T.REMOTE_RECONNECT): S.CONNECTED,
    (S.LOCKED_OUT, T.REMOTE_RECONNECT): S.CONNECTED,  # the remote reset after a lockout
    (S.CONNECTED, T.LIMITER_TRIP): S.TRIPPED,
    (S.TRIPPED, T.RECLOSE_DUE): S.CONNECTED,
    (S.TRIPPED, T.TOO_MANY_TRIPS): S.LOCKED_OUT,
    (S.TRIPPED, T.BUTTON): S.CONNECTED,
    (S.LOCKED_OUT, T.BUTTON): S.CONNECTED,
}

_NEXT = np.array(
    [[int(TRANSITIONS.get((s, t), s)) for t in Trigger] for s in SwitchState], dtype=np.int8
)


def next_state(state: SwitchState, trigger: Trigger) -> SwitchState:
    return SwitchState(int(_NEXT[int(state), int(trigger)]))


def apply(
    states: npt.NDArray[np.int8], trigger: Trigger, where: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.bool_]:
    """Apply ``trigger`` to ``states`` in place (where ``where``); returns which moved."""
    after = _NEXT[states.astype(np.intp), int(trigger)]
    moved: npt.NDArray[np.bool_] = after != states
    if where is not None:
        moved &= where
    states[moved] = after[moved]
    return moved
