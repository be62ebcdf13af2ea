"""The head-end's own X1 ceiling (issue 16 item 2; SPEC X1): switching commands whose load at
risk would pass the ceiling in ten minutes are refused where they leave, whatever was planned
upstream, unless an emergency signed with the control key is in force; a declaration it cannot
verify is refused. (The ceiling is 70,000 kW; lowered here to fit a small fleet.)"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from kenshin.app.system import build_system
from kenshin.aroute.frames import CommandKind
from kenshin.control.signing import ControlSigner
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.errors import Forbidden
from kenshin.fleet.simulator import FleetConfig
from kenshin.hes.command_rules import CommandState

START = dt.datetime(2026, 6, 1, tzinfo=JST)
MIN = 60_000_000


def test_the_head_end_refuses_past_its_ceiling_unless_an_emergency_is_signed() -> None:
    system = build_system(FleetConfig(n_meters=120, start=START, seed=4), aroute="wire")
    hes = system.hes
    assert hes is not None and hes.commands.x1 is not None
    x1 = hes.commands.x1
    x1.ceiling_kw = 20.0
    pop = system.fleet.population
    forty = np.flatnonzero(system.fleet.meters.has_switch & (pop.contract_a == 40))[:12]
    now = to_epoch_us(START)

    def disconnect(key: int, at: int):  # type: ignore[no-untyped-def]
        signed = system.authorize(key, CommandKind.SWITCH_OPEN)
        return hes.commands.request(key, CommandKind.SWITCH_OPEN, (), at, authorization=signed)

    first = [disconnect(int(k), now) for k in forty[:5]]  # 5 × 4 kW = 20 kW: at the ceiling
    assert all(r.state is CommandState.QUEUED for r in first)
    over = disconnect(int(forty[5]), now + MIN)
    assert over.state is CommandState.REJECTED
    assert "X1: 24 kW at risk in 10 min" in over.reason and "no emergency declared" in over.reason
    # a reconnect puts nothing at risk; ten minutes later the window has room again
    closing = system.authorize(int(forty[0]), CommandKind.SWITCH_CLOSE)
    back = hes.commands.request(
        int(forty[0]), CommandKind.SWITCH_CLOSE, (), now + MIN, authorization=closing
    )
    assert back.state is CommandState.QUEUED
    assert disconnect(int(forty[6]), now + 11 * MIN).state is CommandState.QUEUED
    # an emergency signed with another key, or by one approver twice, is refused
    with pytest.raises(Forbidden, match="signature does not verify"):
        x1.declare(ControlSigner.generate().declare_emergency(("a", "b"), now, now + 60 * MIN))
    with pytest.raises(Forbidden, match="two different approvers"):
        x1.declare(system.control.declare_emergency(("a", "a"), now, now + 60 * MIN))
    # a signed one lifts the ceiling for its period
    x1.declare(system.control.declare_emergency(("a", "b"), now + 11 * MIN, now + 60 * MIN))
    lifted = [disconnect(int(k), now + 12 * MIN) for k in forty[7:12]]
    assert all(r.state is CommandState.QUEUED for r in lifted)
    system.close()
