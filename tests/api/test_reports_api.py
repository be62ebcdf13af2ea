"""``/api/v1/reports/{kind}`` and the roster's filters (issue 13 item 2): paged JSON, the whole
report as CSV with the same rows, clear refusals; over the hand-built day of
``tests/mdms/test_reports.py``."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from kenshin.api.app import create_app
from kenshin.core.timeslots import from_epoch_us
from kenshin.mdms.duckdb_store import DuckDBStore
from tests.api.auth import authorized
from tests.mdms.test_reports import DAY, HV_METER, NOW, fill

V1 = "/api/v1"


@pytest.fixture
def client() -> Iterator[TestClient]:
    store = DuckDBStore(":memory:")
    fill(store)
    with authorized(TestClient(create_app(store, clock=lambda: from_epoch_us(NOW)))) as c:
        yield c
    store.close()


def _get(client: TestClient, kind: str, **params: object) -> dict:  # type: ignore[type-arg]
    response = client.get(f"{V1}/reports/{kind}", params={"day": str(DAY), **params})
    assert response.status_code == 200, response.text
    body: dict = response.json()  # type: ignore[type-arg]
    return body


def test_pages_cover_the_report_once(client: TestClient) -> None:
    whole = _get(client, "late")
    assert whole["total"] == 51 and whole["summary"]["late"] == 3
    pages = [_get(client, "late", offset=o, limit=20)["items"] for o in (0, 20, 40)]
    assert [len(p) for p in pages] == [20, 20, 11]
    assert [item for page in pages for item in page] == whole["items"]
    first_late = next(i for i in whole["items"] if i["state"] == "late")
    assert first_late["interval_end"] == "2026-04-30T05:30:00+09:00"  # slot 10
    assert first_late["arrived"] == "2026-04-30T07:30:00+09:00"  # two hours after
    assert first_late["delay_s"] == 7200


def test_csv_holds_the_same_rows_as_json(client: TestClient) -> None:
    response = client.get(f"{V1}/reports/estimated", params={"day": str(DAY), "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "estimated-2026-04-30.csv" in response.headers["content-disposition"]
    got = list(csv.DictReader(io.StringIO(response.text)))
    items = _get(client, "estimated")["items"]
    assert len(got) == len(items) == 2
    for row, item in zip(got, items, strict=True):
        assert row == {k: "" if v is None else str(v) for k, v in item.items()}
    assert got[1]["rules"] == "spike"


def test_filters_and_state_choose_meters(client: TestClient) -> None:
    hv = _get(client, "late", meter_class="hv")
    assert [i["supply_point_id"] for i in hv["items"]] == [f"03{HV_METER:020d}"]
    page = client.get(f"{V1}/meters", params={"state": "gaps", "day": str(DAY)}).json()
    assert [m["supply_point_id"] for m in page["items"]] == [f"03{1:020d}"]
    late = client.get(f"{V1}/meters", params={"state": "late", "day": str(DAY)}).json()
    assert late["total"] == 3  # meters 0 (late and missing), 1 (missing), 3 (late)
    feeder = client.get(f"{V1}/meters", params={"feeder": 2}).json()
    assert feeder["total"] == 1 and feeder["items"][0]["feeder"] == 2


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/reports/sideways", {"day": "2026-04-30"}, 400, "no report 'sideways'"),
        ("/reports/late", {}, 422, "day"),
        ("/reports/late", {"day": "30 April"}, 400, "ISO-8601"),
        ("/reports/late", {"day": "2026-04-30", "format": "xml"}, 400, "json or csv"),
        ("/reports/late", {"day": "2026-04-30", "area": "mars"}, 400, "unknown area"),
        ("/reports/late", {"day": "2026-04-30", "resolution": "7"}, 400, "resolution"),
        ("/meters", {"state": "late"}, 400, "needs the day"),
        ("/meters", {"day": "2026-04-30"}, 400, "pass state too"),
        ("/meters", {"state": "tardy", "day": "2026-04-30"}, 400, "no report 'tardy'"),
    ],
)
def test_bad_requests_get_one_clear_error(
    client: TestClient, path: str, params: dict[str, str], status: int, words: str
) -> None:
    response = client.get(V1 + path, params=params)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]
