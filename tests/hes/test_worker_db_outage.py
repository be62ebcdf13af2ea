"""A head-end worker rides out a database outage (issue 12, defect 5): PostgreSQL stops taking
connections and drops the worker's in the middle of a stream; the worker waits, retries its
batch when the database is back, and ends with exactly the rows of a clean run, none twice.

The outage is real PostgreSQL behaviour on a throwaway database: ``ALLOW_CONNECTIONS false``
and ``pg_terminate_backend`` (what a restart looks like to a client: the connection is cut,
new ones are refused), then connections are allowed again three seconds later.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from kenshin.app.stores import open_replay_guard
from kenshin.app.system import policy_for, simulated_field
from kenshin.aroute.keys import KeyRing, load_master_key
from kenshin.aroute.link import MemoryBroker
from kenshin.aroute.mqtt import shared_up_subscription, up_topic
from kenshin.core.clock import SteppedClock
from kenshin.core.timeslots import JST
from kenshin.errors import StoreUnavailable
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.hes.service import HeadEnd
from kenshin.hes.worker import HesWorker
from kenshin.mdms.postgres_store import PostgresStore
from kenshin.mdms.service import MeterDataService
from kenshin.postgres import store_error
from tests.conftest import require_service

START = dt.datetime(2026, 5, 11, tzinfo=JST)
CONFIG = FleetConfig(n_meters=40, start=START, seed=7)


@pytest.fixture
def database() -> Iterator[str]:
    host, port = require_service("postgresql")
    admin = f"postgresql://postgres@{host}:{port}/postgres"
    name = f"kenshin_outage_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@{host}:{port}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _outage(dsn: str, seconds: float) -> None:
    """Refuse new connections to the database and cut the open ones; back after ``seconds``."""
    name = dsn.rsplit("/", 1)[1]
    admin = dsn.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
    time.sleep(seconds)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")


def _envelopes() -> list[tuple[str, bytes]]:
    field = simulated_field(Fleet(CONFIG), policy_for(CONFIG), KeyRing(load_master_key(None)))
    out = []
    for _ in range(4 * 12):
        field.step()
        out.extend((e.collector, e.payload) for e in field.due(field.now_us))
    return out


def _worker(store: PostgresStore, broker: MemoryBroker, root: str) -> HesWorker:
    meters = store.read_meters()
    mdms = MeterDataService(store, background=False)
    guard = open_replay_guard(store)
    assert guard is not None
    hes = HeadEnd(
        mdms,
        SteppedClock(START + dt.timedelta(hours=5)),
        meters,
        KeyRing(load_master_key(None)),
        guard,
        policy=policy_for(CONFIG),
        track_duties=False,
    )
    link = broker.connect(f"{root}-hes", (shared_up_subscription(root=root),), persistent=True)
    return HesWorker(hes, link, mdms.flush, batch_limit=4)


def _cells(dsn: str, schema: str) -> tuple[int, list[Any]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT meter_key, channel, resolution, interval_end, value FROM {schema}.readings"
        ).fetchall()
    return len(rows), sorted(rows)


def _run(dsn: str, schema: str, envelopes: list[tuple[str, bytes]], outage: bool) -> HesWorker:
    store = PostgresStore(dsn, schema=schema)
    store.write_meters(Fleet(CONFIG).meters_table())
    broker = MemoryBroker()
    root = f"ko-{uuid.uuid4().hex[:8]}"
    worker = _worker(store, broker, root)
    publisher = broker.connect(f"{root}-fleet")
    for collector, payload in envelopes:
        publisher.publish(up_topic(CONFIG.area.code, collector, root), payload)
    for _ in range(5):
        worker.step(0.0)
    down = threading.Thread(target=_outage, args=(dsn, 3.0)) if outage else None
    if down is not None:
        down.start()
        time.sleep(0.5)  # the connections are cut: the next batches find no database
    try:
        while worker.step(0.0):
            pass
    finally:
        if down is not None:
            down.join()
        store.close()
    assert worker.stored == len(envelopes)
    return worker


def test_a_database_outage_stops_nothing_and_loses_nothing(database: str) -> None:
    envelopes = _envelopes()
    _run(database, "clean", envelopes, outage=False)
    worker = _run(database, "outage", envelopes, outage=True)
    rows, cells = _cells(database, "outage")
    assert rows == len(set(map(tuple, cells))), "a value was stored twice"
    assert (rows, cells) == _cells(database, "clean"), "the run with an outage differs"
    assert worker.store_retries > 0  # the outage did hit a batch


def test_a_lost_connection_is_store_unavailable() -> None:
    """The classification the worker's retry rests on: connection failures are transient,
    everything else (a bad statement, a constraint) is not; one line either way."""
    lost = store_error("append failed", psycopg.OperationalError("server closed\nthe connection"))
    assert isinstance(lost, StoreUnavailable) and "\n" not in str(lost)
    broken = store_error("append failed", psycopg.errors.UniqueViolation("duplicate key"))
    assert not isinstance(broken, StoreUnavailable)
