"""B-route credentials over the HTTP API: issued once, reissue revokes, no password shown (B4)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from kenshin.api import create_app
from kenshin.broute.credentials import CredentialRegistry
from kenshin.core.schema import METERS_SCHEMA
from kenshin.mdms.duckdb_store import DuckDBStore
from tests.api.test_api import HV, LV1, LV2, METERS, NOWHERE

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from tests.api.auth import authorized

V1 = "/api/v1"
HEX = set("0123456789ABCDEF")


def url(spid: str) -> str:
    return f"{V1}/meters/{spid}/broute-credentials"


@pytest.fixture(scope="module")
def store() -> Iterator[DuckDBStore]:
    s = DuckDBStore(":memory:")
    s.write_meters(pa.Table.from_pylist(METERS, schema=METERS_SCHEMA))
    yield s
    s.close()


@pytest.fixture
def client(store: DuckDBStore) -> Iterator[TestClient]:
    with authorized(TestClient(create_app(store))) as c:  # a fresh in-memory registry per test
        yield c


def registry_of(client: TestClient) -> CredentialRegistry:
    registry = client.app.state.broute_credentials  # type: ignore[attr-defined]
    assert isinstance(registry, CredentialRegistry)
    return registry


def error_code(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    code: str = response.json()["error"]["code"]
    return code


def test_issue_returns_the_pair_once_and_get_hides_the_password(client: TestClient) -> None:
    response = client.post(url(LV2))
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"supply_point_id", "route_id", "password", "issued_at", "reissued"}
    assert body["supply_point_id"] == LV2 and body["reissued"] is False
    assert len(body["route_id"]) == 32 and set(body["route_id"]) <= HEX  # SPEC B4
    assert len(body["password"]) == 12 and body["password"].isalnum()
    assert registry_of(client).verify(LV2, body["route_id"], body["password"])

    shown = client.get(url(LV2))
    assert shown.status_code == 200
    assert shown.json() == {
        "supply_point_id": LV2,
        "route_id": body["route_id"],
        "issued_at": body["issued_at"],
    }
    assert body["password"] not in shown.text
    issued = dt.datetime.fromisoformat(shown.json()["issued_at"])
    assert abs(issued - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_reissue_revokes_the_old_pair_only_when_asked(client: TestClient) -> None:
    old = client.post(url(HV)).json()
    again = client.post(url(HV))  # a repeated click must not cut off the customer's HEMS
    assert error_code(again, 409) == "already_exists"
    assert "reissue=true" in again.json()["error"]["message"]
    assert registry_of(client).verify(HV, old["route_id"], old["password"])
    new = client.post(url(HV), params={"reissue": "true"})
    assert new.status_code == 201 and new.json()["reissued"] is True
    fresh = new.json()
    assert fresh["route_id"] != old["route_id"]
    registry = registry_of(client)
    assert not registry.verify(HV, old["route_id"], old["password"])
    assert registry.verify(HV, fresh["route_id"], fresh["password"])
    assert client.get(url(HV)).json()["route_id"] == fresh["route_id"]
    assert registry.current(LV1) is None  # the other meters are untouched


def test_unknown_meters_and_bad_ids(client: TestClient) -> None:
    assert error_code(client.post(url(NOWHERE)), 404) == "unknown_meter"
    assert error_code(client.get(url(NOWHERE)), 404) == "unknown_meter"
    assert registry_of(client).current(NOWHERE) is None  # nothing issued for it
    assert error_code(client.get(url(LV1)), 404) == "not_found"  # a meter, nothing issued yet
    assert error_code(client.post(url("123")), 400) == "invalid_supply_point_id"
    assert error_code(client.put(url(LV1)), 405) == "method_not_allowed"


def test_credentials_persist_in_the_configured_file(store: DuckDBStore, tmp_path: Path) -> None:
    path = tmp_path / "kenshin-broute.json"
    with authorized(TestClient(create_app(store, broute_credentials=path))) as first:
        issued = first.post(url(LV1)).json()
    saved = json.loads(path.read_text())["credentials"]
    assert [(c["supply_point_id"], c["route_id"]) for c in saved] == [(LV1, issued["route_id"])]
    with authorized(TestClient(create_app(store, broute_credentials=path))) as second:  # a restart
        assert second.get(url(LV1)).json()["route_id"] == issued["route_id"]
        assert registry_of(second).verify(LV1, issued["route_id"], issued["password"])


def test_each_issue_is_logged_without_the_password(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kenshin.broute.access")
    first = client.post(url(LV2)).json()
    second = client.post(url(LV2), params={"reissue": "true"}).json()
    api_lines = [r.getMessage() for r in caplog.records if "via the API" in r.getMessage()]
    assert len(api_lines) == 2
    assert api_lines[0].startswith(f"B-route credentials issued for {LV2}")
    assert api_lines[1].startswith(f"B-route credentials reissued for {LV2}")
    assert "client testclient" in api_lines[0]
    for record in caplog.records:
        assert first["password"] not in record.getMessage()
        assert second["password"] not in record.getMessage()


def test_issued_at_is_the_systems_time_in_jst(store: DuckDBStore) -> None:
    """In kenshin up the API's clock is simulated: credentials are dated by it, in JST."""
    import datetime as dt

    simulated = dt.datetime(2026, 4, 3, 15, 30, tzinfo=dt.UTC)
    with authorized(TestClient(create_app(store, clock=lambda: simulated))) as client:
        issued = client.post(url(LV1)).json()["issued_at"]
    assert issued == "2026-04-04T00:30:00+09:00"
