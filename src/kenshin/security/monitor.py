"""Watching each connection (issue 14 item 5; SPEC X5 ⑤): per principal, its requests, its
refusals and how many supply points it touched, in a sliding window, with alerts when a pattern
looks like an attack or a leak — many refusals (probing ids, guessing, a revoked client retrying)
or a sudden breadth of meters (bulk reading by a stolen staff token).

An alert is raised once per principal, kind and window: logged as a warning, appended to the audit
trail (method ``ALERT``) and listed by ``GET /api/v1/connections``; the kill switch is the answer
a security admin gives it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("kenshin.security.monitor")

WINDOW_S = 300.0  # five minutes
REFUSALS_ALERT = 20  # refusals in a window
METERS_ALERT = 500  # distinct supply points in a window


@dataclass
class _Traffic:
    requests: int = 0
    refusals: int = 0
    last_seen_s: float = 0.0
    recent: deque[tuple[float, str, bool]] = field(default_factory=deque)  # (at, meter, refused)
    # the window's counts, kept as requests enter and leave it: O(1) a request
    window_refusals: int = 0
    window_meters: Counter[str] = field(default_factory=Counter)  # read (not refused) meters
    alerted: dict[str, float] = field(default_factory=dict)  # kind → when

    def enter(self, at: float, meter: str, refused: bool) -> None:
        self.recent.append((at, meter, refused))
        self.window_refusals += refused
        if meter and not refused:
            self.window_meters[meter] += 1

    def leave_before(self, start: float) -> None:
        while self.recent and self.recent[0][0] <= start:
            _, meter, refused = self.recent.popleft()
            self.window_refusals -= refused
            if meter and not refused:
                self.window_meters[meter] -= 1
                if not self.window_meters[meter]:
                    del self.window_meters[meter]


@dataclass(frozen=True, slots=True)
class Alert:
    principal: str
    kind: str  # "refusals" or "breadth"
    at_s: float
    detail: str


class ConnectionMonitor:
    def __init__(
        self,
        window_s: float = WINDOW_S,
        refusals_alert: int = REFUSALS_ALERT,
        meters_alert: int = METERS_ALERT,
    ) -> None:
        self.window_s = window_s
        self.refusals_alert = refusals_alert
        self.meters_alert = meters_alert
        self._traffic: dict[str, _Traffic] = {}
        self._lock = threading.Lock()
        self.alerts: deque[Alert] = deque(maxlen=1000)

    def observe(self, principal: str, meter: str, status: int, now_s: float) -> list[Alert]:
        """Count one request; returns the alerts it raised (usually none)."""
        refused = status in (401, 403, 404, 429) and (status != 404 or bool(meter))
        with self._lock:
            traffic = self._traffic.setdefault(principal, _Traffic())
            traffic.requests += 1
            traffic.refusals += refused
            traffic.last_seen_s = now_s
            traffic.enter(now_s, meter, refused)
            traffic.leave_before(now_s - self.window_s)
            raised = []
            refusals = traffic.window_refusals
            if refusals >= self.refusals_alert:
                raised += self._raise(traffic, principal, "refusals", now_s, f"{refusals} refusals")
            breadth = len(traffic.window_meters)
            if breadth >= self.meters_alert:
                raised += self._raise(
                    traffic, principal, "breadth", now_s, f"{breadth} supply points read"
                )
        for alert in raised:
            log.warning("security alert: %s %s (%s)", alert.principal, alert.kind, alert.detail)
        return raised

    def _raise(
        self, traffic: _Traffic, principal: str, kind: str, now_s: float, detail: str
    ) -> list[Alert]:
        last = traffic.alerted.get(kind)
        if last is not None and now_s - last < self.window_s:
            return []
        traffic.alerted[kind] = now_s
        alert = Alert(principal, kind, now_s, f"{detail} in {self.window_s:g} s")
        self.alerts.append(alert)
        return [alert]

    def view(self, principal: str) -> dict[str, Any]:
        with self._lock:
            traffic = self._traffic.get(principal, _Traffic())
            window = (len(traffic.recent), traffic.window_refusals, len(traffic.window_meters))
        return {
            "requests": traffic.requests,
            "refusals": traffic.refusals,
            "last_seen": traffic.last_seen_s or None,
            "window_s": self.window_s,
            "window_requests": window[0],
            "window_refusals": window[1],
            "window_supply_points": window[2],
            "alerts": [
                {"kind": a.kind, "at": a.at_s, "detail": a.detail}
                for a in self.alerts
                if a.principal == principal
            ],
        }
