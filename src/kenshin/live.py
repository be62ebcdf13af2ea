"""``kenshin up``: the live system in one process.

The fleet runs in accelerated simulated time (an :class:`AcceleratedClock`) on a worker thread:
every 5 simulated minutes its meters send authenticated frames through the network model and
their collectors to the head-end (the ``wire`` A-route, in-process), which keeps the duties'
deadlines and re-reads what was lost; uvicorn serves the API from the same store. Ctrl-C stops the
server, then the worker, then flushes and closes the store.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from rich.console import Console

from kenshin.app.stores import StoreLocation, StoreMode, open_store
from kenshin.core.clock import AcceleratedClock
from kenshin.core.ids import Area
from kenshin.core.timeslots import JST, Resolution, from_epoch_us, to_epoch_us
from kenshin.fleet.simulator import FleetConfig
from kenshin.system import EmbeddedSystem

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
            while not self.stop_event.is_set():
                due = self.system.next_step_end()
                wait_s = self.clock.wall_seconds_until(due)
                if wait_s > 0:
                    self.stop_event.wait(min(wait_s, 0.5))
                    continue
                with self.lock:
                    self.system.run_step()
                    self.system.commit()  # live data is visible as soon as it is delivered
                    if self.system.schedule is not None:  # daily VEE sweep, monthly archive
                        self.system.schedule.tick(self.system.fleet.meters.now_us)
        except BaseException as exc:  # reported on the status line and at exit
            self.error = exc

    def status(self) -> dict[str, Any]:
        hes = self.system.hes
        assert hes is not None
        schedule = self.system.schedule
        on_time = {
            duty.label: (s.on_time_share if s.on_time_share is not None else None)
            for duty, s in hes.latest_slo().items()
        }
        return {
            "simulated_time": self.clock.now().isoformat(timespec="seconds"),
            "speed": self.clock.speed,
            "frames_accepted": hes.stats.frames_accepted,
            "frames_rejected": hes.stats.frames_rejected_total,
            "readings_stored": self.system.mdms.stats.rows_stored,
            "rereads_requested": hes.stats.rereads_requested,
            "on_time_share": on_time,
            "vee_days_swept": len(schedule.sweeps) if schedule is not None else 0,
            "gaps_to_reread": schedule.sweeps[-1].gaps if schedule and schedule.sweeps else 0,
            "simulation_error": None if self.error is None else str(self.error),
        }


def run_live(
    *,
    meters: int,
    speed: float,
    store: StoreLocation,
    host: str,
    port: int,
    seed: int,
    backfill_hours: int,
    area: Area,
    console: Console,
) -> None:
    import uvicorn

    from kenshin.api.app import create_app

    step = Resolution.MIN30.microseconds
    now_us = to_epoch_us(dt.datetime.now(JST)) // step * step
    origin = from_epoch_us(now_us)
    start = origin - dt.timedelta(hours=backfill_hours)
    # recreated at start; on PostgreSQL in a schema of its own: never another system's data
    opened = open_store(store, StoreMode.CREATE, overwrite=True, schema=UP_SCHEMA)
    console.print(f"storing in {store.describe(UP_SCHEMA)} (recreated)")

    console.print(f"building a fleet of {meters:,} meters, simulating the last {backfill_hours} h…")
    system = EmbeddedSystem(
        FleetConfig(n_meters=meters, start=start, seed=seed, area=area),
        store=opened,
        aroute="wire",
    )
    if backfill_hours:
        system.run(origin)
    clock = AcceleratedClock(origin, speed)
    runner = LiveRunner(system, clock)
    runner.start()

    app = create_app(
        system.store,
        status=runner.status,
        hes=system.hes,
        hes_lock=runner.lock,
        clock=system.clock.now,  # manual edits carry the simulated time
    )
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    reporter = threading.Thread(
        target=_report, args=(runner, console, server), name="kenshin-status", daemon=True
    )
    console.print(
        f"kenshin is up: http://{host}:{port}/api/v1/health  ·  API docs http://{host}:{port}/docs"
        f"  ·  {speed:g}× time  ·  Ctrl-C stops"
    )
    reporter.start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how the live system is meant to stop
    finally:
        runner.stop()
        system.close()
        console.print(f"stopped; the store is in {store.describe(UP_SCHEMA)}")


def _status_text(status: dict[str, Any]) -> str:
    shares = "  ".join(
        f"{duty} {share:.2%}" for duty, share in sorted(status["on_time_share"].items())
    )
    text = (
        f"simulated {status['simulated_time']}  ·  frames {status['frames_accepted']:,}"
        f" ({status['frames_rejected']:,} refused)  ·  readings stored "
        f"{status['readings_stored']:,}  ·  on time {shares or '—'}"
    )
    if status["simulation_error"]:
        text += f"  ·  [red]error: {status['simulation_error']}[/]"
    return text


def _report(runner: LiveRunner, console: Console, server: Any) -> None:
    """One status line, updated in place on a terminal, a plain line now and then otherwise."""
    if console.is_terminal:
        with console.status(_status_text(runner.status())) as line:
            while not runner.stop_event.wait(1.0):
                status = runner.status()
                line.update(_status_text(status))
                if status["simulation_error"]:
                    server.should_exit = True
        return
    while not runner.stop_event.wait(10.0):
        status = runner.status()
        console.print(f"[dim]{_status_text(status)}[/]")
        if status["simulation_error"]:
            server.should_exit = True
