"""``--postgres`` wherever the store is chosen (MDMS issue): simulate refuses to mix fleets
unless told to overwrite, and ``kenshin up`` runs on PostgreSQL in a schema of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from kenshin.app.live import UP_SCHEMA
from kenshin.mdms.postgres_store import PostgresStore
from tests.conftest import require_service
from tests.test_cli import free_port, run


@pytest.fixture
def database() -> Iterator[str]:
    """A throwaway database: the commands use their default schemas in it."""
    host, port = require_service("postgresql")
    admin = f"postgresql://postgres@{host}:{port}/postgres"
    name = f"kenshin_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@{host}:{port}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_simulate_on_postgres_refuses_to_mix_fleets_unless_overwriting(capsys, database):
    args = ["simulate", "--meters", "40", "--days", "1", "--start", "2026-04-01"]
    code, out, _ = run(capsys, *args, "--postgres", database)
    assert code == 0, out
    code, _, err = run(capsys, *args, "--postgres", database)
    assert code == 2 and "--overwrite" in err
    code, out, _ = run(capsys, "simulate", "--meters", "25", "--days", "1", "--start",
                       "2026-04-01", "--postgres", database, "--overwrite")  # fmt: skip
    assert code == 0, out
    store = PostgresStore(database)
    try:
        assert store.meter_count() == 25  # replaced, not added to
    finally:
        store.close()


def test_up_runs_on_postgres(database):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kenshin", "up", "--meters", "150", "--speed", "3600",
         "--backfill-hours", "1", "--port", str(port), "--postgres", database],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        text=True,
    )  # fmt: skip
    try:
        health = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and health is None:
            try:
                url = f"http://127.0.0.1:{port}/api/v1/health"
                with urllib.request.urlopen(url, timeout=2) as r:
                    health = json.load(r)
            except OSError:
                time.sleep(0.3)
        assert health is not None, "kenshin up --postgres did not serve /api/v1/health in 60 s"
        assert health["meters"] == 150
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    store = PostgresStore(database, schema=UP_SCHEMA, read_only=True)
    try:
        assert store.meter_count() == 150
        assert sum(store.reading_counts().values()) > 0
    finally:
        store.close()
