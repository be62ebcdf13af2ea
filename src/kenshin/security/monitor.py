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
from collections import deque
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
    alerted: dict[str, float] = field(default_factory=dict)  # kind → when


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
            traffic.recent.append((now_s, meter, refused))
            while traffic.recent and traffic.recent[0][0] <= now_s - self.window_s:
                traffic.recent.popleft()
            raised = []
            refusals = sum(1 for _, _, r in traffic.recent if r)
            if refusals >= self.refusals_alert:
                raised += self._raise(traffic, principal, "refusals", now_s, f"{refusals} refusals")
            breadth = len({m for _, m, r in traffic.recent if m and not r})
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
            recent = list(traffic.recent)
        return {
            "requests": traffic.requests,
            "refusals": traffic.refusals,
            "last_seen": traffic.last_seen_s or None,
            "window_s": self.window_s,
            "window_requests": len(recent),
            "window_refusals": sum(1 for _, _, r in recent if r),
            "window_supply_points": len({m for _, m, r in recent if m and not r}),
            "alerts": [
                {"kind": a.kind, "at": a.at_s, "detail": a.detail}
                for a in self.alerts
                if a.principal == principal
            ],
        }
