"""The head-end's HTTP routes over a running wire-mode system: SLOs, metrics, commands, polls."""

from __future__ import annotations

import datetime as dt
import threading
import warnings

import numpy as np
import pytest

from kenshin.api import create_app
from kenshin.app.system import EmbeddedSystem, build_system
from kenshin.aroute.codec.encode import encode_frame
from kenshin.aroute.codec.envelope import encode_envelope
from kenshin.aroute.frames import FrameType, MeterEvent
from kenshin.core.events import EventCode
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.fleet.simulator import FleetConfig

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from tests.api.auth import authorized

START = dt.datetime(2026, 6, 1, tzinfo=JST)
V1 = "/api/v1"


@pytest.fixture(scope="module")
def running() -> tuple[EmbeddedSystem, TestClient]:
    system = build_system(
        FleetConfig(n_meters=150, start=START, seed=21), aroute="wire", background_writer=False
    )
    system.run(START + dt.timedelta(hours=3))
    system.mdms.flush()
    app = create_app(
        system.store, hes=system.hes, hes_lock=threading.Lock(), control=system.control
    )
    return system, authorized(TestClient(app))


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
        json={"kind": "set_ampere_limit", "value": 40, "idempotency_key": "k-1", "reason": "test"},
    )
    assert response.status_code == 202, response.text
    command = response.json()
    assert command["state"] == "queued" and command["supply_point_id"] == spid
    again = client.post(
        f"{V1}/meters/{spid}/commands",
        json={"kind": "set_ampere_limit", "value": 40, "idempotency_key": "k-1", "reason": "test"},
    )
    assert again.json()["command_id"] == command["command_id"]  # idempotent
    conflict = client.post(
        f"{V1}/meters/{spid}/commands",
        json={"kind": "set_ampere_limit", "value": 30, "idempotency_key": "k-1", "reason": "test"},
    )
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    system.run(system.now + dt.timedelta(minutes=30))
    done = client.get(f"{V1}/hes/commands/{command['command_id']}").json()
    assert done["state"] == "acknowledged" and done["ack_status"] == "ok"


def test_switching_commands_go_signed_and_only_with_the_control_key(running) -> None:
    """Issue 16: the API (the business system's front door) signs a disconnect, reconnect or
    limit with the control key; an API without that key refuses them, and the meter refuses
    what its key did not sign."""
    system, client = running
    spid = _spid(system, Generation.GEN2, (MeterClass.LV_1P2W, MeterClass.LV_1P3W))
    key = int(system.store.find_meter(spid)["meter_key"])
    response = client.post(
        f"{V1}/meters/{spid}/commands", json={"kind": "switch_open", "reason": "test"}
    )
    assert response.status_code == 202, response.text
    record = system.hes.commands.get(response.json()["command_id"])
    assert record.authorization is not None  # signed by the API, carried by the head-end
    system.run(system.now + dt.timedelta(minutes=30))
    assert not system.fleet.meters.switch_closed[key]
    closing = client.post(
        f"{V1}/meters/{spid}/commands", json={"kind": "switch_close", "reason": "test"}
    )
    assert closing.status_code == 202
    system.run(system.now + dt.timedelta(minutes=30))
    assert system.fleet.meters.switch_closed[key]
    # an API holding no control key: refused at once, one clear line, nothing queued
    unsigned = create_app(system.store, hes=system.hes, hes_lock=threading.Lock())
    bare = authorized(TestClient(unsigned))
    before = len(system.hes.commands.list(key, None, 1000, None))
    refused = bare.post(
        f"{V1}/meters/{spid}/commands", json={"kind": "switch_open", "reason": "test"}
    )
    assert refused.status_code == 409 and "control key" in refused.json()["error"]["message"]
    assert len(system.hes.commands.list(key, None, 1000, None)) == before
    # what changes no supply needs no signature
    soft = bare.post(f"{V1}/meters/{spid}/commands", json={"kind": "set_soft_switch", "value": 30})
    assert soft.status_code == 202


def test_a_command_the_meter_cannot_do_is_refused(running) -> None:
    system, client = running
    spid = _spid(system, Generation.GEN2, (MeterClass.HV, MeterClass.EHV))
    response = client.post(
        f"{V1}/meters/{spid}/commands", json={"kind": "switch_open", "reason": "test"}
    )
    assert response.status_code == 409
    body = response.json()
    assert body["error"]["code"] == "command_refused" and "switch" in body["error"]["message"]
    assert body["command"]["state"] == "rejected"


