"""The virtual Wi-SUN module on a pseudo-terminal (SPEC B1, B2, B4, X5): the I/O side.

:class:`PtyRunner` feeds a sans-I/O :class:`~kenshin.broute.skstack.SkStackModule` from the
master side of a pty on a daemon thread, so a B-route client program opens the device side
(``/dev/pts/N``) like a serial port; :func:`open_wisun_pty` starts one and :func:`serve_wisun`
does all of it for the CLI. ``docs/protocols/wisun.md`` describes the behaviour.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
import tty
from dataclasses import dataclass, field

from kenshin.broute.credentials import (
    AccessPolicy,
    BrouteCredentials,
    Clock,
    CredentialRegistry,
    Medium,
    SessionTable,
)
from kenshin.broute.skstack import EchonetEndpoint, SkStackModule, WisunMeter

log = logging.getLogger("kenshin.broute.wisun")


class PtyRunner:
    """Feeds a :class:`SkStackModule` from the master side of a pty, on a daemon thread.

    The device side (``device_path``) is in raw mode: a client opens it like a serial port.
    """

    def __init__(self, module: SkStackModule, tick_interval: float = 0.05):
        self.module = module
        self.tick_interval = tick_interval
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation on the device side
        os.set_blocking(self._master, False)
        self.device_path = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"wisun-pty-{self.device_path}", daemon=True
        )

    def start(self) -> PtyRunner:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1

    def wait(self, timeout: float | None = None) -> None:
        """Block until :meth:`stop` (e.g. from a signal handler) or the timeout."""
        self._stop.wait(timeout)

    def __enter__(self) -> PtyRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        pending = bytearray()
        master = self._master
        while not self._stop.is_set():
            writers = [master] if pending else []
            try:
                readable, _, _ = select.select([master], writers, [], self.tick_interval)
                if readable:
                    data = os.read(master, 4096)
                    pending += self.module.feed(data)
                pending += self.module.tick()
                if pending:
                    del pending[: os.write(master, pending)]
            except BlockingIOError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                log.exception("pty %s failed", self.device_path)
                return
            except Exception:  # keep serving after a bug in one command
                log.exception("pty %s: module error", self.device_path)


def open_wisun_pty(module: SkStackModule, tick_interval: float = 0.05) -> tuple[str, PtyRunner]:
    """Start ``module`` on a new pty; returns the device path to open and the running runner."""
    runner = PtyRunner(module, tick_interval).start()
    log.info("virtual %s module %s on %s", module.dialect.name, module.mac, runner.device_path)
    return runner.device_path, runner


@dataclass
class WisunServer:
    """A virtual module on a pty serving one meter (what ``kenshin broute wisun`` runs)."""

    device_path: str
    meter: WisunMeter
    module: SkStackModule
    runner: PtyRunner
    credentials: BrouteCredentials
    extra: list[PtyRunner] = field(default_factory=list)

    def add_device(self, dialect: str = "bp35a1", mac: str | None = None) -> tuple[str, PtyRunner]:
        """Another virtual module hearing the same meter (to see the 1:1 rule refuse it)."""
        path, runner = open_wisun_pty(SkStackModule(self.meter, dialect, mac))
        self.extra.append(runner)
        return path, runner

    def wait(self, timeout: float | None = None) -> None:
        self.runner.wait(timeout)

    def close(self) -> None:
        for runner in [self.runner, *self.extra]:
            runner.stop()

    def __enter__(self) -> WisunServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_wisun(
    endpoint: EchonetEndpoint,
    registry: CredentialRegistry,
    supply_point_id: str,
    dialect: str = "bp35a1",
    *,
    sessions: SessionTable | None = None,
    session_lifetime: float | None = 86_400.0,
    clock: Clock = time.monotonic,
    module_mac: str | None = None,
    meter_mac: str = "",
) -> WisunServer:
    """Serve one meter over a virtual Wi-SUN module on a pty.

    Issues credentials if the meter has none. ``sessions`` defaults to a table with a Wi-SUN
    policy of ``session_lifetime`` seconds on ``clock``.
    """
    credentials = registry.current(supply_point_id) or registry.issue(supply_point_id)
    if sessions is None:
        sessions = SessionTable({Medium.WISUN: AccessPolicy.wisun(session_lifetime)}, clock=clock)
    meter = WisunMeter(endpoint, registry, supply_point_id, sessions, mac=meter_mac)
    module = SkStackModule(meter, dialect, module_mac)
    path, runner = open_wisun_pty(module)
    return WisunServer(path, meter, module, runner, credentials)
