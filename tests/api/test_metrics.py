"""``/metrics`` beyond the head-end (issue 13 item 8): every route's latency under its template,
the process's own figures, and the MDMS and VEE figures of a running system, which agree with
what the store and the sweep say."""

from __future__ import annotations

import datetime as dt
import re

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from kenshin.api.app import create_app
from kenshin.app.figures import mdms_figures
from kenshin.app.system import build_system
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import FleetConfig
from tests.api.auth import authorized

START = dt.datetime(2026, 4, 6, tzinfo=JST)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_a_running_system_reports_its_mdms_the_api_and_the_process(tmp_path) -> None:
    system = build_system(FleetConfig(n_meters=120, start=START, seed=4), tmp_path / "m.duckdb")
    try:
        system.run(START + dt.timedelta(days=2))
        app = create_app(system.store, figures=lambda: mdms_figures(system.mdms, system.schedule))
        with authorized(TestClient(app)) as client:
            spid = client.get("/api/v1/meters", params={"limit": 1}).json()["items"][0][
                "supply_point_id"
            ]
            for _ in range(3):
                client.get(f"/api/v1/meters/{spid}/readings", params={"start": "2026-04-06"})
            client.get("/api/v1/meters/0300000000000000000000/readings")  # 404
            text = client.get("/metrics").text
        got = samples(text)
        latest = system.schedule.sweeps[-1] if system.schedule else None
        stored = system.mdms.stats.rows_stored
    finally:
        system.close()
    template = "/api/v1/meters/{supply_point_id}/readings"
    ok = (("method", "GET"), ("route", template), ("status", "200"))
    assert got[("kenshin_api_request_seconds_count", ok)] == 3
    missing = (("method", "GET"), ("route", template), ("status", "404"))
    assert got[("kenshin_api_request_seconds_count", missing)] == 1
    assert not re.search(r'route="/api/v1/meters/\d', text)  # ids never become series
    assert got[("process_resident_memory_bytes", ())] > 10_000_000
    assert got[("kenshin_mdms_values_stored_total", ())] == stored > 0
    assert latest is not None and latest.day == dt.date(2026, 4, 7)
    assert (
        got[("kenshin_mdms_vee_latest_values", (("quality", "valid"),))] == latest.quality["valid"]
    )
    assert got[("kenshin_mdms_gaps_open", ())] == latest.gaps
    assert got[("kenshin_mdms_vee_days_swept_total", ())] >= 2
