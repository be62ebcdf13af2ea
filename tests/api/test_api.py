"""The HTTP API over a small hand-built DuckDB store: every endpoint, every error (SPEC S4)."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from fastapi import FastAPI

import kenshin
from kenshin.api import create_app
from kenshin.api.app import STORE_FAILED
from kenshin.api.models import MeterDetail, MeterPage, Readings
from kenshin.core.channels import Channel
from kenshin.core.customers import CustomerType
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.quality import EstimationMethod, Quality, Source
from kenshin.core.schema import METERS_SCHEMA, READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.core.timeslots import JST, Resolution
from kenshin.errors import InvalidSetting, StoreError
from kenshin.mdms.duckdb_store import DuckDBStore

with warnings.catch_warnings():
    # Starlette 1.x wants httpx2 for its test client and warns when it falls back to httpx;
    # with httpx2 installed (a dev dependency to add) nothing is suppressed here
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from tests.api.auth import authorized

LV2 = "0300000000000000000001"  # gen-2 household, Tokyo
LV1 = "0600000000000000000002"  # gen-1 apartment, Kansai (minimum-charge: no ampere contract)
HV = "0300000000000000000003"  # gen-2 HV factory, coefficient 10
NOWHERE = "0300000000000000000099"  # well-formed, not in the roster

DAY = dt.date(2026, 4, 1)
MIDNIGHT = dt.datetime(2026, 4, 1, tzinfo=JST)
LATE = dt.datetime(2026, 4, 3, 12, 0, tzinfo=JST)  # tx time of the correction of slot 10
V1 = "/api/v1"


def _meter(key: int, spid: str, **fields: Any) -> dict[str, Any]:
    row = {
        "meter_key": key,
        "supply_point_id": spid,
        "area": int(spid[:2]),
        "contract_a": 0,
        "contract_kw": 0.0,
        "pv_kw": 0.0,
        "unit_exponent": -2,
        "coefficient": 1,
        "substation": 1,
        "feeder": 11,
        "transformer": 111,
        "sampled_5min": False,
    }
    row.update(fields)
    return row


METERS = [
    _meter(
        1,
        LV2,
        customer_type=CustomerType.HOUSEHOLD_DETACHED,
        meter_class=MeterClass.LV_1P3W,
        generation=Generation.GEN2,
        contract_a=40,
        pv_kw=4.3,
        sampled_5min=True,
    ),
    _meter(
        2,
        LV1,
        customer_type=CustomerType.HOUSEHOLD_APARTMENT,
        meter_class=MeterClass.LV_1P2W,
        generation=Generation.GEN1,
        substation=2,
        feeder=21,
        transformer=212,
    ),
    _meter(
        3,
        HV,
        customer_type=CustomerType.HV_FACTORY,
        meter_class=MeterClass.HV,
        generation=Generation.GEN2,
        contract_kw=500.0,
        coefficient=10,
        transformer=-1,
    ),
]


def _reading(
    key: int,
    end: dt.datetime,
    value: int | None,
    *,
    channel: Channel = Channel.ACTIVE_FORWARD,
    resolution: Resolution = Resolution.MIN30,
    quality: Quality = Quality.VALID,
    source: Source = Source.METER_PUSH,
    method: EstimationMethod = EstimationMethod.NONE,
    tx: dt.datetime | None = None,
) -> dict[str, Any]:
    return {
        "meter_key": key,
        "channel": int(channel),
        "resolution": int(resolution),
        "interval_end": end,
        "value": value,
        "quality": int(quality),
        "source": int(source),
        "method": int(method),
        "tx_time": tx or end + dt.timedelta(minutes=30),
    }


def _slot_end(slot: int, minutes: int = 30) -> dt.datetime:
    return MIDNIGHT + dt.timedelta(minutes=slot * minutes)


def _readings() -> list[dict[str, Any]]:
    rows = []
    for slot in range(1, 49):
        value = 123 if slot == 1 else 100 + slot
        if slot == 20:  # expected, not received
            rows.append(_reading(1, _slot_end(slot), None, quality=Quality.MISSING))
        elif slot == 30:
            rows.append(
                _reading(
                    1,
                    _slot_end(slot),
                    value,
                    quality=Quality.ESTIMATED,
                    source=Source.ESTIMATE,
                    method=EstimationMethod.LINEAR,
                )
            )
        else:
            rows.append(_reading(1, _slot_end(slot), value))
    # a correction of slot 10, learned two days later
    rows.append(
        _reading(1, _slot_end(10), 555, quality=Quality.EDITED, source=Source.MANUAL, tx=LATE)
    )
    rows.append(_reading(1, MIDNIGHT, 999))  # previous day's slot 48: outside the day
    rows.append(_reading(1, _slot_end(49), 888))  # next day's slot 1: outside the day
    for slot, dv in ((1, 1012), (2, 1009)):
        rows.append(
            _reading(1, _slot_end(slot, 5), dv, channel=Channel.VOLTAGE, resolution=Resolution.MIN5)
        )
    rows.append(_reading(3, _slot_end(1), 123))
    rows.append(_reading(3, _slot_end(1), 50, channel=Channel.REACTIVE))
    return rows


@pytest.fixture(scope="module")
def store() -> Iterator[DuckDBStore]:
    s = DuckDBStore(":memory:")
    s.write_meters(pa.Table.from_pylist(METERS, schema=METERS_SCHEMA))
    registers = pa.Table.from_pylist(
        [
            {
                "meter_key": 1,
                "channel": 1,
                "read_at": _slot_end(1),
                "register": 123,
                "source": 1,
                "tx_time": _slot_end(2),
            }
        ],
        schema=REGISTER_READS_SCHEMA,
    )
    s.append(pa.Table.from_pylist(_readings(), schema=READINGS_SCHEMA), registers)
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(store: DuckDBStore) -> Iterator[TestClient]:
    with authorized(TestClient(create_app(store))) as c:
        yield c


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    assert message
    return message


def _day(client: TestClient, spid: str = LV2, **params: str) -> dict[str, Any]:
    params.setdefault("start", "2026-04-01T00:00:00+09:00")
    params.setdefault("end", "2026-04-02T00:00:00+09:00")
    response = client.get(f"{V1}/meters/{spid}/readings", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    Readings.model_validate(body)  # the fast path still matches the documented model
    return body


# --- health ------------------------------------------------------------------------------------


def test_health(client: TestClient) -> None:
    response = client.get(f"{V1}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": kenshin.__version__, "meters": 3}


def test_health_includes_live_status(store: DuckDBStore) -> None:
    def status() -> dict[str, Any]:
        return {"simulated_time": dt.datetime(2026, 4, 1, 12, 0, tzinfo=JST), "readings": 42}

    with authorized(TestClient(create_app(store, status=status))) as c:
        body = c.get(f"{V1}/health").json()
    assert body == {
        "status": "ok",
        "version": kenshin.__version__,
        "meters": 3,
        "simulated_time": "2026-04-01T12:00:00+09:00",
        "readings": 42,
    }


# --- meters ------------------------------------------------------------------------------------


def test_meter_list(client: TestClient) -> None:
    body = client.get(f"{V1}/meters").json()
    MeterPage.model_validate(body)
    assert (body["total"], body["offset"], body["limit"]) == (3, 0, 100)
    assert body["items"] == [
        {
            "supply_point_id": LV2,
            "customer_type": "household_detached",
            "meter_generation": 2,
            "meter_class": "lv_1p3w",
            "area": "03",
            "substation": 1,
            "feeder": 11,
            "transformer": 111,
            "contract_a": 40,
            "contract_kw": None,
            "pv_kw": 4.3,
            "sampled_5min": True,
        },
        {
            "supply_point_id": LV1,
            "customer_type": "household_apartment",
            "meter_generation": 1,
            "meter_class": "lv_1p2w",
            "area": "06",
            "substation": 2,
            "feeder": 21,
            "transformer": 212,
            "contract_a": None,
            "contract_kw": None,
            "pv_kw": 0.0,
            "sampled_5min": False,
        },
        {
            "supply_point_id": HV,
            "customer_type": "hv_factory",
            "meter_generation": 2,
            "meter_class": "hv",
            "area": "03",
            "substation": 1,
            "feeder": 11,
            "transformer": None,
            "contract_a": None,
            "contract_kw": 500.0,
            "pv_kw": 0.0,
            "sampled_5min": False,
        },
    ]


def test_meter_list_pages(client: TestClient) -> None:
    body = client.get(f"{V1}/meters", params={"offset": 1, "limit": 1}).json()
    assert (body["total"], body["offset"], body["limit"]) == (3, 1, 1)
    assert [m["supply_point_id"] for m in body["items"]] == [LV1]
    past_end = client.get(f"{V1}/meters", params={"offset": 5}).json()
    assert (past_end["total"], past_end["items"]) == (3, [])
    assert client.get(f"{V1}/meters", params={"limit": 1000}).status_code == 200


@pytest.mark.parametrize(
    ("params", "name"),
    [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"offset": -1}, "offset")],
)
def test_meter_list_rejects_bad_paging(
    client: TestClient, params: dict[str, int], name: str
) -> None:
    message = _error(client.get(f"{V1}/meters", params=params), 422, "validation_error")
    assert f"query parameter '{name}'" in message


def test_meter_detail_lv_gen2(client: TestClient) -> None:
    body = client.get(f"{V1}/meters/{LV2}").json()
    MeterDetail.model_validate(body)
    assert "meter_key" not in body
    assert body["meter_class"] == "lv_1p3w"
    caps = body["capabilities"]
    assert caps["resolutions_min"] == [30, 15, 5, 1]
    assert caps["channels"] == {
        "30": ["active_forward", "active_reverse"],
        "15": ["active_forward", "active_reverse"],
        "5": ["active_forward", "active_reverse", "reactive", "voltage"],
        "1": ["active_forward"],
    }
    assert caps["retention_min"] == {"30": 45 * 1440, "15": 45 * 1440, "5": 10 * 1440, "1": 60}
    assert caps["aroute_deadline_min"] == 60
    assert caps["broute_media"] == ["wisun", "wifi"]
    assert (caps["has_switch"], caps["max_ampere_limit_a"]) == (True, 120)
    assert (caps["echonet_class"], caps["nominal_voltage_v"]) == ("0x0288", 100)
    assert caps["energy_register"] == {
        "unit_exponent": -2,
        "coefficient": 1,
        "digits": 8,
        "kwh_per_count": 0.01,
    }


def test_meter_detail_gen1_and_hv(client: TestClient) -> None:
    gen1 = client.get(f"{V1}/meters/{LV1}").json()["capabilities"]
    assert gen1["resolutions_min"] == [30]
    assert gen1["channels"] == {"30": ["active_forward", "active_reverse"]}
    assert (gen1["has_switch"], gen1["max_ampere_limit_a"]) == (True, 60)
    hv = client.get(f"{V1}/meters/{HV}").json()
    assert hv["transformer"] is None
    caps = hv["capabilities"]
    assert caps["aroute_deadline_min"] == 30
    assert caps["channels"]["5"] == ["active_forward", "active_reverse", "reactive"]
    assert (caps["has_switch"], caps["max_ampere_limit_a"]) == (False, None)
    assert caps["echonet_class"] == "0x028A"
    assert caps["energy_register"]["coefficient"] == 10
    assert caps["energy_register"]["kwh_per_count"] == 0.1


def test_unknown_meter_is_404(client: TestClient) -> None:
    message = _error(client.get(f"{V1}/meters/{NOWHERE}"), 404, "unknown_meter")
    assert NOWHERE in message
    readings = client.get(f"{V1}/meters/{NOWHERE}/readings", params={"start": "2026-04-01"})
    _error(readings, 404, "unknown_meter")


@pytest.mark.parametrize(
    ("spid", "fragment"),
    [
        ("03000", "must have 22 digits, got 5"),
        ("03000000000000000000x1", "digits only; 'x' at position 21"),
        ("1100000000000000000001", "area codes are 01–10"),
    ],
)
def test_malformed_supply_point_id_is_400(client: TestClient, spid: str, fragment: str) -> None:
    for path in (f"{V1}/meters/{spid}", f"{V1}/meters/{spid}/readings?start=2026-04-01"):
        assert fragment in _error(client.get(path), 400, "invalid_supply_point_id")


# --- readings: happy paths -----------------------------------------------------------------------


def test_one_jst_day_is_48_slots(client: TestClient) -> None:
    body = _day(client)
    assert {k: v for k, v in body.items() if k != "readings"} == {
        "supply_point_id": LV2,
        "channel": "active_forward",
        "resolution_min": 30,
        "unit": "kWh",
        "start": "2026-04-01T00:00:00+09:00",
        "end": "2026-04-02T00:00:00+09:00",
        "as_of": None,
    }
    readings = body["readings"]
    assert [r["slot"] for r in readings] == list(range(1, 49))
    assert {r["date"] for r in readings} == {"2026-04-01"}
    assert readings[0] == {
        "interval_end": "2026-04-01T00:30:00+09:00",
        "date": "2026-04-01",
        "slot": 1,
        "value": 1.23,
        "raw": 123,
        "quality": "valid",
        "source": "meter_push",
        "method": None,
        "failed_rules": [],
        "version": 1,
        "version_time": "2026-04-01T01:00:00+09:00",
    }
    last = readings[47]
    assert (last["interval_end"], last["slot"], last["value"], last["raw"]) == (
        "2026-04-02T00:00:00+09:00",
        48,
        1.48,
        148,
    )


def test_newest_version_wins_and_as_of_shows_the_older(client: TestClient) -> None:
    slot10 = _day(client)["readings"][9]
    assert (slot10["slot"], slot10["value"], slot10["raw"]) == (10, 5.55, 555)
    assert (slot10["quality"], slot10["source"]) == ("edited", "manual")
    assert slot10["version_time"] == "2026-04-03T12:00:00+09:00"

    before = _day(client, as_of="2026-04-02T00:00:00+09:00")
    assert before["as_of"] == "2026-04-02T00:00:00+09:00"
    old = before["readings"][9]
    assert (old["value"], old["raw"], old["quality"], old["source"]) == (
        1.1,
        110,
        "valid",
        "meter_push",
    )
    assert old["version_time"] == "2026-04-01T05:30:00+09:00"
    # as_of is inclusive of the correction's own tx time
    assert _day(client, as_of=LATE.isoformat())["readings"][9]["raw"] == 555
    # before anything was known there is nothing
    assert _day(client, as_of="2026-04-01")["readings"] == []


def test_missing_and_estimated_values(client: TestClient) -> None:
    readings = _day(client)["readings"]
    missing, estimated = readings[19], readings[29]
    assert (missing["slot"], missing["value"], missing["raw"], missing["quality"]) == (
        20,
        None,
        None,
        "missing",
    )
    assert (estimated["quality"], estimated["source"], estimated["method"]) == (
        "estimated",
        "estimate",
        "linear",
    )
    assert estimated["value"] == 1.3


@pytest.mark.parametrize(
    "query",
    [
        "start=2026-04-01",  # a date is 00:00 JST; end defaults to one day later
        "start=2026-04-01&end=2026-04-02",
        "start=2026-04-01T00:00&end=2026-04-02T00:00",  # naive = JST
        "start=2026-03-31T15:00:00Z&end=2026-04-01T15:00:00%2B00:00",
        "start=2026-04-01T00:00:00%2B09:00&end=2026-04-02T00:00:00%2B09:00",
        "start=2026-04-01T00:00:00+09:00",  # an unencoded '+' arrives as a space
        "start=2026-04-01&channel=1&resolution=30min",
    ],
)
def test_time_and_parameter_forms(client: TestClient, query: str) -> None:
    response = client.get(f"{V1}/meters/{LV2}/readings?{query}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["start"], body["end"]) == (
        "2026-04-01T00:00:00+09:00",
        "2026-04-02T00:00:00+09:00",
    )
    assert (body["channel"], body["resolution_min"]) == ("active_forward", 30)
    assert len(body["readings"]) == 48


def test_partial_period_excludes_start_includes_end(client: TestClient) -> None:
    body = _day(client, start="2026-04-01T00:30:00+09:00", end="2026-04-01T01:30:00+09:00")
    assert [(r["slot"], r["raw"]) for r in body["readings"]] == [(2, 102), (3, 103)]


def test_value_stamped_midnight_is_previous_days_last_slot(client: TestClient) -> None:
    body = _day(client, start="2026-03-31T23:30:00+09:00", end="2026-04-01T00:30:00+09:00")
    assert [(r["date"], r["slot"], r["raw"]) for r in body["readings"]] == [
        ("2026-03-31", 48, 999),
        ("2026-04-01", 1, 123),
    ]


def test_voltage_in_volts(client: TestClient) -> None:
    body = _day(client, channel="voltage", resolution="5", end="2026-04-01T00:10:00+09:00")
    assert (body["unit"], body["resolution_min"], body["channel"]) == ("V", 5, "voltage")
    assert [(r["slot"], r["value"], r["raw"]) for r in body["readings"]] == [
        (1, 101.2, 1012),
        (2, 100.9, 1009),
    ]
    assert body["readings"][0]["interval_end"] == "2026-04-01T00:05:00+09:00"


def test_hv_values_use_the_meters_coefficient(client: TestClient) -> None:
    active = _day(client, HV)["readings"]
    assert [(r["slot"], r["value"], r["raw"]) for r in active] == [(1, 12.3, 123)]
    reactive = _day(client, HV, channel="reactive")
    assert reactive["unit"] == "kvarh"
    assert [(r["value"], r["raw"]) for r in reactive["readings"]] == [(5.0, 50)]


def test_recorded_channel_without_values_is_empty(client: TestClient) -> None:
    assert _day(client, LV1)["readings"] == []
    assert _day(client, channel="active_reverse")["readings"] == []


# --- readings: errors ----------------------------------------------------------------------------


def _readings_error(client: TestClient, status: int, code: str, **params: str) -> str:
    response = client.get(f"{V1}/meters/{LV2}/readings", params=params)
    return _error(response, status, code)


def test_bad_channel_and_resolution(client: TestClient) -> None:
    message = _readings_error(client, 400, "invalid_input", start="2026-04-01", channel="power")
    assert "unknown channel 'power'" in message
    assert "active_forward" in message
    message = _readings_error(client, 400, "invalid_input", start="2026-04-01", resolution="7")
    assert "resolution must be one of 1, 5, 15, 30" in message


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"start": "yesterday"}, "start must be an ISO-8601 date"),
        ({"start": "2026-04-01", "end": "2026-13-01"}, "end must be an ISO-8601 date"),
        ({"start": "2026-04-02", "end": "2026-04-01"}, "must be after start"),
        ({"start": "2026-04-01", "end": "2026-04-01T00:00+09:00"}, "must be after start"),
    ],
)
def test_bad_period(client: TestClient, params: dict[str, str], fragment: str) -> None:
    assert fragment in _readings_error(client, 400, "invalid_period", **params)


def test_bad_as_of(client: TestClient) -> None:
    message = _readings_error(client, 400, "invalid_input", start="2026-04-01", as_of="later")
    assert "as_of must be an ISO-8601" in message


def test_without_a_period_the_day_up_to_the_newest_value_is_served(client: TestClient) -> None:
    body = client.get(f"{V1}/meters/{LV2}/readings").json()
    # the newest stored 30-min value of LV2 ends 2026-04-02 00:30 (slot 1 of April 2)
    assert body["end"] == "2026-04-02T00:30:00+09:00"
    assert body["start"] == "2026-04-01T00:30:00+09:00"
    assert body["readings"][-1]["interval_end"] == body["end"]
    only_end = client.get(f"{V1}/meters/{LV2}/readings", params={"end": "2026-04-02"}).json()
    assert only_end["start"] == "2026-04-01T00:00:00+09:00"
    assert len(only_end["readings"]) == 48


def test_without_a_period_and_without_values_is_400(client: TestClient) -> None:
    response = client.get(f"{V1}/meters/{LV2}/readings", params={"channel": "active_reverse"})
    assert "pass start and end" in _error(response, 400, "invalid_period")


@pytest.mark.parametrize(
    ("resolution", "end", "limit"),
    [("30", "2027-04-03", "366 day"), ("5", "2026-05-03", "31 day"), ("1", "2026-04-03", "1 day")],
)
def test_period_too_long(client: TestClient, resolution: str, end: str, limit: str) -> None:
    message = _readings_error(
        client, 400, "period_too_long", start="2026-04-01", end=end, resolution=resolution
    )
    assert f"at most {limit}" in message


def test_longest_period_is_allowed(client: TestClient) -> None:
    assert len(_day(client, start="2026-04-01", end="2027-04-02")["readings"]) == 49


def test_max_days_override(store: DuckDBStore) -> None:
    with authorized(TestClient(create_app(store, max_days={30: 2}))) as c:
        params = {"start": "2026-04-01", "end": "2026-04-04"}
        message = _error(
            c.get(f"{V1}/meters/{LV2}/readings", params=params), 400, "period_too_long"
        )
        assert "at most 2 day" in message
        params["end"] = "2026-04-03"
        assert c.get(f"{V1}/meters/{LV2}/readings", params=params).status_code == 200


@pytest.mark.parametrize("max_days", [{30: 0}, {7: 3}])
def test_bad_max_days_setting(store: DuckDBStore, max_days: dict[int, int]) -> None:
    with pytest.raises(InvalidSetting):
        create_app(store, max_days=max_days)


@pytest.mark.parametrize(
    ("spid", "channel", "resolution", "fragment"),
    [
        (LV1, "active_forward", "5", "generation-1 lv_1p2w meter does not record active_forward"),
        (LV1, "reactive", "30", "does not record reactive at 30-min"),
        (HV, "voltage", "5", "generation-2 hv meter does not record voltage at 5-min"),
        (LV2, "voltage", "30", "does not record voltage at 30-min"),
    ],
)
def test_channel_not_recorded(
    client: TestClient, spid: str, channel: str, resolution: str, fragment: str
) -> None:
    response = client.get(
        f"{V1}/meters/{spid}/readings",
        params={"start": "2026-04-01", "channel": channel, "resolution": resolution},
    )
    message = _error(response, 400, "not_recorded")
    assert fragment in message
    assert "it records 30-min: active_forward" in message
    # without a period the answer is the same, not "no values are stored yet"
    bare = client.get(
        f"{V1}/meters/{spid}/readings", params={"channel": channel, "resolution": resolution}
    )
    assert fragment in _error(bare, 400, "not_recorded")


# --- the rest of the HTTP surface --------------------------------------------------------------


def test_unknown_path_is_json_404(client: TestClient) -> None:
    for path in ("/nowhere", f"{V1}/nowhere", "/api/v2/health"):
        assert "/api/v1/" in _error(client.get(path), 404, "not_found")


def test_wrong_method_is_json_405(client: TestClient) -> None:
    response = client.post(f"{V1}/health")
    _error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_need_no_network(client: TestClient, page: str) -> None:
    """Swagger UI and ReDoc come from the package (air-gapped labs): every script, style and
    image the page loads is served by the API itself, and is there."""
    import re

    html = client.get(page)
    assert html.status_code == 200
    references = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
    assert references, "the page loads nothing: the test would prove nothing"
    external = [r for r in references if "://" in r or r.startswith("//")]
    assert external == [], f"{page} loads from the network: {external}"
    for reference in references:
        assert client.get(reference).status_code == 200, reference


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {
        f"{V1}/health",
        f"{V1}/meters",
        f"{V1}/meters/{{supply_point_id}}",
        f"{V1}/meters/{{supply_point_id}}/readings",
        f"{V1}/meters/{{supply_point_id}}/readings/versions",
        f"{V1}/meters/{{supply_point_id}}/differences",
        f"{V1}/meters/{{supply_point_id}}/readings/edits",
        f"{V1}/meters/{{supply_point_id}}/gaps",
        f"{V1}/meters/{{supply_point_id}}/events",
        f"{V1}/meters/{{supply_point_id}}/outages",
        f"{V1}/outages",
        f"{V1}/outages/{{event_id}}",
        f"{V1}/outages/indices",
        f"{V1}/meters/{{supply_point_id}}/broute-credentials",
        f"{V1}/reports/{{kind}}",
        "/oauth/token",
        "/.well-known/jwks.json",
        f"{V1}/login",
        f"{V1}/whoami",
        f"{V1}/password",
        f"{V1}/audit",
        f"{V1}/principals",
        f"{V1}/connections",
        f"{V1}/principals/{{name}}/disconnect",
        f"{V1}/principals/{{name}}/reconnect",
        f"{V1}/principals/{{name}}/secret",
        f"{V1}/security/keys/rotate",
    }
    assert_documented(paths)


def assert_documented(paths: object) -> None:
    """Every route the app serves has its section in docs/api.md (issue 13: "docs/api.md
    lists every route")."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    missing = []
    for path in paths:  # type: ignore[attr-defined]
        shown = str(path).replace("{kind}", "{late|estimated|gaps|events}")
        if f"`{shown}" not in text and f" {shown}`" not in text and f" {shown}?" not in text:
            missing.append(path)
    assert missing == []


class _BrokenStore(DuckDBStore):
    def meter_count(self) -> int:
        raise StoreError("database is locked")

    def list_meters(self, offset: int, limit: int) -> list[dict[str, Any]]:
        raise RuntimeError("a bug")


def test_store_failure_is_503_and_bugs_are_json_500(caplog: pytest.LogCaptureFixture) -> None:
    broken = _BrokenStore(":memory:")
    try:
        app: FastAPI = create_app(broken)
        with authorized(TestClient(app, raise_server_exceptions=False)) as c:
            message = _error(c.get(f"{V1}/health"), 503, "store_unavailable")
            # the store's own words (a file, a DSN, SQL) go to the log, not to the client (X3)
            assert message == STORE_FAILED
            assert "database is locked" in caplog.text
            _error(c.get(f"{V1}/meters"), 500, "internal_error")
    finally:
        broken.close()
