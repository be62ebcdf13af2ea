"""The live system's runner (``kenshin up``, started by :mod:`kenshin.cli.live`).

The fleet runs in accelerated simulated time (an :class:`AcceleratedClock`, paced by
:class:`kenshin.app.pacing.Pacer`) on a worker thread: every 5 simulated minutes its meters send
authenticated frames through the network model and their collectors to the head-end worker (the
``wire`` A-route, in-process), which keeps the duties' deadlines and re-reads what was lost.
"""

from __future__ import annotations

import threading
from typing import Any

from kenshin.app.pacing import Pacer
from kenshin.app.system import EmbeddedSystem
from kenshin.core.clock import AcceleratedClock

UP_SCHEMA = "kenshin_up"  # the PostgreSQL schema `kenshin up --store postgresql://…` recreates


class LiveRunner:
    """Keeps the fleet caught up with an accelerated clock on a background thread."""

    def __init__(self, system: EmbeddedSystem, clock: AcceleratedClock) -> None:
        self.system = system
        self.clock = clock
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.lock = threading.Lock()  # the API's commands and polls share the head-end
        self._thread = threading.Thread(target=self._loop, name="kenshin-live", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join()

    def _loop(self) -> None:
        try:
            Pacer(self.clock).run(self._step, self.system.next_step_end, self.stop_event, self.lock)
        except BaseException as exc:  # reported on the status line and at exit
            self.error = exc

    def _step(self) -> None:
        self.system.run_step()
        self.system.commit()  # live data is visible as soon as it is delivered
        if self.system.schedule is not None:  # daily VEE sweep, monthly archive
            self.system.schedule.tick(self.system.fleet.meters.now_us)

    def status(self) -> dict[str, Any]:
        hes = self.system.hes
        assert hes is not None
        schedule = self.system.schedule
        on_time = {
            duty.label: (s.on_time_share if s.on_time_share is not None else None)
            for duty, s in hes.latest_slo().items()
        }
        wanted = self.clock.now()
        # how far the simulation is behind the paced clock: a machine too slow for --speed
        lag_s = max(0.0, (wanted - self.system.fleet.now).total_seconds())
        return {
            "simulated_time": wanted.isoformat(timespec="seconds"),
            "speed": self.clock.speed,
            "simulation_lag_s": lag_s,
            "frames_accepted": hes.stats.frames_accepted,
            "frames_rejected": hes.stats.frames_rejected_total,
            "readings_stored": self.system.mdms.stats.rows_stored,
            "rereads_requested": hes.stats.rereads_requested,
            "on_time_share": on_time,
            "vee_days_swept": len(schedule.sweeps) if schedule is not None else 0,
            "gaps_to_reread": schedule.sweeps[-1].gaps if schedule and schedule.sweeps else 0,
            "simulation_error": None if self.error is None else str(self.error),
            "customers_out": (
                None if self.system.outages is None else self.system.outages.customers_out()
            ),
            "outage_storm": self.system.outages is not None and self.system.outages.engine.storm,
        }
