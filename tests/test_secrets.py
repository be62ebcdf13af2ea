"""Secrets and files (SPEC X3, information managed without leaks; issue 12 "Secrets and files"):
passwords are masked wherever a DSN or an MQTT URL is printed, logged or raised; the A-route
master key comes from the environment or a private file, and the public development key only
when a command is told it runs a simulation; what kenshin creates is 0600 / 0700."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from kenshin.aroute.keys import (
    DEV_MASTER_KEY,
    MASTER_KEY_ENV,
    load_master_key,
    read_master_key_file,
)
from kenshin.aroute.mqtt import MQTT_PASSWORD_ENV, BrokerAddress
from kenshin.broute.credentials import CredentialRegistry
from kenshin.core.schema import READINGS_SCHEMA, REGISTER_READS_SCHEMA
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.errors import InvalidSetting
from kenshin.mdms.archive import ParquetArchive
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.months import month_of
from kenshin.postgres import describe_dsn
from kenshin.secrecy import redact
from tests.conftest import require_service
from tests.test_cli import free_port, run

PASSWORD = "s3cret-pw"
KEY = bytes(range(32))
FLEET = ["--meters", "30", "--start", "2026-04-01"]


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.delenv(MQTT_PASSWORD_ENV, raising=False)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual 022, under which files come out world-readable unless kenshin sees to it."""
    saved = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(saved)


# ---- passwords are never printed


def test_redact_masks_url_and_keyword_passwords() -> None:
    texts = {
        "postgresql://u:s3cret-pw@[::1": "postgresql://u:***@[::1",  # libpq repeats this
        "at mqtt://kenshin:s3cret-pw@broker:1883 now": "at mqtt://kenshin:***@broker:1883 now",
        "mqtt://:s3cret-pw@h": "mqtt://:***@h",
        "host=h password=s3cret-pw dbname=x": "host=h password=*** dbname=x",
        "password = 's3cret-pw x'": "password = ***",
        "postgresql://h/db?password=s3cret-pw&port=1": "postgresql://h/db?password=***&port=1",
        "mqtt://h:1883 and user@example": "mqtt://h:1883 and user@example",  # nothing to hide
    }
    for text, masked in texts.items():
        assert redact(text) == masked


def test_dsn_and_broker_descriptions_mask_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    assert describe_dsn(f"postgresql://kenshin:{PASSWORD}@db:5432/k") == (
        "postgresql://kenshin:***@db:5432/k"
    )
    assert describe_dsn(f"host=db dbname=k password={PASSWORD}") == "postgresql://:***@db/k"
    assert describe_dsn("postgresql://kenshin@db/k") == "postgresql://kenshin@db/k"
    address = BrokerAddress.parse(f"mqtt://kenshin:{PASSWORD}@broker:1884")
    assert (address.username, address.password) == ("kenshin", PASSWORD)
    assert str(address) == "mqtt://kenshin:***@broker:1884"
    assert PASSWORD not in repr(address)
    # a user without a password in the URL takes it from the environment, out of `ps`
    monkeypatch.setenv(MQTT_PASSWORD_ENV, PASSWORD)
    from_env = BrokerAddress.parse("mqtt://kenshin@broker")
    assert from_env.password == PASSWORD and str(from_env) == "mqtt://kenshin:***@broker:1883"
    assert BrokerAddress.parse("mqtt://broker").password is None  # no user: anonymous
    with pytest.raises(InvalidSetting) as info:
        BrokerAddress.parse(f"mqtt://kenshin:{PASSWORD}@broker:notaport")
    assert PASSWORD not in str(info.value) and "kenshin:***@broker" in str(info.value)


def assert_masked(text: str, masked: str) -> None:
    assert PASSWORD not in text
    assert masked in text, text


