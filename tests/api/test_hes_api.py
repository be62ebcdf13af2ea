"""The head-end's HTTP routes over a running wire-mode system: SLOs, metrics, commands, polls."""

from __future__ import annotations

import datetime as dt
import threading
import warnings

import numpy as np
import pytest

from kenshin.api import create_app
from kenshin.app.system import EmbeddedSystem, build_system
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import FleetConfig

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

START = dt.datetime(2026, 6, 1, tzinfo=JST)
V1 = "/api/v1"


@pytest.fixture(scope="module")
def running() -> tuple[EmbeddedSystem, TestClient]:
    system = build_system(
        FleetConfig(n_meters=150, start=START, seed=21), aroute="wire", background_writer=False
    )
    system.run(START + dt.timedelta(hours=3))
    system.mdms.flush()
    app = create_app(system.store, hes=system.hes, hes_lock=threading.Lock())
    return system, TestClient(app)


def _spid(system: EmbeddedSystem, generation: Generation, classes: tuple[MeterClass, ...]) -> str:
    pop = system.fleet.population
    ok = (pop.generation == generation) & np.isin(pop.meter_class, [int(c) for c in classes])
    return str(pop.supply_point_id[int(np.flatnonzero(ok)[0])])


def test_slo_reports_each_duty_by_day(running) -> None:
    system, client = running
    body = client.get(f"{V1}/hes/slo").json()
    a1 = [d for d in body["days"] if d["duty"] == "A1"]
    assert a1 and a1[0]["day"] == "2026-06-01"
    assert a1[0]["expected"] == 150 * 4  # slots ending 00:30 … 02:00 are judged after 60 min
    assert 0.99 <= a1[0]["on_time_share"] <= 1.0
    assert sum(a1[0]["delay_counts"]) <= a1[0]["expected"]
    assert len(body["delay_bucket_upper_edges_s"]) == len(a1[0]["delay_counts"])
    assert body["deadlines_s"]["A1_lv"] == 3600 and body["deadlines_s"]["A3"] == 600
    assert body["frames"]["accepted"] == system.hes.stats.frames_accepted


def test_metrics_are_prometheus_text(running) -> None:
    _, client = running
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert "kenshin_hes_frames_accepted_total" in text
    assert 'kenshin_hes_frames_rejected_total{reason="auth_failed"}' in text
    assert 'kenshin_hes_on_time_share{duty="A1"}' in text


def test_a_command_is_queued_then_acknowledged(running) -> None:
    system, client = running
    spid = _spid(system, Generation.GEN2, (MeterClass.LV_1P2W, MeterClass.LV_1P3W))
    response = client.post(
        f"{V1}/meters/{spid}/commands",
        json={"kind": "set_ampere_limit", "value": 40, "idempotency_key": "k-1"},
    )
    assert response.status_code == 202, response.text
    command = response.json()
    assert command["state"] == "queued" and command["supply_point_id"] == spid
    again = client.post(
        f"{V1}/meters/{spid}/commands",
        json={"kind": "set_ampere_limit", "value": 40, "idempotency_key": "k-1"},
    )
    assert again.json()["command_id"] == command["command_id"]  # idempotent
    conflict = client.post(
        f"{V1}/meters/{spid}/commands",
        json={"kind": "set_ampere_limit", "value": 30, "idempotency_key": "k-1"},
    )
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    system.run(system.now + dt.timedelta(minutes=30))
    done = client.get(f"{V1}/hes/commands/{command['command_id']}").json()
    assert done["state"] == "acknowledged" and done["ack_status"] == "ok"


def test_a_command_the_meter_cannot_do_is_refused(running) -> None:
    system, client = running
    spid = _spid(system, Generation.GEN2, (MeterClass.HV, MeterClass.EHV))
    response = client.post(f"{V1}/meters/{spid}/commands", json={"kind": "switch_open"})
    assert response.status_code == 409
    body = response.json()
    assert body["error"]["code"] == "command_refused" and "switch" in body["error"]["message"]
    assert body["command"]["state"] == "rejected"


def test_a_forgotten_command_is_not_found(running) -> None:
    system, client = running
    spid = _spid(system, Generation.GEN2, (MeterClass.HV, MeterClass.EHV))
    refused = client.post(f"{V1}/meters/{spid}/commands", json={"kind": "switch_open"}).json()
    command_id = refused["command"]["command_id"]
    book = system.hes.commands
    book.prune(book.get(command_id).completed_at_us + 1)  # what tick() does after keep_finished
    response = client.get(f"{V1}/hes/commands/{command_id}")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found" and "no longer kept" in error["message"]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"kind": "self_destruct"}, 400, "invalid_input"),
        ({"kind": "set_ampere_limit"}, 400, "invalid_input"),
        ({"value": 3}, 422, None),
    ],
)
def test_bad_command_requests(running, payload, status, code) -> None:
    system, client = running
    spid = str(system.fleet.population.supply_point_id[0])
    response = client.post(f"{V1}/meters/{spid}/commands", json=payload)
    assert response.status_code == status
    if code:
        assert response.json()["error"]["code"] == code


def test_unknown_meter_and_command(running) -> None:
    _, client = running
    nowhere = "0300000000000000000099"
    assert (
        client.post(f"{V1}/meters/{nowhere}/commands", json={"kind": "switch_open"}).json()[
            "error"
        ]["code"]
        == "unknown_meter"
    )
    assert client.get(f"{V1}/hes/commands/999999").status_code == 404
    assert client.get(f"{V1}/hes/polls/999999").status_code == 404


def test_poll_some_meters(running) -> None:
    system, client = running
    spids = [str(s) for s in system.fleet.population.supply_point_id[:4]]
    poll = client.post(f"{V1}/hes/polls", json={"supply_point_ids": spids}).json()
    assert poll["meters"] == 4
    system.run(system.now + dt.timedelta(minutes=15))
    result = client.get(f"{V1}/hes/polls/{poll['poll_id']}").json()
    assert result["summary"]["answered"] == 4
    for item in result["results"]:
        assert item["state"] == "answered" and item["response"]["forward_register"] >= 0


def test_a_polled_hv_meter_reports_no_voltage(running) -> None:
    """An HV meter measures no supply voltage (IT switches do): null, not 0 V; an LV one does."""
    system, client = running
    population = system.fleet.population
    hv = int(np.flatnonzero(population.meter_class >= MeterClass.HV)[0])
    lv = int(np.flatnonzero(population.meter_class < MeterClass.HV)[0])
    spids = [str(population.supply_point_id[k]) for k in (hv, lv)]
    poll = client.post(f"{V1}/hes/polls", json={"supply_point_ids": spids}).json()
    system.run(system.now + dt.timedelta(minutes=15))
    result = client.get(f"{V1}/hes/polls/{poll['poll_id']}").json()
    by_spid = {item["supply_point_id"]: item["response"] for item in result["results"]}
    assert by_spid[spids[0]]["voltage_v"] is None
    assert by_spid[spids[1]]["voltage_v"] > 80  # about 100 V or 200 V


def test_every_head_end_route_is_documented(running: tuple[EmbeddedSystem, TestClient]) -> None:
    from tests.api.test_api import assert_documented

    _, client = running
    paths = set(client.get("/openapi.json").json()["paths"]) | {"/metrics"}
    assert any("/hes/" in p for p in paths)
    assert_documented(paths)
