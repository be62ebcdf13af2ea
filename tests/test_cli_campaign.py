"""``kenshin campaign`` against a running API (issue 16 item 3): an operator asks, an approver
approves, both follow it, the operator aborts it; refusals are one line."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from kenshin.api import create_app
from kenshin.security.principals import Kind, Role
from tests.control.test_campaigns import DAY, _run_to, _system
from tests.test_cli import run
from tests.test_cli_connections import _free_port


@pytest.fixture
def running(monkeypatch, tmp_path) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    system = _system(200)
    _run_to(system, 17)
    app = create_app(
        system.store,
        hes=system.hes,
        hes_lock=threading.Lock(),
        control=system.control,
        campaigns=system.campaigns,
    )
    secrets = {
        name: str(app.state.security.add(name, Kind.STAFF, roles=[role])[1])
        for name, role in (("op", Role.OPERATOR), ("boss", Role.APPROVER))
    }
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    monkeypatch.setenv("KENSHIN_API", f"http://127.0.0.1:{port}")
    monkeypatch.chdir(tmp_path)  # no data/kenshin-admin.json here
    yield secrets
    server.should_exit = True
    thread.join(timeout=10)
    system.close()


def _as(monkeypatch, secrets: dict[str, str], name: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KENSHIN_CLIENT_ID", name)
    monkeypatch.setenv("KENSHIN_CLIENT_SECRET", secrets[name])


def test_ask_approve_follow_and_abort(capsys, monkeypatch, running) -> None:  # type: ignore[no-untyped-def]
    _as(monkeypatch, running, "op")
    window = ("--start", f"{DAY}T17:30", "--end", f"{DAY}T18:30")
    code, out, err = run(
        capsys, "campaign", "create", "--target-mw", "0.02", *window, "--reason", "shortfall"
    )
    assert code == 0, err
    assert "campaign 1: pending" in out and "shortfall" in out
    code, _, err = run(capsys, "campaign", "approve", "1")
    assert code != 0 and "403" in err and err.count("\n") <= 2
    code, _, err = run(
        capsys, "campaign", "create", "--target-mw", "1", "--start", f"{DAY}T17:10",
        "--end", f"{DAY}T18:30", "--reason", "x",
    )  # fmt: skip
    assert code != 0 and "on a half hour" in err and err.count("\n") <= 2
    _as(monkeypatch, running, "boss")
    code, out, err = run(capsys, "campaign", "approve", "1")
    assert code == 0 and "campaign 1: approved" in out and "boss" in out, err
    code, out, _ = run(capsys, "campaign", "list", "--state", "approved")
    assert code == 0 and "shortfa" in out and "18:30" in out  # a narrow terminal cuts
    _as(monkeypatch, running, "op")
    code, out, err = run(capsys, "campaign", "abort", "1", "--why", "supply back")
    assert code == 0 and "campaign 1: aborted" in out and "supply back" in out, err
    code, out, _ = run(capsys, "campaign", "show", "1")
    assert code == 0 and "aborted by op" in out
