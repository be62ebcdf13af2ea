"""Who may call what (issue 14; SPEC X2, X3, X6): every route × every staff role, organisation
type and device against an expectation table written here from the issue's rules (not read from
the policy module), anonymous calls, cross-organisation reads, the kill switch, forged and
expired tokens, rate limits and the audit trail.

The expectations, in words: readers (viewer, engineer, operator, approver) read meter data and
the system's state; engineers also edit values; operators also command meters, poll and issue
B-route credentials; security admins manage principals, keys and the audit trail and read no
customer data; an organisation reads only the supply points it serves (others are unknown to it:
404), and nothing fleet-wide or operational; nobody but health, the token endpoints, the keys and
the docs answers without a token.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from kenshin.core.timeslots import JST
from kenshin.security.policy import OPEN, POLICY
from kenshin.security.principals import Kind, Party, Principal, Role
from tests.api.auth import register, token_for
from tests.api.conftest import World

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")

START = dt.datetime(2026, 6, 1, tzinfo=JST)
V1 = "/api/v1"
READERS = {"viewer", "engineer", "operator", "approver"}
STAFF_ROLES = [r.value for r in Role]

# route → (staff roles allowed, organisations and devices allowed on their own supply points)
EXPECTED: dict[tuple[str, str], tuple[set[str], bool]] = {
    ("GET", f"{V1}/meters"): (READERS, True),
    ("GET", f"{V1}/meters/{{supply_point_id}}"): (READERS, True),
    ("GET", f"{V1}/meters/{{supply_point_id}}/readings"): (READERS, True),
    ("GET", f"{V1}/meters/{{supply_point_id}}/readings/versions"): (READERS, True),
    ("GET", f"{V1}/meters/{{supply_point_id}}/differences"): (READERS, True),
    ("GET", f"{V1}/meters/{{supply_point_id}}/events"): (READERS, True),
    ("GET", f"{V1}/meters/{{supply_point_id}}/gaps"): (READERS, False),
    ("GET", f"{V1}/meters/{{supply_point_id}}/readings/edits"): (READERS, False),
    ("POST", f"{V1}/meters/{{supply_point_id}}/readings/edits"): ({"engineer", "operator"}, False),
    ("GET", f"{V1}/meters/{{supply_point_id}}/broute-credentials"): ({"operator"}, False),
    ("POST", f"{V1}/meters/{{supply_point_id}}/broute-credentials"): ({"operator"}, False),
    ("POST", f"{V1}/meters/{{supply_point_id}}/commands"): ({"operator"}, False),
    ("GET", f"{V1}/reports/{{kind}}"): (READERS, False),
    ("GET", f"{V1}/outages"): (READERS, False),
    ("GET", f"{V1}/outages/{{event_id}}"): (READERS, False),
    ("GET", f"{V1}/outages/indices"): (READERS, False),
    ("GET", f"{V1}/control/requests"): (READERS, False),
    ("GET", f"{V1}/control/requests/{{request_id}}"): (READERS, False),
    ("POST", f"{V1}/control/requests/{{request_id}}/release"): ({"approver"}, False),
    ("POST", f"{V1}/control/requests/{{request_id}}/reject"): ({"approver"}, False),
    ("GET", f"{V1}/campaigns"): (READERS, False),
    ("GET", f"{V1}/campaigns/{{campaign_id}}"): (READERS, False),
    ("POST", f"{V1}/campaigns"): ({"operator"}, False),
    ("POST", f"{V1}/campaigns/{{campaign_id}}/approve"): ({"approver"}, False),
    ("POST", f"{V1}/campaigns/{{campaign_id}}/reject"): ({"approver"}, False),
    ("POST", f"{V1}/campaigns/{{campaign_id}}/abort"): ({"operator", "approver"}, False),
    ("GET", f"{V1}/meters/{{supply_point_id}}/outages"): (READERS, True),
    ("GET", f"{V1}/hes/slo"): (READERS, False),
    ("GET", f"{V1}/hes/commands"): (READERS, False),
    ("GET", f"{V1}/hes/commands/{{command_id}}"): (READERS, False),
    ("POST", f"{V1}/hes/polls"): ({"operator"}, False),
    ("GET", f"{V1}/hes/polls/{{poll_id}}"): (READERS, False),
    ("GET", "/metrics"): (READERS | {"security_admin"}, False),
    ("GET", f"{V1}/audit"): ({"security_admin"}, False),
    ("GET", f"{V1}/principals"): ({"security_admin"}, False),
    ("GET", f"{V1}/connections"): ({"security_admin"}, False),
    ("POST", f"{V1}/principals"): ({"security_admin"}, False),
    ("POST", f"{V1}/principals/{{name}}/disconnect"): ({"security_admin"}, False),
    ("POST", f"{V1}/principals/{{name}}/reconnect"): ({"security_admin"}, False),
    ("POST", f"{V1}/principals/{{name}}/secret"): ({"security_admin"}, False),
    ("POST", f"{V1}/security/keys/rotate"): ({"security_admin"}, False),
    ("GET", f"{V1}/whoami"): (set(STAFF_ROLES), True),
    ("POST", f"{V1}/password"): (set(STAFF_ROLES), False),
}


def _call(w: World, method: str, template: str, spid: str, token: str | None) -> Any:
    path = (
        template.replace("{supply_point_id}", spid)
        .replace("{kind}", "late")
        .replace("{command_id}", "1")
        .replace("{event_id}", "1")
        .replace("{poll_id}", "1")
        .replace("{name}", "target")
    )
    params: dict[str, str] = {}
    if path.endswith(("/versions", "/differences")):
        params = {"start": "2026-06-01"}
    if "/reports/" in path:
        params = {"day": "2026-06-01"}
    body: dict[str, Any] | None = None
    if method == "POST":
        body = {
            "edits": {
                "reason": "matrix",
                "values": [{"interval_end": "2026-06-01T01:00:00+09:00", "raw": 1}],
            },
            "commands": {"kind": "set_realtime_5min", "value": 1},
            "polls": {"supply_point_ids": [spid]},
            "principals": {"name": "made-in-matrix", "kind": "staff", "roles": ["viewer"]},
            "disconnect": {"reason": "matrix"},
            "reconnect": {"reason": "matrix"},
        }.get(path.rsplit("/", 1)[-1], {})
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return w.client.request(method, path, params=params, json=body, headers=headers)


def _refused(response: Any) -> bool:
    if response.status_code in (401, 403):
        return True
    return response.status_code == 404 and response.json()["error"]["code"] == "unknown_meter"


def test_every_route_is_in_the_policy_and_in_this_table(world: World) -> None:
    served = set()
    for path, item in world.client.get("/openapi.json").json()["paths"].items():
        served |= {(method.upper(), path) for method in item}
    served.add(("GET", "/metrics"))  # not in the schema (include_in_schema=False)
    unknown = {r for r in served if r not in POLICY and r not in OPEN}
    assert unknown == set(), "routes in no access policy (they would be refused to everyone)"
    assert set(POLICY) == set(EXPECTED)
    text = (Path(__file__).parents[2] / "docs" / "security.md").read_text(encoding="utf-8")
    undocumented = [r for r in POLICY if f"`{r[0]} {r[1]}`" not in text]
    assert undocumented == [], "routes missing from docs/security.md's policy table"


@pytest.mark.parametrize("route", sorted(EXPECTED), ids=lambda r: f"{r[0]} {r[1]}")
def test_the_matrix(world: World, route: tuple[str, str]) -> None:
    method, template = route
    staff, parties = EXPECTED[route]
    anonymous = _call(world, method, template, world.own[0], None)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    for name, token in world.tokens.items():
        response = _call(world, method, template, world.own[0], token)
        assert response.status_code < 500, (name, response.text)
        if name.startswith("staff-"):
            allowed = name.removeprefix("staff-").replace("-", "_") in staff
        else:
            allowed = parties
        assert _refused(response) is not allowed, (name, response.status_code, response.text)
        if not name.startswith("staff-") and "{supply_point_id}" in template:
            # another party's customer: never data, and not told that it exists
            foreign = _call(world, method, template, world.other[0], token)
            assert foreign.status_code in (403, 404), (name, foreign.text)
            assert "readings" not in foreign.json() and "supply_point_id" not in foreign.json()


def test_an_organisation_lists_only_its_own_meters(world: World) -> None:
    token = world.token("party-retailer")
    body = world.client.get(
        f"{V1}/meters", params={"limit": 1000}, headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert sorted(m["supply_point_id"] for m in body["items"]) == sorted(world.own)
    assert body["total"] == 2


def test_tokens_forged_expired_or_in_the_url_are_refused(world: World) -> None:
    client = world.client
    good = world.token("staff-viewer")
    head, claims, signature = good.split(".")
    body = json.loads(base64.urlsafe_b64decode(claims + "=="))
    body["sub"] = "staff-security-admin"  # promoted by hand: the signature no longer fits
    forged_claims = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    for bad in (
        f"{head}.{forged_claims}.{signature}",
        f"{unsigned}.{claims}.",
        good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        "not-a-token",
    ):
        answer = client.get(f"{V1}/hes/slo", headers={"Authorization": f"Bearer {bad}"})
        assert answer.status_code == 401, bad
    in_url = client.get(f"{V1}/hes/slo", params={"access_token": good})
    assert in_url.status_code == 400 and in_url.json()["error"]["code"] == "token_in_url"
    security = client.app.state.security  # type: ignore[attr-defined]
    later = security.now
    try:
        security.now = lambda: later() + 3600  # an hour on: the 10-minute token has expired
        expired = client.get(f"{V1}/hes/slo", headers={"Authorization": f"Bearer {good}"})
        assert expired.status_code == 401 and "expired" in expired.text
    finally:
        security.now = later


def test_the_kill_switch_acts_on_the_next_request_and_old_tokens_stay_dead(world: World) -> None:
    client = world.client
    name = "partner-x"
    secret = register(
        client, name, Kind.DEVICE, party=Party.PARTNER_SERVER, supply_points=world.own
    )
    token = token_for(client, name, secret)
    mine = {"Authorization": f"Bearer {token}"}
    admin = {"Authorization": f"Bearer {world.token('staff-security-admin')}"}
    assert client.get(f"{V1}/meters/{world.own[0]}", headers=mine).status_code == 200
    cut = client.post(
        f"{V1}/principals/{name}/disconnect", json={"reason": "traffic spike"}, headers=admin
    )
    assert cut.status_code == 200 and cut.json()["active"] is False
    started = time.monotonic()
    refused = client.get(f"{V1}/meters/{world.own[0]}", headers=mine)
    assert refused.status_code in (401, 403)
    assert time.monotonic() - started < 1.0
    form = {"grant_type": "client_credentials", "client_id": name, "client_secret": secret}
    assert client.post("/oauth/token", data=form).status_code == 400  # no new token either
    back = client.post(
        f"{V1}/principals/{name}/reconnect", json={"reason": "cleared"}, headers=admin
    )
    assert back.status_code == 200
    assert client.get(f"{V1}/meters/{world.own[0]}", headers=mine).status_code == 401  # old token
    fresh = {"Authorization": f"Bearer {token_for(client, name, secret)}"}
    assert client.get(f"{V1}/meters/{world.own[0]}", headers=fresh).status_code == 200
    trail = client.get(f"{V1}/audit", params={"principal": "staff-security-admin"}, headers=admin)
    incidents = [r for r in trail.json()["items"] if r["method"] == "KILL-SWITCH"]
    assert [(r["route"], r["path"], r["reason"]) for r in incidents][-2:] == [
        ("disconnect", name, "traffic spike"),
        ("reconnect", name, "cleared"),
    ]


def test_rate_limits_answer_429_with_retry_after(world: World) -> None:
    client = world.client
    secret = register(client, "slow-client", roles=[Role.VIEWER], rate_per_s=1.0)
    headers = {"Authorization": f"Bearer {token_for(client, 'slow-client', secret)}"}
    statuses = [client.get(f"{V1}/whoami", headers=headers).status_code for _ in range(4)]
    assert statuses[:2] == [200, 200] and 429 in statuses[2:]
    limited = client.get(f"{V1}/whoami", headers=headers)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


def test_the_audit_trail_names_who_what_and_the_result_and_keeps_no_secret(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    client = world.client
    secret = register(
        client, "auditee", Kind.ORGANISATION, party=Party.RETAILER, supply_points=world.own
    )
    token = token_for(client, "auditee", secret)
    headers = {"Authorization": f"Bearer {token}"}
    client.get(f"{V1}/meters/{world.own[1]}/readings", headers=headers)  # served
    client.get(f"{V1}/meters/{world.other[1]}/readings", headers=headers)  # not theirs
    client.get(f"{V1}/hes/slo", headers=headers)  # not for organisations
    admin = {"Authorization": f"Bearer {world.token('staff-security-admin')}"}
    rows = client.get(f"{V1}/audit", params={"principal": "auditee"}, headers=admin).json()["items"]
    assert (rows[0]["route"], rows[0]["status"]) == ("/oauth/token", 200)  # the token it got
    rows = rows[1:]
    seen = [(r["route"], r["meters"], r["status"]) for r in rows]
    assert seen == [
        (f"{V1}/meters/{{supply_point_id}}/readings", world.own[1], 200),
        (f"{V1}/meters/{{supply_point_id}}/readings", world.other[1], 404),
        (f"{V1}/hes/slo", "", 403),
    ]
    assert rows[1]["reason"] and rows[2]["reason"] == "for the utility's staff only"
    csv_text = client.get(f"{V1}/audit", params={"format": "csv"}, headers=admin).text
    everything = csv_text + json.dumps(rows) + caplog.text
    everything += client.get(f"{V1}/principals", headers=admin).text
    assert secret not in everything and token not in everything
    principal = client.app.state.security.get("auditee")  # type: ignore[attr-defined]
    assert isinstance(principal, Principal) and "argon2" not in repr(principal)
    viewer = {"Authorization": f"Bearer {world.token('staff-viewer')}"}
    assert client.get(f"{V1}/audit", headers=viewer).status_code == 403


def test_jwks_publishes_the_keys_and_a_rotation_keeps_old_tokens_valid(world: World) -> None:
    client = world.client
    viewer = {"Authorization": f"Bearer {world.token('staff-viewer')}"}
    admin = {"Authorization": f"Bearer {world.token('staff-security-admin')}"}
    before = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    kid = client.post(f"{V1}/security/keys/rotate", headers=admin).json()["kid"]
    after = client.get("/.well-known/jwks.json").json()["keys"]
    assert {k["kid"] for k in after} == before | {kid}
    assert all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and "d" not in k for k in after)
    assert client.get(f"{V1}/whoami", headers=viewer).status_code == 200  # signed by the old key


def test_probing_and_guessing_raise_alerts_that_the_admin_sees(world: World) -> None:
    client = world.client
    secret = register(client, "prober", Kind.ORGANISATION, party=Party.AGGREGATOR)
    headers = {"Authorization": f"Bearer {token_for(client, 'prober', secret)}"}
    spids = [str(s) for s in world.system.fleet.population.supply_point_id]
    for spid in spids[:25]:  # none of them its own
        assert client.get(f"{V1}/meters/{spid}", headers=headers).status_code == 404
    for _ in range(20):  # someone guessing a secret
        form = {"grant_type": "client_credentials", "client_id": "prober", "client_secret": "x"}
        assert client.post("/oauth/token", data=form).status_code == 401
    admin = {"Authorization": f"Bearer {world.token('staff-security-admin')}"}
    listed = client.get(f"{V1}/connections", headers=admin).json()["items"]
    prober = next(c for c in listed if c["name"] == "prober")
    assert prober["party"] == "aggregator" and prober["active"] is True
    traffic = prober["traffic"]
    assert traffic["refusals"] == 45 and traffic["window_supply_points"] == 0
    assert [a["kind"] for a in traffic["alerts"]] == ["refusals"]  # once in the window
    trail = client.get(f"{V1}/audit", params={"principal": "prober"}, headers=admin).json()
    assert [r["route"] for r in trail["items"] if r["method"] == "ALERT"] == ["refusals"]
    asked = [r["status"] for r in trail["items"] if r["route"] == "/oauth/token"]
    assert asked == [200] + [401] * 20  # its own token, then the guesses


def test_a_person_changes_their_password_and_logs_in_again(world: World) -> None:
    client = world.client
    secret = register(client, "person-p", roles=[Role.VIEWER])
    login = client.post(f"{V1}/login", json={"name": "person-p", "password": secret})
    assert login.status_code == 200 and login.headers["cache-control"] == "no-store"
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    short = client.post(f"{V1}/password", json={"current": secret, "new": "short"}, headers=headers)
    assert short.status_code == 400 and "at least 12" in short.text
    wrong = client.post(
        f"{V1}/password", json={"current": "nope", "new": "a-long-new-password"}, headers=headers
    )
    assert wrong.status_code == 403  # the token is good; the password is not
    done = client.post(
        f"{V1}/password", json={"current": secret, "new": "a-long-new-password"}, headers=headers
    )
    assert done.status_code == 200, done.text
    assert client.get(f"{V1}/whoami", headers=headers).status_code == 401  # log in again
    old = client.post(f"{V1}/login", json={"name": "person-p", "password": secret})
    assert old.status_code == 401
    new = client.post(f"{V1}/login", json={"name": "person-p", "password": "a-long-new-password"})
    assert new.status_code == 200
