"""Every command against a table of bad inputs (issue 13 item 4): one line on stderr starting
``kenshin: error:``, no traceback, exit code 2 for a usage error (a bad or ambiguous option, a
missing file or directory, a store that does not exist) and 1 for a runtime or service error
(a server that cannot be reached, a port in use), and nothing created: no file, no directory,
no empty store."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kenshin.mdms.duckdb_store import DuckDBStore
from tests.mdms.test_reports import fill
from tests.test_cli import run

STORE = "s.duckdb"  # a store with a small roster, made in each test's directory


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


CLOSED = _closed_port()  # nothing listens there (taken once; good enough for a refusal)
DEV = ["--dev-key"]

# (command line, exit code, words of the one line); BUSY is replaced by a port in use
CASES: list[tuple[list[str], int, str]] = [
    # simulate
    (
        ["simulate", "--meters", "5", "--db", "nowhere/s.duckdb"],
        2,
        "directory nowhere does not exist",
    ),
    (["simulate", "--meters", "5", "--db", STORE], 2, "already exists"),
    (
        ["simulate", "--meters", "5", "--db", "a.duckdb", "--postgres", "postgresql://x@h/d"],
        2,
        "give one",
    ),
    (["simulate", "--meters", "5", "--loss", "1.5", "--db", "n.duckdb"], 2, "--loss"),
    # install
    (["install", "--meters", "5", "--db", STORE], 2, "already exists"),
    (["install", "--meters", "5", "--db", "nowhere/i.duckdb"], 2, "does not exist"),
    # serve and up
    (["serve", "--db", "missing.duckdb"], 2, "does not exist"),
    (["serve", "--db", STORE, "--port", "BUSY"], 1, "in use"),
    (["up", "--port", "BUSY", "--store", "u.duckdb"], 1, "in use"),
    (["up", "--speed", "0"], 2, "--speed"),
    (["up", "--broute-meters", "2", "--broute-port", "70000"], 2, "--broute-port"),
    # the MDMS by hand
    (["vee", "--day", "2026-04-30", "--db", "missing.duckdb"], 2, "does not exist"),
    (["vee", "--day", "2026-13-01", "--db", STORE], 2, "YYYY-MM-DD"),
    (["vee", "--day", "2020-01-01", "--db", STORE], 2, "holds no values of that day"),
    (
        ["vee", "--day", "2026-04-30", "--db", STORE, "--postgres", "postgresql://x@h/d"],
        2,
        "give one",
    ),
    (["archive", "--db", "missing.duckdb", "--archive", "a"], 2, "does not exist"),
    (["archive", "--db", STORE, "--archive", "a", "--now", "soon"], 2, "YYYY-MM-DD"),
    (["report", "late", "--day", "2026-04-30", "--db", "missing.duckdb"], 2, "does not exist"),
    (["export", "--start", "2026-04-30", "--db", "missing.duckdb"], 2, "does not exist"),
    # service mode
    (["hes", "--db", "missing.duckdb", *DEV], 2, "does not exist"),
    (
        ["hes", "--db", STORE, "--mqtt", f"mqtt://127.0.0.1:{CLOSED}", *DEV],
        1,
        "cannot reach the MQTT broker",
    ),
    (
        ["hes", "--postgres", f"postgresql://nobody@127.0.0.1:{CLOSED}/x", *DEV],
        1,
        "cannot connect to PostgreSQL",
    ),
    (["hes", "--db", STORE, "--mqtt", "x://y", *DEV], 2, "MQTT URL"),
    (
        ["fleet", "--meters", "5", "--mqtt", f"mqtt://127.0.0.1:{CLOSED}", *DEV],
        1,
        "cannot reach the MQTT broker",
    ),
    (["fleet", "--meters", "5", "--speed", "fast", *DEV], 2, "--speed"),
    # the B-route
    (
        [
            "broute",
            "credentials",
            "--meter",
            "0300000000000000000001",
            "--credentials",
            "nowhere/c.json",
        ],
        2,
        "does not exist",
    ),
    (["broute", "credentials", "--meter", "12345"], 2, "supply point id"),
    (["broute", "serve", "--port", "70000"], 2, "--port"),
    # the connections of a running system (credentials from the environment or data/)
    (["connections", "list"], 2, "no API credentials"),
    (["connections", "list", "--api", "ftp://x"], 2, "no API credentials"),
    (["connections", "add", "x1", "--kind", "staff", "--rate", "0"], 2, "--rate"),
    (
        ["connections", "add", "x1", "--kind", "staff", "--supply-points", "@none.txt"],
        2,
        "none.txt",
    ),
    # planning, drills, typos
    (["plan-network", "--meters", "200", "--svg", "nowhere/p.svg"], 2, "does not exist"),
    (["drill", "faults", "--meters", "0"], 2, "--meters"),
    (["simulat"], 2, "simulat"),
]


@pytest.mark.parametrize(
    ("args", "code", "words"), CASES, ids=[f"{a[0]}-{i}" for i, (a, _, _) in enumerate(CASES)]
)
def test_bad_input_gets_one_line_and_creates_nothing(
    capsys, tmp_path: Path, monkeypatch, busy_port: int, args: list[str], code: int, words: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KENSHIN_AROUTE_MASTER_KEY", raising=False)
    store = DuckDBStore(tmp_path / STORE)
    fill(store)
    store.close()
    before = sorted(tmp_path.rglob("*"))
    args = [str(busy_port) if a == "BUSY" else a for a in args]
    got, out, err = run(capsys, *args)
    lines = err.strip().splitlines()
    assert got == code, err
    assert len(lines) == 1, err
    assert lines[0].startswith("kenshin: error: "), err
    assert words in lines[0]
    assert "Traceback" not in out + err
    assert sorted(tmp_path.rglob("*")) == before
