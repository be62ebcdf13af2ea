"""``kenshin connections`` against a running API (issue 14 items 5 and 6): credentials from the
environment, a partner registered, cut off by the kill switch (its next request refused) and let
back in; what goes wrong is one line."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pyarrow as pa
import pytest
import uvicorn

from kenshin.api import create_app
from kenshin.core.schema import METERS_SCHEMA
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.security.principals import Kind, Role
from tests.api.test_api import METERS
from tests.live_api import token
from tests.test_cli import run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def running(monkeypatch, tmp_path) -> Iterator[str]:
    store = DuckDBStore(tmp_path / "c.duckdb")
    store.write_meters(pa.Table.from_pylist(METERS, schema=METERS_SCHEMA))
    app = create_app(store)
    _, secret = app.state.security.add("sec-admin", Kind.STAFF, roles=[Role.SECURITY_ADMIN])
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    monkeypatch.setenv("KENSHIN_API", base)
    monkeypatch.setenv("KENSHIN_CLIENT_ID", "sec-admin")
    monkeypatch.setenv("KENSHIN_CLIENT_SECRET", secret)
    monkeypatch.chdir(tmp_path)  # no data/kenshin-admin.json here
    yield base
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


def _status(base: str, path: str, bearer: str) -> int:
    request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {bearer}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_register_cut_off_and_reconnect_a_partner(capsys, running, tmp_path):
    spid = METERS[0]["supply_point_id"]
    code, out, err = run(
        capsys,
        "connections",
        "add",
        "partner-a",
        "--kind",
        "device",
        "--party",
        "partner_server",
        "--supply-points",
        spid,
        "--boundary",
        "partner-a NOC",
    )
    assert code == 0, err
    secret = out.strip()
    assert "registered partner-a" in err and len(secret) >= 43
    kept = tmp_path / "partner"  # where the partner keeps what it was given
    kept.mkdir()
    (kept / "kenshin-admin.json").write_text(
        f'{{"client_id": "partner-a", "client_secret": "{secret}"}}'
    )
    bearer = token(running, kept)
    assert _status(running, f"/api/v1/meters/{spid}", bearer) == 200
    code, _, err = run(capsys, "connections", "disconnect", "partner-a", "--reason", "breach")
    assert code == 0 and "cut off" in err
    assert _status(running, f"/api/v1/meters/{spid}", bearer) == 403  # its very next request
    code, out, _ = run(capsys, "connections", "list")
    assert code == 0 and "partner-a" in out and "cut off" in out
    code, _, _ = run(capsys, "connections", "reconnect", "partner-a", "--reason", "fixed")
    assert code == 0
    assert _status(running, f"/api/v1/meters/{spid}", bearer) == 401  # the old token stays dead


@pytest.mark.parametrize(
    ("env", "args", "exit_code", "fragment"),
    [
        ({"KENSHIN_CLIENT_SECRET": "wrong"}, ["list"], 1, "refused (401)"),
        ({"KENSHIN_API": "http://127.0.0.1:9"}, ["list"], 1, "cannot reach the API"),
        ({"KENSHIN_CLIENT_SECRET": ""}, ["list"], 2, "set both KENSHIN_CLIENT_ID"),
        ({}, ["disconnect", "nobody-here", "--reason", "x"], 1, "no principal 'nobody-here'"),
        ({}, ["add", "x1", "--kind", "robot"], 2, "'robot' is not a valid Kind"),
        ({"KENSHIN_API": "ftp://x"}, ["list"], 2, "http:// or https://"),
    ],
)
def test_what_goes_wrong_is_one_line(capsys, monkeypatch, running, env, args, exit_code, fragment):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = run(capsys, "connections", *args)
    assert code == exit_code, err
    assert err.count("\n") == 1 and fragment in err, err
