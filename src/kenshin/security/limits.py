"""Rate limits per client (issue 14 item 3; OWASP API4): a token bucket per principal, refilled
at its ``rate_per_s`` and holding twice that, so short bursts pass and a flood is refused with
429 and how long to wait."""

from __future__ import annotations

import math
import threading


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # name → (tokens, at [s])
        self._lock = threading.Lock()

    def take(self, name: str, rate_per_s: float, now_s: float) -> int | None:
        """None when a request of ``name`` may pass now, else the seconds to wait (≥ 1)."""
        burst = 2.0 * rate_per_s
        with self._lock:
            tokens, at = self._buckets.get(name, (burst, now_s))
            tokens = min(burst, tokens + max(0.0, now_s - at) * rate_per_s)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now_s)
                return None
            self._buckets[name] = (tokens, now_s)
        return max(1, math.ceil((1.0 - tokens) / rate_per_s))

    def forget(self, name: str) -> None:
        with self._lock:
            self._buckets.pop(name, None)
