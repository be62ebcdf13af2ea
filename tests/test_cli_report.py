"""``kenshin report`` (issue 13 item 2): the API's fleet-wide answers from a store, as a table,
CSV or JSON; bad input gets one line, exit 2, and creates nothing."""

from __future__ import annotations

import csv
import io
import json

import pytest

from kenshin.core.batches import events_table
from kenshin.core.events import EventCode
from kenshin.core.schema import READINGS_SCHEMA
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.sweep import day_window
from tests.mdms.test_duckdb_store import NO_REGISTERS
from tests.mdms.test_reports import DAY, fill
from tests.test_cli import run


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "r.duckdb"
    store = DuckDBStore(path)
    fill(store)
    store.close()
    return path


def test_report_prints_a_summary_and_writes_csv_and_json(capsys, db, tmp_path):
    code, out, _ = run(capsys, "report", "late", "--day", str(DAY), "--db", str(db))
    assert code == 0
    # run today, long after the day: every slot is due, meter 1's last slot too (49 missing)
    assert out.splitlines()[0] == "late 2026-04-30: 52 values of 3 meters (late 3, missing 49)"
    code, out, _ = run(
        capsys, "report", "gaps", "--day", str(DAY), "--db", str(db), "--format", "csv"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["interval_end"] for r in rows] == [
        "2026-04-30T00:30:00+09:00",
        "2026-04-30T01:00:00+09:00",
        "2026-04-30T01:30:00+09:00",
    ]
    target = tmp_path / "estimated.json"
    code, _, err = run(
        capsys,
        "report",
        "estimated",
        "--day",
        str(DAY),
        "--db",
        str(db),
        "--format",
        "json",
        "--output",
        str(target),
        "--feeder",
        "2",
    )
    assert code == 0 and str(target) in err
    body = json.loads(target.read_text())
    assert body["summary"] == {"cells": 1, "meters": 1, "by_quality": {"suspect": 1}}
    assert body["items"][0]["rules"] == "spike"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["report", "sideways", "--day", "2026-04-30"], "no report 'sideways'"),
        (["report", "late", "--day", "30-04-2026"], "YYYY-MM-DD"),
        (["report", "late", "--day", "2026-04-30", "--format", "xml"], "--format"),
        (["report", "late", "--day", "2026-04-30", "--output", "x.csv"], "--output takes"),
        (
            ["report", "late", "--day", "2026-04-30", "--format", "csv", "--output", "no/x.csv"],
            "does not exist",
        ),
        (["report", "late", "--day", "2026-04-30", "--area", "mars"], "unknown area"),
        (["report", "late", "--day", "2026-04-30", "--resolution", "7"], "resolution"),
    ],
)
def test_bad_report_arguments_get_one_line_and_create_nothing(
    capsys, db, tmp_path, monkeypatch, args, fragment
):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    code, _, err = run(capsys, *args, "--db", str(db))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kenshin: error: "), err
    assert fragment in lines[0]
    assert sorted(tmp_path.rglob("*")) == before


def test_a_report_from_a_missing_store_creates_none(capsys, tmp_path):
    missing = tmp_path / "none.duckdb"
    code, _, err = run(capsys, "report", "late", "--day", "2026-04-30", "--db", str(missing))
    assert code == 2 and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_report_events_and_the_capability_filter(capsys, tmp_path):
    path = tmp_path / "e.duckdb"
    store = DuckDBStore(path)
    fill(store)
    start, _ = day_window(DAY)
    trip = events_table(
        [0, 2], [int(EventCode.SWITCH_TRIPPED)] * 2, [start + 60_000_000] * 2, [40, 30], 0
    )
    store.append(READINGS_SCHEMA.empty_table(), NO_REGISTERS, None, trip)
    store.close()
    code, out, _ = run(capsys, "report", "events", "--day", str(DAY), "--db", str(path))
    assert code == 0
    assert out.splitlines()[0] == (
        "events 2026-04-30: 2 events of 2 meters (by_event {'switch_tripped': 2})"
    )
    code, out, _ = run(
        capsys,
        "report",
        "events",
        "--day",
        str(DAY),
        "--db",
        str(path),
        "--format",
        "csv",
        "--feeder",
        "2",
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["event"], r["detail"], r["occurred"]) for r in rows] == [
        ("switch_tripped", "30", "2026-04-30T00:01:00+09:00")
    ]
    code, _, err = run(
        capsys, "report", "events", "--day", str(DAY), "--db", str(path), "--capability", "x"
    )
    assert code == 2 and err.count("\n") == 1 and "unknown capability 'x'" in err
