"""Prometheus metrics of one head-end worker (SPEC X5: monitoring of what crosses the A-route).

Each :class:`HesMetrics` has its own registry, so several head-ends in one process (tests, the
embedded system) never collide; the API serves it at ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from kenshin.aroute.frames import RejectReason


class HesMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_accepted = Counter(
            "kenshin_hes_frames_accepted", "Meter frames authenticated and accepted", registry=r
        )
        self.frames_rejected = Counter(
            "kenshin_hes_frames_rejected",
            "Meter frames refused, by reason; their content is never stored",
            ["reason"],
            registry=r,
        )
        for reason in RejectReason:  # every reason shows, at 0, from the start
            self.frames_rejected.labels(reason=reason.label)
        self.frames_redelivered = Counter(
            "kenshin_hes_frames_redelivered",
            "Frames accepted before that came again in a redelivered transport message",
            registry=r,
        )
        self.frames_late = Counter(
            "kenshin_hes_frames_late",
            "Value frames older than their meter's replay window (a worker was down); their "
            "values are stored where the store had none",
            registry=r,
        )
        self.envelopes_rejected = Counter(
            "kenshin_hes_envelopes_rejected",
            "Collector envelopes that could not be parsed",
            registry=r,
        )
        self.values_stored = Counter(
            "kenshin_hes_values_stored", "Interval values handed to the MDMS", registry=r
        )
        self.rereads = Counter(
            "kenshin_hes_rereads_requested",
            "Re-send requests for values missing after their slot",
            ["duty"],
            registry=r,
        )
        self.on_time_share = Gauge(
            "kenshin_hes_on_time_share",
            "Share of expected values delivered by the deadline, latest judged day",
            ["duty"],
            registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
