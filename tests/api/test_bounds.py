"""Out-of-range parameters are 422 and store failures leak no path or SQL (issue 12 item 7, X3).

Every route with an integer or time parameter is asked with values past its bounds; hypothesis
and schemathesis then drive the whole schema and assert that no request gets a 5xx.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kenshin.api import create_app
from kenshin.api.params import EARLIEST, LATEST, MAX_OFFSET
from kenshin.app.system import EmbeddedSystem, build_system
from kenshin.core.schema import METERS_SCHEMA, READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import FleetConfig
from kenshin.mdms.duckdb_store import DuckDBStore
from tests.api.test_api import LV2, METERS, _error, _readings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from kenshin.security.principals import Kind, Role
from tests.api.auth import authorized

V1 = "/api/v1"
START = dt.datetime(2026, 6, 1, tzinfo=JST)
U32_PAST = 2**32
HUGE = 99_999_999_999_999_999_999  # the reproduction: a 503 with the file and SQL


def _system() -> EmbeddedSystem:
    """A small wire-mode system: the head-end routes need a head-end. Built when the module
    loads, because schemathesis needs the app then (see the end of this file)."""
    built = build_system(
        FleetConfig(n_meters=20, start=START, seed=7), aroute="wire", background_writer=False
    )
    built.run(START + dt.timedelta(hours=1))
    built.mdms.flush()
    return built


SYSTEM = _system()
APP = create_app(SYSTEM.store, hes=SYSTEM.hes, hes_lock=threading.Lock(), control=SYSTEM.control)
SPID = str(SYSTEM.fleet.population.supply_point_id[0])


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with authorized(TestClient(APP, raise_server_exceptions=False)) as c:
        yield c


@pytest.fixture(scope="module")
def spid() -> str:
    return SPID


def _edit(interval_end: str = "2026-06-01T00:30", raw: int = 1) -> dict[str, Any]:
    return {"reason": "r", "editor": "e", "values": [{"interval_end": interval_end, "raw": raw}]}


_TOO_EARLY = "1969-12-31T23:59:59+09:00"
_TOO_LATE = "2100-01-01T00:00:01+09:00"

# (method, path with {spid}, query, JSON body, the parameter the message must name)
OUT_OF_RANGE: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, str]] = [
    ("GET", "/meters", {"offset": HUGE}, None, "offset"),
    ("GET", "/meters", {"offset": 2**63}, None, "offset"),
    ("GET", "/meters", {"offset": MAX_OFFSET + 1}, None, "offset"),
    ("GET", "/meters", {"offset": -1}, None, "offset"),
    ("GET", "/meters", {"limit": HUGE}, None, "limit"),
    ("GET", "/meters", {"limit": 0}, None, "limit"),
    ("GET", "/meters/{spid}/readings", {"start": "0001-01-01"}, None, "start"),
    ("GET", "/meters/{spid}/readings", {"start": "9999-12-31"}, None, "start"),
    ("GET", "/meters/{spid}/readings", {"end": "0001-01-01"}, None, "end"),
    ("GET", "/meters/{spid}/readings", {"end": _TOO_LATE}, None, "end"),
    ("GET", "/meters/{spid}/readings", {"start": "2026-06-01", "as_of": _TOO_EARLY}, None, "as_of"),
    (
        "GET",
        "/meters/{spid}/readings",
        {"start": "2026-06-01", "as_of": "9999-12-31T23:59:59-12:00"},  # past year 9999 in JST
        None,
        "as_of",
    ),
    ("GET", "/meters/{spid}/readings", {"start": "0001-01-01T00:00+14:00"}, None, "start"),
    ("GET", "/meters/{spid}/readings/versions", {"start": "9999-12-31"}, None, "start"),
    ("GET", "/meters/{spid}/readings/versions", {"start": "1900-01-01"}, None, "start"),
    (
        "GET",
        "/meters/{spid}/readings/versions",
        {"start": "2026-06-01", "end": _TOO_LATE},
        None,
        "end",
    ),
    ("GET", "/meters/{spid}/differences", {"start": "9999-12-31"}, None, "start"),
    ("GET", "/meters/{spid}/differences", {"end": "0001-01-01"}, None, "end"),
    ("GET", "/meters/{spid}/differences", {"as_of": _TOO_LATE}, None, "as_of"),
    ("POST", "/meters/{spid}/readings/edits", {}, _edit(raw=2**70), "raw"),
    ("POST", "/meters/{spid}/readings/edits", {}, _edit(raw=2**31), "raw"),
    ("POST", "/meters/{spid}/readings/edits", {}, _edit(raw=-(2**31) - 1), "raw"),
    ("POST", "/meters/{spid}/readings/edits", {}, _edit("0001-01-01T00:30"), "interval_end"),
    ("GET", f"/hes/commands/{HUGE}", {}, None, "command_id"),
    ("GET", f"/hes/commands/{U32_PAST}", {}, None, "command_id"),
    ("GET", "/hes/commands/0", {}, None, "command_id"),
    ("GET", f"/hes/polls/{HUGE}", {}, None, "poll_id"),
    ("GET", f"/hes/polls/{U32_PAST}", {}, None, "poll_id"),
    (
        "POST",
        "/meters/{spid}/commands",
        {},
        {"kind": "set_ampere_limit", "value": HUGE},
        "value",
    ),
    ("POST", "/meters/{spid}/commands", {}, {"kind": "set_ampere_limit", "value": -1}, "value"),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "name"),
    OUT_OF_RANGE,
    ids=[f"{m} {p} {n}={q or b}"[:80] for m, p, q, b, n in OUT_OF_RANGE],
)
def test_out_of_range_parameters_are_422(
    client: TestClient,
    spid: str,
    method: str,
    path: str,
    query: dict[str, Any],
    body: dict[str, Any] | None,
    name: str,
) -> None:
    url = V1 + path.format(spid=spid)
    response = client.request(method, url, params=query, json=body)
    message = _error(response, 422, "validation_error")
    assert name in message


def test_values_at_the_bounds_are_served(client: TestClient, spid: str) -> None:
    page = client.get(f"{V1}/meters", params={"offset": MAX_OFFSET, "limit": 1000})
    assert page.status_code == 200 and page.json()["items"] == []
    for start, end in ((EARLIEST, None), (None, LATEST), (LATEST, None)):
        params = {k: v.isoformat() for k, v in (("start", start), ("end", end)) if v is not None}
        response = client.get(f"{V1}/meters/{spid}/readings", params=params)
        assert response.status_code == 200, response.text
        assert response.json()["readings"] == []


@given(offset=st.integers(min_value=-(2**80), max_value=2**80), limit=st.integers(-5, 2000))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_integer_paging_is_200_or_422(client: TestClient, offset: int, limit: int) -> None:
    response = client.get(f"{V1}/meters", params={"offset": offset, "limit": limit})
    served = 0 <= offset <= MAX_OFFSET and 1 <= limit <= 1000
    assert response.status_code == (200 if served else 422), response.text


_OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))


@given(
    moment=st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    zone=_OFFSETS,
    which=st.sampled_from(["start", "end", "as_of"]),
)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_instant_is_served_or_422(
    client: TestClient, spid: str, moment: dt.datetime, zone: dt.tzinfo, which: str
) -> None:
    text = moment.replace(tzinfo=zone).isoformat()
    params = {"start": "2026-06-01", which: text} if which == "as_of" else {which: text}
    response = client.get(f"{V1}/meters/{spid}/readings", params=params)
    inside = EARLIEST <= moment.replace(tzinfo=zone) <= LATEST
    if inside:
        # served, or a 400 of the period rules (e.g. a start after the stored newest end)
        assert response.status_code in (200, 400), response.text
    else:
        _error(response, 422, "validation_error")


# --- store failures --------------------------------------------------------------------------


def test_store_failures_name_no_file_and_no_sql(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "secret-place" / "kenshin.duckdb"
    path.parent.mkdir()
    store = DuckDBStore(path)
    try:
        store.write_meters(pa.Table.from_pylist(METERS, schema=METERS_SCHEMA))
        store.append(
            pa.Table.from_pylist(_readings(), schema=READINGS_SCHEMA),
            REGISTER_READS_SCHEMA.empty_table(),
        )
        with authorized(TestClient(create_app(store), raise_server_exceptions=False)) as c:
            store._con.execute("DROP TABLE meters")  # every roster query now fails in DuckDB
            failures = 0
            with caplog.at_level(logging.ERROR, logger="kenshin.api.app"):
                for url in (
                    f"{V1}/health",
                    f"{V1}/meters",
                    f"{V1}/meters/{LV2}",
                    f"{V1}/meters/{LV2}/readings?start=2026-04-01",
                    f"{V1}/meters/{LV2}/gaps",
                ):
                    response = c.get(url)
                    assert response.status_code >= 500, (url, response.text)
                    failures += response.status_code == 503
                    text = response.text
                    for leak in (str(tmp_path), "secret-place", "SELECT", "FROM", "Catalog"):
                        assert leak not in text, (url, text)
                    assert set(response.json()["error"]) == {"code", "message"}
            assert failures >= 3  # the store's own errors, not just bugs, were exercised
            assert "secret-place" in caplog.text  # the operator still gets the details
    finally:
        store.close()


# --- the whole schema ------------------------------------------------------------------------


schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
# both modes: negative cases are the out-of-range ones; one real meter so the routes behind
# the supply point id check are reached; no example database in the work tree
schema.config.generation.update(modes=list(schemathesis.GenerationMode), database="none")
schema.config.update(parameters={"supply_point_id": SPID})


FUZZER_SECRET = APP.state.security.add("fuzzer", Kind.STAFF, roles=list(Role), rate_per_s=10_000)[1]
_token: list[tuple[float, str]] = []


def _bearer() -> dict[str, str]:
    """A token of a staff principal with every role, renewed before it expires (the suite may
    run longer than a token lives): the fuzzing reaches the routes, not the gate."""
    if not _token or time.monotonic() - _token[0][0] > 300:
        _token[:] = [(time.monotonic(), APP.state.security.token("fuzzer", FUZZER_SECRET)[0])]
    return {"Authorization": f"Bearer {_token[0][1]}"}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_5xx(case: schemathesis.Case) -> None:
    response = case.call(headers=_bearer())
    assert response.status_code < 500, (case.method, case.path, case.query, response.text)
    if case.path not in ("/oauth/token", f"{V1}/login"):
        assert response.status_code != 401, (case.method, case.path, response.text)
