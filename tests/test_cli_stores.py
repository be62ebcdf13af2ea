"""One way to open a store (``kenshin.app.stores``): ``--store PATH.duckdb`` or ``--store
postgresql://…`` with ``--db`` / ``--postgres`` as aliases, and the modes create, open and
read-only on both backends."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from kenshin.app.stores import (
    StoreLocation,
    StoreMode,
    choose_store,
    open_store,
    parse_store,
)
from kenshin.errors import InvalidStore, StoreError
from tests.test_cli import run
from tests.test_cli_postgres import database  # noqa: F401 (a fixture, used by `dsn`)

FLEET = ["--meters", "30", "--start", "2026-04-01"]


def one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kenshin: error: ") and fragment in lines[0], err


def test_store_values_name_a_duckdb_file_or_a_dsn(tmp_path: Path) -> None:
    assert parse_store("data/k.duckdb") == StoreLocation(path=Path("data/k.duckdb"))
    dsn = "postgresql://postgres@127.0.0.1:5432/test"
    assert parse_store(dsn) == StoreLocation(dsn=dsn)
    assert parse_store("postgres://u@h/db").is_postgres
    for bad in ("k.db", "mysql://h/db", "host=127.0.0.1 dbname=test"):
        with pytest.raises(InvalidStore, match="--store"):
            parse_store(bad)
    with pytest.raises(InvalidStore, match=r"--store: not a PostgreSQL DSN: unexpected spaces"):
        parse_store("postgresql://a b")
    default = tmp_path / "default.duckdb"
    pick = choose_store
    assert pick(store=None, db=None, postgres=None, default=default).path == default
    assert pick(store=None, db=Path("a.duckdb"), postgres=None, default=default).path == Path(
        "a.duckdb"
    )
    # --postgres takes any libpq form, --db any path: they are the old spellings
    keywords = "host=127.0.0.1 dbname=test"
    assert pick(store=None, db=None, postgres=keywords, default=default).dsn == keywords
    with pytest.raises(InvalidStore, match="--postgres"):
        pick(store=None, db=None, postgres="nonsense", default=default)
    with pytest.raises(InvalidStore, match="--db and --postgres"):
        pick(store=None, db=Path("a.duckdb"), postgres=keywords, default=default)
    with pytest.raises(InvalidStore, match="--store and --db"):
        pick(store="b.duckdb", db=Path("a.duckdb"), postgres=None, default=default)


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", *FLEET, "--db", "{tmp}/a.duckdb", "--postgres", "{dsn}"],
        ["install", *FLEET, "--store", "{tmp}/a.duckdb", "--postgres", "{dsn}"],
        ["vee", "--day", "2026-04-01", "--store", "{dsn}", "--db", "{tmp}/a.duckdb"],
        ["serve", "--db", "{tmp}/a.duckdb", "--postgres", "{dsn}"],
        ["up", "--db", "{tmp}/a.duckdb", "--postgres", "{dsn}"],
        ["hes", "--dev-key", "--db", "{tmp}/a.duckdb", "--postgres", "{dsn}"],
        ["archive", "--db", "{tmp}/a.duckdb", "--store", "{tmp}/b.duckdb"],
    ],
)
def test_two_store_options_are_refused_not_silently_postgres(capsys, tmp_path, args) -> None:
    dsn = "postgresql://nobody@127.0.0.1:1/none"  # never connected to
    filled = [a.format(tmp=tmp_path, dsn=dsn) for a in args]
    code, _, err = run(capsys, *filled)
    one_line_error(code, err, "both name the store")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["serve"],
        ["vee", "--day", "2026-04-01"],
        ["archive", "--archive", "{tmp}/archive"],
        ["hes", "--dev-key"],
    ],
)
@pytest.mark.parametrize("option", ["--store", "--db"])
def test_a_missing_duckdb_store_is_an_error_and_nothing_is_created(
    capsys, tmp_path, args, option
) -> None:
    missing = tmp_path / "not" / "here.duckdb"
    filled = [a.format(tmp=tmp_path) for a in args]
    code, _, err = run(capsys, *filled, option, str(missing))
    one_line_error(code, err, f"{missing} does not exist; run `kenshin simulate`")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its directory
    with pytest.raises(InvalidStore, match="does not exist"):
        open_store(StoreLocation(path=missing), StoreMode.OPEN)
    assert list(tmp_path.iterdir()) == []


def test_duckdb_store_create_open_and_read_only(capsys, tmp_path) -> None:
    db = tmp_path / "sub" / "k.duckdb"
    code, out, err = run(capsys, "install", *FLEET, "--store", str(db))
    one_line_error(code, err, "directory")  # a typo must not make directories
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "sub").mkdir()
    code, out, err = run(capsys, "install", *FLEET, "--store", str(db))
    assert code == 0, err
    assert "installed 30 meters" in err
    code, _, err = run(capsys, "install", *FLEET, "--store", str(db))
    one_line_error(code, err, "already exists; pass --overwrite")
    code, _, err = run(capsys, "install", "--meters", "20", "--db", str(db), "--overwrite")
    assert code == 0, err
    # the sweep opens the existing store, through --store and through the alias (and finds
    # no values there yet: an installed fleet has sent nothing)
    for option in ("--store", "--db"):
        code, _, err = run(capsys, "vee", "--day", "2026-04-01", option, str(db))
        one_line_error(code, err, "the store holds no values of that day (it holds no values yet)")
    store = open_store(StoreLocation(path=db), StoreMode.READ_ONLY)
    try:
        assert store.meter_count() == 20
        with pytest.raises(StoreError):
            store.write_meters(store.read_meters())
    finally:
        store.close()
    code, out, err = run(capsys, "simulate", *FLEET, "--store", str(db), "--overwrite")
    assert code == 0, err
    assert f"kenshin simulate → {db}" in " ".join(out.split())


@pytest.fixture
def dsn(request: pytest.FixtureRequest) -> str:
    """A throwaway database (test_cli_postgres's), spelled ``postgres://``: accepted too."""
    throwaway: str = request.getfixturevalue("database")
    return throwaway.replace("postgresql://", "postgres://", 1)


def schemas(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {row[0] for row in conn.execute("SELECT nspname FROM pg_namespace").fetchall()}


def test_postgres_store_create_open_and_read_only(capsys, dsn) -> None:
    # no kenshin store yet: the commands that open one refuse, and create nothing
    for args in (["vee", "--day", "2026-04-01"], ["archive"], ["hes", "--dev-key"]):
        code, _, err = run(capsys, *args, "--store", dsn)
        one_line_error(code, err, "(schema kenshin) holds no kenshin store; run `kenshin")
    with pytest.raises(InvalidStore, match="holds no kenshin store"):
        open_store(StoreLocation(dsn=dsn), StoreMode.READ_ONLY)
    assert "kenshin" not in schemas(dsn)

    code, _, err = run(capsys, "install", *FLEET, "--store", dsn)
    assert code == 0, err
    assert "(schema kenshin)" in err and "@" in err
    code, _, err = run(capsys, "install", *FLEET, "--postgres", dsn)
    one_line_error(code, err, "already holds a fleet; pass --overwrite")
    code, _, err = run(capsys, "install", "--meters", "12", "--store", dsn, "--overwrite")
    assert code == 0, err
    for option in ("--store", "--postgres"):
        code, _, err = run(capsys, "vee", "--day", "2026-04-01", option, dsn)
        one_line_error(code, err, "the store holds no values of that day (it holds no values yet)")

    store = open_store(StoreLocation(dsn=dsn), StoreMode.READ_ONLY)
    try:
        assert store.meter_count() == 12
        with pytest.raises(StoreError):
            store.write_meters(pa.Table.from_pylist([], schema=store.read_meters().schema))
    finally:
        store.close()
