"""``kenshin export`` (issue 13 item 3) and reads that span the archive in every mode: the
export file holds what ``kenshin.mdms.export`` gives, before and after ``kenshin archive``
moved the months out of the hot store, and the API over the reopened store (what ``kenshin
serve`` runs) still serves the archived days. Bad input gets one line, exit 2, no file."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from kenshin.api.app import create_app
from kenshin.app.stores import StoreLocation, StoreMode, open_store
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.export import ExportRequest, export_days
from tests.api.auth import authorized
from tests.mdms.test_export import END, METERS, START, fill
from tests.test_cli import run

PERIOD = ["--start", "2026-04-30", "--end", "2026-05-02"]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "e.duckdb"
    store = DuckDBStore(path)
    fill(store)
    store.close()
    return path


def expected(db) -> list[dict]:  # type: ignore[type-arg]
    store = DuckDBStore(db, read_only=True)
    try:
        return pa.concat_tables(list(export_days(store, ExportRequest(START, END)))).to_pylist()
    finally:
        store.close()


def test_export_before_and_after_archiving_and_serve_reads_the_archive(capsys, db, tmp_path):
    want = expected(db)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(
        capsys, "export", *PERIOD, "--db", str(db), "--output", str(out / "a.parquet")
    )
    assert code == 0, err
    assert f"{METERS * 96:,} values of {METERS} meters" in err
    assert pq.read_table(out / "a.parquet").to_pylist() == want
    archive = tmp_path / "archive"
    code, _, err = run(
        capsys,
        "archive",
        "--archive",
        str(archive),
        "--db",
        str(db),
        "--now",
        "2026-07-01",
        "--hot-months",
        "1",
    )
    assert code == 0, err
    store = DuckDBStore(db, read_only=True)
    assert store.months("readings") == []  # April and May live in the archive only now
    store.close()
    code, _, err = run(
        capsys, "export", *PERIOD, "--db", str(db), "--output", str(out / "b.parquet")
    )
    assert code == 0, err
    assert pq.read_table(out / "b.parquet").to_pylist() == want
    served = open_store(StoreLocation(path=db), StoreMode.READ_ONLY)  # as kenshin serve does
    try:
        with authorized(TestClient(create_app(served, read_only=True))) as client:
            body = client.get(
                f"/api/v1/meters/03{1:020d}/readings", params={"start": "2026-04-30"}
            ).json()
    finally:
        served.close()
    assert [r["raw"] for r in body["readings"]][:12] == [100 + s for s in range(10)] + [999, 111]


def test_csv_and_chosen_meters(capsys, db, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text(f"03{2:020d}\n03{0:020d}\n")
    target = tmp_path / "two.csv"
    code, _, err = run(
        capsys, "export", *PERIOD, "--db", str(db), "--meters", f"@{ids}", "--output", str(target)
    )
    assert code == 0, err
    lines = target.read_text().splitlines()
    assert len(lines) == 1 + 2 * 96
    assert {line.split(",")[0] for line in lines[1:]} == {f'"03{0:020d}"', f'"03{2:020d}"'}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--end", "2026-04-29"], "must be after --start"),
        (["--format", "xlsx"], "--format must be parquet or csv"),
        (["--output", "x.json"], "got 'json'"),
        (["--output", "nowhere/x.parquet"], "does not exist"),
        (["--output", "taken.parquet"], "exists; pass --overwrite"),
        (["--meters", f"03{7:020d}"], "no meter 0300000000000000000007"),
        (["--meters", "12"], "--meters"),
        (["--meters", "@missing.txt"], "cannot read missing.txt"),
        (["--as-of", "yesterday"], "--as-of"),
        (["--channel", "sideways"], "channel"),
    ],
)
def test_bad_export_arguments_get_one_line_and_create_nothing(
    capsys, db, tmp_path, monkeypatch, args, fragment
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken.parquet").write_bytes(b"mine")
    before = sorted(tmp_path.rglob("*"))
    code, _, err = run(capsys, "export", "--start", "2026-04-30", "--db", str(db), *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kenshin: error: "), err
    assert fragment in lines[0]
    assert sorted(tmp_path.rglob("*")) == before
    assert (tmp_path / "taken.parquet").read_bytes() == b"mine"