@pytest.mark.parametrize(
    ("args", "masked"),
    [
        # a server that is not there: the error names it without the password
        (["install", *FLEET, "--store", f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/x"],
         "postgresql://postgres:***@127.0.0.1:1/x"),
        # libpq repeats an unparsable URI whole in its message
        (["install", *FLEET, "--store", f"postgresql://postgres:{PASSWORD}@[::1"],
         "postgresql://postgres:***@[::1"),
        (["hes", "--dev-key", "--mqtt", f"mqtts://kenshin:{PASSWORD}@127.0.0.1"],
         "mqtts://kenshin:***@127.0.0.1"),
        (["fleet", "--dev-key", "--mqtt", f"mqtt://kenshin:{PASSWORD}@127.0.0.1:1", *FLEET],
         "mqtt://kenshin:***@127.0.0.1:1"),
    ],
)  # fmt: skip
def test_errors_mask_the_password(capsys, caplog, args: list[str], masked: str) -> None:
    with caplog.at_level(logging.DEBUG):
        code, out, err = run(capsys, *args)
    assert code in (1, 2)
    assert err.startswith("kenshin: error: ") or "\nkenshin: error: " in err, err
    assert_masked(out + err, masked)
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


@pytest.fixture
def database() -> Iterator[str]:
    """A throwaway database, named by a DSN with a password (trust authentication ignores it)."""
    import psycopg

    host, port = require_service("postgresql")
    admin = f"postgresql://postgres@{host}:{port}/postgres"
    name = f"kenshin_x3_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres:{PASSWORD}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def first_lines_then_stop(args: list[str], until: str, env: dict[str, str]) -> str:
    """Start ``kenshin ARGS``, read its output until a line holds ``until``, stop it (SIGINT,
    then SIGTERM: `hes` stops on the latter) and return everything it wrote."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kenshin", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1", "COLUMNS": "500"},  # one line each
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 90  # importing on a busy 2-core machine
    try:
        for line in proc.stdout:
            lines.append(line)
            if until in line or time.monotonic() > deadline:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    text = "".join(lines) + rest
    assert until in text, text
    return text


def test_commands_never_print_a_dsn_or_url_password(capsys, caplog, database: str) -> None:
    """install, hes, serve and up on a PostgreSQL store named with a password, hes on a broker
    URL with one: the password appears nowhere, its masked form does, and the warning says
    how to keep it out of `ps`."""
    masked_dsn = "postgresql://postgres:***@"
    with caplog.at_level(logging.DEBUG):
        code, out, err = run(capsys, "install", *FLEET, "--store", database)
    assert code == 0, err
    assert_masked(out + err, masked_dsn)
    assert "~/.pgpass" in err and "`ps`" in err
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)

    host, port = require_service("mosquitto")
    url = f"mqtt://kenshin:{PASSWORD}@{host}:{port}"
    root = f"kt-{uuid.uuid4().hex[:8]}"
    env = {MASTER_KEY_ENV: KEY.hex()}
    hes = ["hes", "--store", database, "--mqtt", url, "--topic-root", root, "--worker-id", root]
    text = first_lines_then_stop(hes, "listening on", env)
    assert_masked(text, f"mqtt://kenshin:***@{host}:{port}")
    assert_masked(text, masked_dsn)
    assert MQTT_PASSWORD_ENV in text  # the warning names the way out of `ps`

    text = first_lines_then_stop(["serve", "--store", database, "--port", str(free_port())],
                                 "serving", env)  # fmt: skip
    assert_masked(text, masked_dsn)
    up = ["up", "--store", database, "--meters", "20", "--port", str(free_port())]
    text = first_lines_then_stop(up, "storing in", env)
    assert_masked(text, masked_dsn)


# ---- the A-route master key: environment or a private file, the dev key only when told


def one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kenshin: error: "), err
    assert fragment in lines[0], err


@pytest.mark.parametrize("command", [["hes", "--db", "{tmp}/k.duckdb"], ["fleet", "-n", "10"]])
def test_service_mode_refuses_to_run_without_a_key(capsys, tmp_path: Path, command) -> None:
    code, _, err = run(capsys, *(a.format(tmp=tmp_path) for a in command))
    one_line_error(code, err, "no A-route master key")
    assert MASTER_KEY_ENV in err and "--master-key-file" in err and "--dev-key" in err
    assert list(tmp_path.iterdir()) == []


def key_file(tmp_path: Path, mode: int, text: str | None = None) -> Path:
    path = tmp_path / "aroute.key"
    path.write_text((KEY.hex() if text is None else text) + "\n")
    path.chmod(mode)
    return path


def test_a_private_key_file_is_read(tmp_path: Path) -> None:
    path = key_file(tmp_path, 0o600)
    assert read_master_key_file(path) == KEY
    assert load_master_key(path=path) == KEY
    with pytest.raises(InvalidSetting, match="given twice"):
        load_master_key(KEY.hex(), path=path)
    path.chmod(0o400)
    assert read_master_key_file(path) == KEY
    bad = key_file(tmp_path, 0o600, "zz" * 32)
    with pytest.raises(InvalidSetting, match="not valid hex") as info:
        read_master_key_file(bad)
    assert "zz" not in str(info.value)  # the error never quotes a key file's content
    with pytest.raises(InvalidSetting, match="not a regular file"):
        read_master_key_file(tmp_path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_open_to_others_is_refused(capsys, tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, mode)
    with pytest.raises(InvalidSetting, match="chmod 600"):
        read_master_key_file(path)
    store = tmp_path / "k.duckdb"
    code, _, err = run(capsys, "hes", "--master-key-file", str(path), "--db", str(store))
    one_line_error(code, err, f"open to group or others (mode {mode:04o}): run chmod 600")
    assert KEY.hex() not in err


def test_keys_from_a_file_or_the_environment_are_taken_quietly(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the key passes; the run then stops at the missing store, so the key is all that is tested
    missing = str(tmp_path / "missing.duckdb")
    code, _, err = run(capsys, "hes", "--master-key-file", str(key_file(tmp_path, 0o600)),
                       "--db", missing)  # fmt: skip
    one_line_error(code, err, "does not exist")
    monkeypatch.setenv(MASTER_KEY_ENV, KEY.hex())
    code, _, err = run(capsys, "hes", "--db", missing)
    one_line_error(code, err, "does not exist")


def test_master_key_on_the_command_line_warns_that_ps_shows_it(capsys, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.duckdb")
    code, _, err = run(capsys, "hes", "--master-key", KEY.hex(), "--db", missing)
    assert code == 2
    warning, error = err.strip().splitlines()
    assert warning.startswith("kenshin: warning: --master-key is visible")
    assert "`ps`" in warning and MASTER_KEY_ENV in warning and "--master-key-file" in warning
    assert "does not exist" in error and KEY.hex() not in err


def test_dev_key_is_a_simulation_flag_and_not_a_second_key(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = str(tmp_path / "missing.duckdb")
    code, _, err = run(capsys, "hes", "--dev-key", "--db", missing)
    one_line_error(code, err, "does not exist")  # the dev key was accepted
    code, _, err = run(capsys, "hes", "--dev-key", "--master-key-file",
                       str(key_file(tmp_path, 0o600)), "--db", missing)  # fmt: skip
    one_line_error(code, err, "--dev-key and --master-key-file both choose")
    monkeypatch.setenv(MASTER_KEY_ENV, KEY.hex())
    code, _, err = run(capsys, "fleet", "--dev-key", "--meters", "10")
    one_line_error(code, err, f"--dev-key and ${MASTER_KEY_ENV} both choose")
    assert len(DEV_MASTER_KEY) == 32


# ---- files 0600, directories 0700


def test_a_new_duckdb_store_is_private(open_umask: None, tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "k.duckdb")
    try:
        assert private(tmp_path / "k.duckdb")
        assert private(tmp_path / "k.duckdb.wal")  # the first tables are in the log
    finally:
        store.close()
    assert os.umask(0o022) == 0o022  # and the process's umask is as it was


def test_kenshin_creates_its_stores_and_their_directories_private(
    capsys, open_umask: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # kenshin makes only its own data directory, here data/
    db = Path("data") / "k.duckdb"
    code, _, err = run(capsys, "install", *FLEET, "--db", str(db))
    assert code == 0, err
    assert private(db)
    assert private(tmp_path / "data")
    assert os.umask(0o022) == 0o022  # the command put the process's umask back


def one_row(schema: pa.Schema, epoch_us: int) -> pa.Table:
    return pa.table(
        {f.name: pa.array([epoch_us if pa.types.is_timestamp(f.type) else 1], f.type)
         for f in schema}
    )  # fmt: skip


def test_archives_are_private(open_umask: None, tmp_path: Path) -> None:
    at = to_epoch_us(dt.datetime(2026, 4, 2, tzinfo=JST))
    archive = ParquetArchive(tmp_path / "archive")
    written = archive.write_month(
        month_of(at), one_row(READINGS_SCHEMA, at), one_row(REGISTER_READS_SCHEMA, at)
    )
    assert written == 1
    made = [tmp_path / "archive", *(tmp_path / "archive").rglob("*")]
    assert any(p.suffix == ".parquet" for p in made) and any(p.is_dir() for p in made[1:])
    assert all(private(p) for p in made), [oct(p.stat().st_mode) for p in made]


def test_broute_credentials_and_their_directory_are_private(
    open_umask: None, tmp_path: Path
) -> None:
    path = tmp_path / "secrets" / "kenshin-broute.json"
    CredentialRegistry(path).issue("0300000000000000000001")
    assert private(path) and private(path.parent)
