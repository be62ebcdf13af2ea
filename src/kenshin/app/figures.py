"""What the running MDMS reports to ``/metrics`` (issue 13 item 8): what was stored, what VEE
found in the latest swept day, the gaps open. Read from the live objects at each scrape."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kenshin.api.metrics import Figure
from kenshin.app.outages import OutageMonitor
from kenshin.mdms.scheduler import MdmsSchedule
from kenshin.mdms.service import MeterDataService


def mdms_figures(mdms: MeterDataService, schedule: MdmsSchedule | None) -> Mapping[str, Figure]:
    stats = mdms.stats
    figures = {
        "kenshin_mdms_values_stored": Figure(
            "counter", "Interval values stored (new versions)", {(): stats.rows_stored}
        ),
        "kenshin_mdms_register_reads_stored": Figure(
            "counter", "Register reads stored", {(): stats.registers_stored}
        ),
        "kenshin_mdms_repeats_dropped": Figure(
            "counter",
            "Re-read and poll answers equal to what was stored (no new version)",
            {(): stats.repeats_dropped},
        ),
        "kenshin_mdms_late_values_held": Figure(
            "counter",
            "Values of late frames the store held already",
            {(): stats.late_dropped},
        ),
    }
    if schedule is None:
        return figures
    figures["kenshin_mdms_vee_days_swept"] = Figure(
        "counter",
        "Day sweeps run (every channel and resolution)",
        {(): len(schedule.sweeps) + len(schedule.other_sweeps)},
    )
    if schedule.sweeps:
        latest = schedule.sweeps[-1]  # forward 30-min values of the latest swept day
        figures["kenshin_mdms_vee_latest_values"] = Figure(
            "gauge",
            "Forward 30-min values of the latest swept day, by quality",
            {(quality,): count for quality, count in latest.quality.items()},
            ("quality",),
        )
        figures["kenshin_mdms_vee_latest_rules"] = Figure(
            "gauge",
            "VEE rules raised in the latest swept day (forward 30-min), by rule",
            {(rule,): count for rule, count in latest.rules.items()},
            ("rule",),
        )
        figures["kenshin_mdms_gaps_open"] = Figure(
            "gauge", "Slots of the latest swept day still to re-read", {(): latest.gaps}
        )
    return figures


def outage_figures(monitor: OutageMonitor | None) -> Mapping[str, Figure]:
    """The outage engine's state (issue 15): open events by state and level, customers out."""
    if monitor is None:
        return {}
    open_events = monitor.engine.open_events
    by: dict[tuple[str, ...], int] = {}
    for event in open_events:
        key = (event.state.value, event.level)
        by[key] = by.get(key, 0) + 1
    detected = [e for e in monitor.engine.events if e.confirmed_us is not None]
    # first evidence → confirmed, by level (a nested event is found after its parent came
    # back: not a detection latency)
    detect: dict[str, list[float]] = {}
    for event in detected:
        if event.nested_in is None and event.confirmed_us is not None:
            seconds = (event.confirmed_us - event.started_us) / 1e6
            detect.setdefault(event.level, []).append(seconds)
    latency: dict[tuple[str, ...], float] = {
        (level, str(q)): float(np.quantile(values, q))
        for level, values in detect.items()
        for q in (0.5, 0.95)
    }
    figures = {
        "kenshin_outage_detection_latency_seconds": Figure(
            "gauge",
            "First evidence to confirmation of the events since the start, by level (quantiles)",
            latency,
            ("level", "quantile"),
        ),
        "kenshin_outage_events_open": Figure(
            "gauge", "Outage events not yet restored, by state and level", by, ("state", "level")
        ),
        "kenshin_outage_customers_out": Figure(
            "gauge", "Customers in open outage events", {(): monitor.customers_out()}
        ),
        "kenshin_outage_events_confirmed": Figure(
            "counter", "Outage events confirmed since the start", {(): len(detected)}
        ),
        "kenshin_outage_storm_mode": Figure(
            "gauge",
            "1 while so many meters are silent that only proof accuses a device",
            {(): int(monitor.engine.storm)},
        ),
    }
    return figures
