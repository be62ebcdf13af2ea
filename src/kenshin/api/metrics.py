"""Prometheus metrics of the API process beyond the head-end's (issue 13 item 8; SPEC X5): the
latency of every route, the process itself (CPU, memory, open files: prometheus_client's own
collectors), and the MDMS and VEE figures the running system reports.

Each :class:`ApiMetrics` has its own registry (several apps in one process never collide);
``/metrics`` serves it together with the head-end's (:class:`kenshin.hes.metrics.HesMetrics`).
The MDMS figures are read when scraped from a ``figures()`` callable of the composition root,
so nothing is counted twice and the MDMS does not depend on Prometheus.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure a running part reports: a counter (only rises) or a gauge, with labels."""

    kind: str  # "counter" or "gauge"
    help: str
    values: Mapping[tuple[str, ...], float] = field(default_factory=dict)  # labels → value
    label_names: tuple[str, ...] = ()


Figures = Callable[[], Mapping[str, Figure]]


class FiguresCollector(Collector):
    """Turns ``figures()`` into metric families at each scrape."""

    def __init__(self, figures: Figures) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        for name, figure in self._figures().items():
            family: CounterMetricFamily | GaugeMetricFamily
            if figure.kind == "counter":
                family = CounterMetricFamily(name, figure.help, labels=list(figure.label_names))
            else:
                family = GaugeMetricFamily(name, figure.help, labels=list(figure.label_names))
            for labels, value in figure.values.items():
                family.add_metric(list(labels), value)
            yield family


class ApiMetrics:
    def __init__(self, figures: Figures | None = None) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.latency = Histogram(
            "kenshin_api_request_seconds",
            "Time to answer an HTTP request, by route template, method and status",
            ["route", "method", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        if figures is not None:
            self.registry.register(FiguresCollector(figures))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Time each request under its route's template (``/meters/{supply_point_id}``), so a
        scan of many ids makes no new series."""
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.latency.labels(template, request.method, str(status)).observe(
                time.perf_counter() - started
            )
