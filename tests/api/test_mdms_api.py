"""MDMS routes: manual edits with their audit, every version of a value, the gap list."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from kenshin.api.app import create_app
from kenshin.core.channels import Channel
from kenshin.core.schema import METERS_SCHEMA, READINGS_SCHEMA, REGISTER_READS_SCHEMA, TIMESTAMP
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.mdms import versions
from kenshin.mdms.duckdb_store import DuckDBStore
from tests.api.auth import authorized
from tests.api.test_api import LV2, METERS, NOWHERE, V1, _readings, _slot_end

EDIT_TIME = dt.datetime(2026, 4, 5, 9, 0, tzinfo=JST)


@pytest.fixture
def client() -> Iterator[TestClient]:
    store = DuckDBStore(":memory:")
    store.write_meters(pa.Table.from_pylist(METERS, schema=METERS_SCHEMA))
    rows = [dict(r, failed_rule=0) for r in _readings()]
    store.append(pa.Table.from_pylist(rows, schema=READINGS_SCHEMA), _no_registers())
    with authorized(TestClient(create_app(store, clock=lambda: EDIT_TIME))) as c:
        yield c
    store.close()


def _no_registers() -> pa.Table:
    return REGISTER_READS_SCHEMA.empty_table()


def _edit(client: TestClient, **overrides: object) -> object:
    body = {
        "reason": "meter face read by the customer",
        "editor": "operator-7",
        "values": [{"interval_end": "2026-04-01T05:00:00+09:00", "raw": 777}],
    }
    body.update(overrides)
    return client.post(f"{V1}/meters/{LV2}/readings/edits", json=body)


def test_a_manual_edit_is_a_new_version_with_an_audit_row(client: TestClient) -> None:
    response = _edit(client)
    assert response.status_code == 201, response.text
    audit = response.json()["edits"]
    assert len(audit) == 1
    assert audit[0]["new_value"] == 777
    assert audit[0]["old_value"] == 555  # slot 10: 110 sent, corrected to 555 on 3 April
    assert audit[0]["reason"] == "meter face read by the customer"
    # the editor is who the token speaks for, not what the body claims (OWASP API3)
    assert audit[0]["editor"] == "tester"
    assert audit[0]["tx_time"] == "2026-04-05T09:00:00+09:00"

    day = client.get(f"{V1}/meters/{LV2}/readings", params={"start": "2026-04-01"}).json()
    slot10 = day["readings"][9]
    assert (slot10["raw"], slot10["quality"], slot10["source"]) == (777, "edited", "manual")
    assert slot10["version"] == 3
    before = client.get(
        f"{V1}/meters/{LV2}/readings",
        params={"start": "2026-04-01", "as_of": "2026-04-05T08:00:00"},
    ).json()
    assert before["readings"][9]["raw"] == 555

    history = client.get(
        f"{V1}/meters/{LV2}/readings/versions",
        params={"start": "2026-04-01T04:30:00", "end": "2026-04-01T05:00:00"},
    ).json()["versions"]
    assert [(v["version"], v["raw"], v["quality"]) for v in history] == [
        (1, 110, "valid"),
        (2, 555, "edited"),
        (3, 777, "edited"),
    ]
    listed = client.get(f"{V1}/meters/{LV2}/readings/edits").json()["edits"]
    assert [e["new_value"] for e in listed] == [777]


def test_an_edit_needs_a_reason_and_slot_ends(client: TestClient) -> None:
    assert _edit(client, reason="").status_code == 422
    off_grid = _edit(client, values=[{"interval_end": "2026-04-01T05:10:00+09:00", "raw": 1}])
    assert off_grid.status_code == 400
    assert "grid" in off_grid.json()["error"]["message"]
    assert (
        client.post(
            f"{V1}/meters/{NOWHERE}/readings/edits",
            json={
                "reason": "r",
                "editor": "e",
                "values": [{"interval_end": "2026-04-01", "raw": 1}],
            },
        ).status_code
        == 404
    )
    # nothing was stored by the refused requests
    assert client.get(f"{V1}/meters/{LV2}/readings/edits").json()["edits"] == []


def test_gap_list_is_empty_before_any_sweep(client: TestClient) -> None:
    assert client.get(f"{V1}/meters/{LV2}/gaps").json() == {"supply_point_id": LV2, "gaps": []}
    assert client.get(f"{V1}/meters/{NOWHERE}/gaps").status_code == 404


def test_gaps_written_by_a_sweep_are_listed() -> None:
    store = DuckDBStore(":memory:")
    store.write_meters(pa.Table.from_pylist(METERS, schema=METERS_SCHEMA))
    end = to_epoch_us(_slot_end(20))
    gaps = pa.Table.from_arrays(
        [
            pa.array([1], pa.int32()),
            pa.array([1], pa.uint8()),
            pa.array([30], pa.uint8()),
            pa.array([end]).cast(TIMESTAMP),
            pa.array([to_epoch_us(EDIT_TIME)]).cast(TIMESTAMP),
        ],
        schema=versions.GAPS_SCHEMA,
    )
    start = to_epoch_us(_slot_end(0))
    store.replace_gaps(
        Channel.ACTIVE_FORWARD, Resolution.MIN30, start, start + 86_400 * 10**6, gaps
    )
    with authorized(TestClient(create_app(store))) as c:
        body = c.get(f"{V1}/meters/{LV2}/gaps").json()
    assert body["gaps"] == [
        {
            "channel": 1,
            "resolution_min": 30,
            "interval_end": "2026-04-01T10:00:00+09:00",
            "found_at": "2026-04-05T09:00:00+09:00",
        }
    ]
    store.close()


def test_a_read_only_server_refuses_edits_clearly() -> None:
    """kenshin serve opens its store read-only: an edit is refused with a reason, not a 503."""
    store = DuckDBStore(":memory:")
    store.write_meters(pa.Table.from_pylist(METERS, schema=METERS_SCHEMA))
    with authorized(TestClient(create_app(store, read_only=True))) as client:
        response = _edit(client)
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "read_only"
        assert "kenshin up" in response.json()["error"]["message"]
        assert client.get(f"{V1}/meters/{LV2}/readings/edits").json()["edits"] == []
    store.close()