def test_a_forgotten_command_is_answered_from_the_store(running) -> None:
    """The book forgets finished commands; the store's command log keeps every transition
    (issue 16), so a forgotten command still answers — unless its log was never written."""
    system, client = running
    spid = _spid(system, Generation.GEN2, (MeterClass.HV, MeterClass.EHV))

    def refused() -> int:
        body = client.post(
            f"{V1}/meters/{spid}/commands", json={"kind": "switch_open", "reason": "test"}
        ).json()
        return int(body["command"]["command_id"])

    book = system.hes.commands
    logged = refused()
    book.audit.flush()  # type: ignore[attr-defined]  # what tick() does
    unlogged = refused()
    book.prune(book.get(unlogged).completed_at_us + 1)  # what tick() does after keep_finished
    answer = client.get(f"{V1}/hes/commands/{logged}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["kept_in"] == "store" and body["state"] == "rejected"
    assert body["supply_point_id"] == spid and body["kind"] == "switch_open"
    assert [(e["from"], e["to"]) for e in body["log"]] == [
        (None, "requested"),
        ("requested", "rejected"),
    ]
    response = client.get(f"{V1}/hes/commands/{unlogged}")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found" and "no longer kept" in error["message"]
    book.audit.flush()  # type: ignore[attr-defined]


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
        client.post(
            f"{V1}/meters/{nowhere}/commands", json={"kind": "switch_open", "reason": "test"}
        ).json()["error"]["code"]
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


def test_a_meter_event_is_stored_once_and_served_fleet_wide_and_per_meter(running) -> None:
    """An event frame a meter sends (SPEC R1) goes the values' way: authenticated, stored with
    them, a copy delivered again kept once; the API lists it per meter and in the day's report."""
    system, client = running
    field = system.field
    assert field is not None
    key = 7
    spid = str(system.fleet.population.supply_point_id[key])
    at_us = to_epoch_us(START + dt.timedelta(hours=2, minutes=17))
    device = int(field.radio.device_ids[key])

    def send(counter: int) -> int:
        frame = encode_frame(
            FrameType.EVENT,
            device,
            counter,
            MeterEvent(EventCode.POWER_FAIL, at_us, 3),
            system.hes.keys,
        )
        accepted = system.hes.receive_envelope(
            encode_envelope("test-collector", at_us, counter, [frame])
        )
        system.mdms.flush()
        return accepted

    assert send(2**31) == 1
    assert send(2**31) == 0  # the same frame again: a replay, refused
    assert send(2**31 + 1) == 1  # the meter's copy sent again with a new counter: kept once
    body = client.get(
        f"{V1}/meters/{spid}/events", params={"start": "2026-06-01", "end": "2026-06-02"}
    ).json()
    assert body["events"] == [
        {
            "occurred": "2026-06-01T02:17:00+09:00",
            "event": "power_fail",
            "detail": 3,
            "stored": body["events"][0]["stored"],
        }
    ]
    report = client.get(f"{V1}/reports/events", params={"day": "2026-06-01"}).json()
    assert report["summary"]["by_event"] == {"power_fail": 1}
    assert report["items"][0]["supply_point_id"] == spid
    assert report["items"][0]["event"] == "power_fail"
    assert client.get(f"{V1}/reports/events", params={"day": "2026-06-02"}).json()["total"] == 0
    # refused: a period the wrong way round, and one longer than a year
    wrong = client.get(
        f"{V1}/meters/{spid}/events", params={"start": "2026-06-02", "end": "2026-06-01"}
    )
    assert wrong.status_code == 400 and "must be after start" in wrong.json()["error"]["message"]
    long = client.get(
        f"{V1}/meters/{spid}/events", params={"start": "2024-01-01", "end": "2026-06-01"}
    )
    assert long.status_code == 400 and "at most 366 days" in long.json()["error"]["message"]


def test_the_fleets_commands_are_listed_newest_first_with_filters(running) -> None:
    system, client = running
    lv = _spid(system, Generation.GEN2, (MeterClass.LV_1P2W, MeterClass.LV_1P3W))
    hv = _spid(system, Generation.GEN2, (MeterClass.HV,))
    ok = client.post(f"{V1}/meters/{lv}/commands", json={"kind": "set_realtime_5min", "value": 1})
    refused = client.post(
        f"{V1}/meters/{hv}/commands", json={"kind": "switch_open", "reason": "test"}
    )
    assert ok.status_code == 202 and refused.status_code == 409
    listed = client.get(f"{V1}/hes/commands").json()["items"]
    ids = [c["command_id"] for c in listed]
    assert ids == sorted(ids, reverse=True) and ids[0] == refused.json()["command"]["command_id"]
    only = client.get(f"{V1}/hes/commands", params={"state": "rejected"}).json()["items"]
    assert only and {c["state"] for c in only} == {"rejected"}
    assert hv in {c["supply_point_id"] for c in only}
    mine = client.get(
        f"{V1}/hes/commands", params={"supply_point_id": lv, "kind": "set_realtime_5min"}
    )
    assert [c["command_id"] for c in mine.json()["items"]] == [ok.json()["command_id"]]
    csv = client.get(f"{V1}/hes/commands", params={"format": "csv", "limit": 1})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].replace('"', "").startswith("command_id,supply_point_id,kind")
    assert len(lines) == 2
    bad = client.get(f"{V1}/hes/commands", params={"state": "pending"})
    assert bad.status_code == 400 and "unknown command state 'pending'" in bad.text


