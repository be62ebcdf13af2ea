"""``/api/v1/campaigns`` (issue 16 item 4): asked by an operator, approved or rejected by another
person, followed per 5 minutes while it runs, stopped with a rollback; every error case answers
with its status and one clear message, and creates nothing."""

from __future__ import annotations

import threading
import warnings

import pytest

from kenshin.api import create_app
from kenshin.security.principals import Role
from tests.api.auth import authorized
from tests.control.test_campaigns import DAY, _run_to, _system

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

V1 = "/api/v1"


def _body(**changes: object) -> dict[str, object]:
    return {
        "reason": "supply shortfall",
        "target_mw": 0.04,
        "start": f"{DAY}T17:30:00",
        "end": f"{DAY}T19:00:00+09:00",
        "area": "tokyo",
    } | changes


@pytest.fixture(scope="module")
def world():  # type: ignore[no-untyped-def]
    system = _system()
    _run_to(system, 17)
    app = create_app(
        system.store,
        hes=system.hes,
        hes_lock=threading.Lock(),
        control=system.control,
        campaigns=system.campaigns,
    )
    clients = {
        name: authorized(TestClient(app, raise_server_exceptions=False), name, roles)
        for name, roles in {
            "op": [Role.OPERATOR],
            "boss": [Role.APPROVER],
            "both": [Role.OPERATOR, Role.APPROVER],
            "viewer": [Role.VIEWER],
        }.items()
    }
    yield system, clients
    system.close()


def _message(response) -> str:  # type: ignore[no-untyped-def]
    return str(response.json()["error"]["message"])


@pytest.mark.parametrize(
    ("changes", "status", "message"),
    [
        ({"target_mw": 0}, 422, "target_mw"),
        ({"reason": ""}, 422, "reason"),
        ({"rule": "most"}, 422, "rule"),
        ({"end": f"{DAY}T18:15:00"}, 400, "on a half hour"),
        ({"start": f"{DAY}T10:00:00", "end": f"{DAY}T11:00:00"}, 400, "the period is over"),
        ({"area": "atlantis"}, 400, "atlantis"),
        ({"area": "kyushu"}, 400, "no meter in area"),
        ({"floor_a": 7}, 400, "floor must be an ampere step"),
        ({"priority_supply_point_ids": ["0300000000000000000000"]}, 404, "no meter"),
        ({"priority_supply_point_ids": ["nonsense"]}, 400, "supply point id"),
    ],
)
def test_bad_campaigns_are_refused_and_create_nothing(world, changes, status, message) -> None:  # type: ignore[no-untyped-def]
    system, clients = world
    before = len(system.store.read_control_records("campaign"))
    response = clients["op"].post(f"{V1}/campaigns", json=_body(**changes))
    assert response.status_code == status, response.text
    assert message in response.text
    assert len(system.store.read_control_records("campaign")) == before


def test_a_campaign_through_the_api(world) -> None:  # type: ignore[no-untyped-def]
    system, clients = world
    op, boss, both, viewer = (clients[n] for n in ("op", "boss", "both", "viewer"))
    asked = op.post(f"{V1}/campaigns", json=_body())
    assert asked.status_code == 201, asked.text
    campaign = asked.json()
    assert campaign["state"] == "pending" and campaign["actor"] == "op"
    assert campaign["target_mw"] == 0.04 and campaign["area"] == "tokyo"
    path = f"{V1}/campaigns/{campaign['campaign_id']}"
    assert viewer.post(f"{V1}/campaigns", json=_body()).status_code == 403
    assert op.post(f"{path}/approve").status_code == 403  # an operator is not an approver
    own = both.post(f"{V1}/campaigns", json=_body(reason="second", rule="all")).json()
    assert campaign["rule"] == "few" and own["rule"] == "all"  # the default, and as asked
    refused = both.post(f"{V1}/campaigns/{own['campaign_id']}/approve")
    assert refused.status_code == 403 and "someone other than who asked" in _message(refused)
    rejected = boss.post(
        f"{V1}/campaigns/{own['campaign_id']}/reject", json={"why": "one is enough"}
    )
    assert rejected.json()["state"] == "rejected"
    again = boss.post(f"{V1}/campaigns/{own['campaign_id']}/reject")
    assert again.status_code == 400 and "not pending" in _message(again)
    approved = boss.post(f"{path}/approve")
    assert approved.status_code == 200 and approved.json()["approved_by"] == "boss"
    _run_to(system, 18, 0)
    running = viewer.get(path).json()
    assert running["state"] == "running" and running["meters_touched"] > 0
    assert [p["at"][11:16] for p in running["per_5min"]] == [
        "17:35", "17:40", "17:45", "17:50", "17:55"
    ]  # fmt: skip
    assert all(p["planned_kw"] > 0 for p in running["per_5min"])
    assert running["commands"].get("acknowledged", 0) > 0 and running["control_requests"]
    listed = viewer.get(f"{V1}/campaigns", params={"state": "running"}).json()
    assert [c["campaign_id"] for c in listed["items"]] == [campaign["campaign_id"]]
    bad = viewer.get(f"{V1}/campaigns", params={"state": "sleeping"})
    assert bad.status_code == 400 and "state must be one of" in _message(bad)
    assert viewer.get(f"{V1}/campaigns/999").status_code == 404
    assert viewer.post(f"{path}/abort").status_code == 403
    stopped = op.post(f"{path}/abort", json={"why": "supply back"})
    assert stopped.status_code == 200 and stopped.json()["state"] == "aborted"
    assert "supply back" in stopped.json()["why"]
    metrics = viewer.get("/metrics")
    assert metrics.status_code == 200, metrics.text
    assert 'kenshin_campaigns{state="aborted"} 1' in metrics.text
    assert 'kenshin_campaigns{state="rejected"} 1' in metrics.text
    twice = op.post(f"{path}/abort")
    assert twice.status_code == 400 and "nothing to stop" in _message(twice)
