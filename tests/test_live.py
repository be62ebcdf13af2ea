"""The live runner (``kenshin up``) runs the MDMS schedule: a day that closes while the system is
live gets its VEE sweep, and the status line reports it."""

from __future__ import annotations

import datetime as dt
import time

from kenshin.app.live import LiveRunner
from kenshin.app.system import build_system
from kenshin.core.clock import AcceleratedClock
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import FleetConfig


def test_a_day_closing_while_live_is_swept() -> None:
    start = dt.datetime(2026, 4, 1, 0, 0, tzinfo=JST)
    system = build_system(
        FleetConfig(n_meters=60, start=start, seed=2), aroute="wire", background_writer=False
    )
    assert system.schedule is not None
    system.run(dt.datetime(2026, 4, 1, 23, 0, tzinfo=JST))
    assert system.schedule.sweeps == []  # 1 April has not closed yet
    runner = LiveRunner(system, AcceleratedClock(system.now, speed=3600.0))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not system.schedule.sweeps:
            time.sleep(0.2)
        status = runner.status()
    finally:
        runner.stop()
    assert runner.error is None
    first = system.schedule.sweeps[0]
    assert first.day == dt.date(2026, 4, 1)
    assert first.cells == 60 * 48
    assert status["vee_days_swept"] >= 1
    system.close()


def test_the_status_says_how_far_a_slow_machine_is_behind() -> None:
    """A clock far ahead of the simulation (a machine too slow for --speed) shows as lag."""
    from kenshin.cli.live import _status_text

    start = dt.datetime(2026, 4, 1, 0, 0, tzinfo=JST)
    system = build_system(
        FleetConfig(n_meters=20, start=start, seed=2), aroute="wire", background_writer=False
    )
    try:
        system.run(start + dt.timedelta(hours=1))
        ahead = AcceleratedClock(system.now + dt.timedelta(hours=2), speed=600.0)
        status = LiveRunner(system, ahead).status()  # not started: the simulation stands still
    finally:
        system.close()
    assert 7200 <= status["simulation_lag_s"] < 7300
    text = _status_text(status)
    assert "120 simulated min behind 600×" in text and "VEE days 0, gaps 0" in text