def test_meters_filter_by_capability(running) -> None:
    system, client = running
    pop = system.fleet.population
    # a switch in single-phase LV meters only: not three-phase LV, HV or EHV (SPEC M6, R5)
    single_phase = np.isin(pop.meter_class, [int(MeterClass.LV_1P2W), int(MeterClass.LV_1P3W)])
    assert 0 < single_phase.sum() < len(single_phase)
    body = client.get(f"{V1}/meters", params={"capability": "switch", "limit": 1000}).json()
    assert body["total"] == int(single_phase.sum())
    bad = client.get(f"{V1}/meters", params={"capability": "teleport"})
    assert bad.status_code == 400 and "unknown capability" in bad.text


def test_the_switching_gate_holds_releases_and_rejects(running) -> None:
    """Issue 16 item 2 through the API: over the operator's threshold a disconnect is held, an
    approver (not the requester) releases or rejects it, and every answer says why."""
    from kenshin.control.gate import ControlLimits
    from kenshin.security.principals import Role

    system, _ = running
    app = create_app(
        system.store,
        hes=system.hes,
        hes_lock=threading.Lock(),
        control=system.control,
        control_limits=ControlLimits(meters_per_actor=1, kw_per_actor=1_000.0),
    )
    operator = authorized(TestClient(app), "op-7", roles=[Role.OPERATOR])
    approver = authorized(TestClient(app), "boss-7", roles=[Role.APPROVER])
    pop = system.fleet.population
    lv = np.flatnonzero(
        (pop.generation == Generation.GEN2)
        & np.isin(pop.meter_class, [int(MeterClass.LV_1P2W), int(MeterClass.LV_1P3W)])
    )
    spids = [str(pop.supply_point_id[int(k)]) for k in lv[5:8]]

    def ask(spid: str, reason: str | None = "arrears, notice served"):  # type: ignore[no-untyped-def]
        body = {"kind": "switch_open", **({"reason": reason} if reason else {})}
        return operator.post(f"{V1}/meters/{spid}/commands", json=body)

    missing = ask(spids[0], None)
    assert missing.status_code == 400 and "needs a reason" in missing.json()["error"]["message"]
    first = ask(spids[0])
    assert first.status_code == 202 and first.json()["state"] == "queued"  # within the limit
    held = ask(spids[1])
    assert held.status_code == 202
    request = held.json()["control_request"]
    assert request["verdict"] == "quarantined" and "2 meters in 60 min by op-7" in request["why"]
    assert request["reason"] == "arrears, notice served" and request["supply_point_ids"] == [
        spids[1]
    ]
    path = f"{V1}/control/requests/{request['request_id']}"
    # the requester cannot release their own; an operator is not an approver at all
    own = operator.post(f"{path}/release")
    assert own.status_code == 403
    released = approver.post(f"{path}/release")
    assert released.status_code == 200, released.text
    assert released.json()["verdict"] == "released" and released.json()["decided_by"] == "boss-7"
    [command_id] = released.json()["command_ids"]
    record = system.hes.commands.get(command_id)
    assert record.authorization is not None and record.requested_by == "op-7+boss-7"
    again = approver.post(f"{path}/release")
    assert again.status_code == 400 and "not held" in again.json()["error"]["message"]
    # a third one, rejected: nothing is sent
    third = ask(spids[2]).json()["control_request"]
    before = len(system.hes.commands.list(None, None, 10_000, None))
    rejected = approver.post(
        f"{V1}/control/requests/{third['request_id']}/reject", json={"why": "wrong customer"}
    )
    assert rejected.json()["verdict"] == "rejected" and "wrong customer" in rejected.json()["why"]
    assert len(system.hes.commands.list(None, None, 10_000, None)) == before
    listed = approver.get(f"{V1}/control/requests", params={"verdict": "quarantined"}).json()
    assert listed["total"] == 0
    assert approver.get(f"{V1}/control/requests").json()["total"] == 3  # no reason: none made
    assert approver.get(f"{V1}/control/requests/999").status_code == 404
    bad = approver.get(f"{V1}/control/requests", params={"verdict": "maybe"})
    assert bad.status_code == 400 and "verdict must be one of" in bad.json()["error"]["message"]
    # what the meter cannot do is refused at once and makes no request in the gate
    hv = _spid(system, Generation.GEN2, (MeterClass.HV, MeterClass.EHV))
    refused = operator.post(
        f"{V1}/meters/{hv}/commands", json={"kind": "switch_open", "reason": "x"}
    )
    assert refused.status_code == 409 and "control_request" not in refused.json()
    assert approver.get(f"{V1}/control/requests").json()["total"] == 3
    # /metrics: the gate's verdicts and the kW at risk that passed (X1)
    scraped = approver.get("/metrics").text
    assert 'kenshin_control_requests_total{verdict="released"} 1.0' in scraped
    assert 'kenshin_control_requests_total{verdict="rejected"} 1.0' in scraped
    assert 'kenshin_control_at_risk_kw{window="1h"}' in scraped
    assert "kenshin_control_emergency 0.0" in scraped
    system.run(system.now + dt.timedelta(minutes=30))
    keys = [int(k) for k in lv[5:8]]
    closed = system.fleet.meters.switch_closed
    assert not closed[keys[0]] and not closed[keys[1]] and closed[keys[2]]
