"""GET /meters/{id}/differences (SPEC S3): the smart meter's values less its specified
sub-meters', per slot with its label, version and inputs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from kenshin.api.app import create_app
from kenshin.core.channels import Channel
from kenshin.core.schema import METERS_SCHEMA, READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.core.specified import SPECIFIED_SCHEMA, SpecifiedKind
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.mdms.differences import run_differences
from kenshin.mdms.duckdb_store import DuckDBStore
from tests.api.auth import authorized
from tests.api.test_api import DAY, LV1, LV2, METERS, NOWHERE, V1, _reading, _readings, _slot_end

RUN_AT = dt.datetime(2026, 4, 4, 2, 0, tzinfo=JST)  # after the correction of slot 10
PV_ID, EV_ID = 300_000_000_000_011, 300_000_000_000_012


@pytest.fixture
def client() -> Iterator[TestClient]:
    store = DuckDBStore(":memory:")
    store.write_meters(pa.Table.from_pylist(METERS, schema=METERS_SCHEMA))
    store.write_specified(
        pa.Table.from_pylist(
            [
                {
                    "meter_key": 11,
                    "parent_key": 1,
                    "kind": SpecifiedKind.PV_INVERTER,
                    "device_id": PV_ID,
                },
                {
                    "meter_key": 12,
                    "parent_key": 1,
                    "kind": SpecifiedKind.EV_CHARGER,
                    "device_id": EV_ID,
                },
            ],
            schema=SPECIFIED_SCHEMA,
        )
    )
    rows = _readings()  # meter 1: 100 + slot, slot 20 missing, 30 estimated, 10 edited to 555
    for slot in range(1, 49):
        sunny = 21 <= slot <= 30
        end = _slot_end(slot)
        rows.append(_reading(1, end, 50 if sunny else 0, channel=Channel.ACTIVE_REVERSE))
        rows.append(_reading(11, end, 100 if sunny else 0))
        rows.append(_reading(12, end, 20))
    table = pa.Table.from_pylist([dict(r, failed_rule=0) for r in rows], schema=READINGS_SCHEMA)
    store.append(table, REGISTER_READS_SCHEMA.empty_table())
    run_differences(store, DAY, now_us=to_epoch_us(RUN_AT))
    with authorized(TestClient(create_app(store))) as c:
        yield c
    store.close()


def test_differences_per_slot_with_inputs(client: TestClient) -> None:
    response = client.get(f"{V1}/meters/{LV2}/differences", params={"start": "2026-04-01"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["channel"], body["unit"], body["resolution_min"]) == (
        "difference_forward",
        "kWh",
        30,
    )
    assert body["specified_meters"] == [
        {"device_id": str(PV_ID), "kind": "pv_inverter"},
        {"device_id": str(EV_ID), "kind": "ev_charger"},
    ]
    assert body["formula"] == (
        f"active_forward − active_reverse + pv_inverter:{PV_ID} − ev_charger:{EV_ID}"
    )
    slots = body["differences"]
    assert len(slots) == 48
    first = slots[0]
    assert first["interval_end"] == "2026-04-01T00:30:00+09:00"
    # 123 − 0 + 0 − 20 counts of 0.01 kWh
    assert (first["raw"], first["value"], first["quality"], first["failed_rules"]) == (
        103,
        1.03,
        "valid",
        [],
    )
    assert first["version"] == 1
    assert first["version_time"] == "2026-04-04T02:00:00+09:00"
    assert [(i["sign"], i["value"], i["quality"]) for i in first["inputs"]] == [
        (1, 1.23, "valid"),
        (-1, 0.0, "valid"),
        (1, 0.0, "valid"),
        (-1, 0.2, "valid"),
    ]
    assert first["inputs"][0] == {
        "meter": "main",
        "channel": "active_forward",
        "sign": 1,
        "value": 1.23,
        "raw": 123,
        "quality": "valid",
    }
    assert first["inputs"][3]["device_id"] == str(EV_ID)
    assert slots[24]["raw"] == 125 - 50 + 100 - 20  # sunny: the house's own consumption
    assert slots[9]["raw"] == 555 - 20  # the edited main value counts as accepted
    missing = slots[19]
    assert (missing["raw"], missing["value"], missing["quality"]) == (None, None, "missing")
    assert missing["failed_rules"] == ["missing"]
    assert missing["inputs"][0]["value"] is None
    assert slots[29]["quality"] == "estimated"


def test_as_of_before_the_run_shows_nothing(client: TestClient) -> None:
    body = client.get(
        f"{V1}/meters/{LV2}/differences",
        params={"start": "2026-04-01", "as_of": "2026-04-04T01:00:00"},
    ).json()
    assert body["differences"] == []
    assert body["as_of"] == "2026-04-04T01:00:00+09:00"
    assert len(body["specified_meters"]) == 2


def test_default_period_is_the_day_up_to_the_newest_difference(client: TestClient) -> None:
    body = client.get(f"{V1}/meters/{LV2}/differences").json()
    assert body["end"] == "2026-04-02T00:00:00+09:00"
    assert len(body["differences"]) == 48


def test_a_meter_without_sub_meters_and_an_unknown_meter(client: TestClient) -> None:
    body = client.get(f"{V1}/meters/{LV1}/differences", params={"start": "2026-04-01"}).json()
    assert body["specified_meters"] == []
    assert body["differences"] == []
    assert body["formula"] is None
    assert client.get(f"{V1}/meters/{NOWHERE}/differences").status_code == 404
