"""One pacer for everything that runs in accelerated simulated time.

``kenshin up`` (the live runner), ``kenshin fleet`` (publishing to a broker at ``--speed``) and
the B-route servers (``kenshin broute serve`` / ``wisun``) all step a simulation whenever an
:class:`~kenshin.core.clock.AcceleratedClock` passes the next step's end. The waiting is here,
once: in short slices so that a stop request is seen at once, in a thread or in asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from kenshin.core.clock import AcceleratedClock


@dataclass(frozen=True)
class Pacer:
    """Waits for ``clock`` to reach a step's end; ``clock=None`` runs as fast as possible."""

    clock: AcceleratedClock | None
    poll_s: float = 0.5  # longest single wait: how soon a stop request is seen

    def wait_for(self, due: dt.datetime, stop: threading.Event) -> bool:
        """Block until the clock reaches ``due``: True then, False if ``stop`` was set first."""
        while not stop.is_set():
            wait = 0.0 if self.clock is None else self.clock.wall_seconds_until(due)
            if wait <= 0:
                return True
            stop.wait(min(wait, self.poll_s))
        return False

    async def wait_for_async(self, due: dt.datetime, stop: asyncio.Event) -> bool:
        """:meth:`wait_for` in asyncio."""
        while not stop.is_set():
            wait = 0.0 if self.clock is None else self.clock.wall_seconds_until(due)
            if wait <= 0:
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(wait, self.poll_s))
        return False

    def run(
        self,
        step: Callable[[], None],
        due: Callable[[], dt.datetime],
        stop: threading.Event,
        lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        """Call ``step`` (holding ``lock``) each time the clock passes ``due()``, until ``stop``."""
        guard = lock if lock is not None else nullcontext()
        while self.wait_for(due(), stop):
            with guard:
                step()
