"""The head-end worker step killed at its two dangerous moments, on the in-memory twin of the
link and again through Mosquitto: nothing lost, nothing stored twice (kenshin.hes.worker).

A small fleet's envelopes (every frame its collectors forwarded over six hours) are published
once. A clean worker stores them all; then a worker is killed (1) after taking a batch but before
storing it, or (2) after storing it but before acknowledging it, and a new worker with the same
client id takes over its session. Both runs must store exactly the same rows.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from kenshin.app.services import committed_replay_guard
from kenshin.app.system import policy_for, simulated_field
from kenshin.aroute.keys import KeyRing, load_master_key
from kenshin.aroute.link import EnvelopeLink, MemoryBroker
from kenshin.aroute.mqtt import MqttLink, shared_up_subscription, up_topic
from kenshin.core.clock import SteppedClock
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.hes.service import HeadEnd
from kenshin.hes.worker import HesWorker
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.service import MeterDataService
from tests.conftest import require_service

START = dt.datetime(2026, 5, 11, tzinfo=JST)
CONFIG = FleetConfig(n_meters=60, start=START, seed=11)


class Killed(Exception):
    """The worker process dies here."""


@pytest.fixture(scope="module")
def envelopes() -> list[tuple[str, bytes]]:
    """(collector, envelope) of six hours of the fleet, as its collectors forwarded them."""
    field = simulated_field(Fleet(CONFIG), policy_for(CONFIG), KeyRing(load_master_key(None)))
    out = []
    for _ in range(6 * 12):
        field.step()
        out.extend((e.collector, e.payload) for e in field.due(field.now_us))
    assert len(out) > 100
    return out


@dataclass
class Transport:
    """Connects links of one kind (the memory twin or Mosquitto) under a topic root."""

    connect: Callable[[str, bool, str], EnvelopeLink]  # (client id, worker?, root) → link
    kill: Callable[[str, EnvelopeLink], None]


@pytest.fixture(params=["memory", "mosquitto"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    if request.param == "memory":
        broker = MemoryBroker()

        def connect(client_id: str, worker: bool, root: str) -> EnvelopeLink:
            subs = (shared_up_subscription(root=root),) if worker else ()
            return broker.connect(f"{root}-{client_id}", subs, persistent=worker)

        yield Transport(connect, lambda _cid, link: broker.kill(link.client_id))  # type: ignore[attr-defined]
        return
    host, port = require_service("mosquitto")
    links: list[MqttLink] = []

    def connect_mqtt(client_id: str, worker: bool, root: str) -> EnvelopeLink:
        link = MqttLink(
            f"mqtt://{host}:{port}",
            f"{root}-{client_id}",
            subscriptions=(shared_up_subscription(root=root),) if worker else (),
            manual_ack=worker,
            persistent=worker,
        )
        links.append(link)
        return link

    def kill_mqtt(_cid: str, link: EnvelopeLink) -> None:
        link.close()  # what it had not acknowledged stays with its persistent session

    yield Transport(connect_mqtt, kill_mqtt)
    for link in links:
        link.close()


def _worker(store: DuckDBStore, link: EnvelopeLink) -> tuple[HesWorker, MeterDataService]:
    """A worker as `kenshin hes` starts one: roster and replay windows from the store."""
    meters = store.read_meters()
    mdms = MeterDataService(store, background=False)
    hes = HeadEnd(
        mdms,
        SteppedClock(START + dt.timedelta(hours=7)),
        meters,
        KeyRing(load_master_key(None)),
        committed_replay_guard(store, meters.num_rows),
        policy=policy_for(CONFIG),
        track_duties=False,
    )
    return HesWorker(hes, link, mdms.flush, batch_limit=8), mdms


def _store() -> DuckDBStore:
    store = DuckDBStore(":memory:")
    store.write_meters(Fleet(CONFIG).meters_table())
    return store


def _publish(transport: Transport, envelopes: list[tuple[str, bytes]], root: str) -> None:
    publisher = transport.connect("fleet", False, root)
    area = CONFIG.area.code
    for collector, payload in envelopes:
        publisher.publish(up_topic(area, collector, root), payload)
    if isinstance(publisher, MqttLink):
        publisher.drain()


def _drain(worker: HesWorker, at_least: int, timeout_s: float = 60.0) -> None:
    """Step until ``at_least`` envelopes are stored, then until nothing came for a second
    (a broker may deliver an acknowledged message again when the acknowledgement was lost
    with the killed client: those come on top). Fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        if worker.step(0.1):
            quiet_since = time.monotonic()
        elif worker.stored >= at_least and time.monotonic() - quiet_since > 1.0:
            return
    raise AssertionError(f"only {worker.stored} of at least {at_least} envelopes stored")


def _stored(store: DuckDBStore) -> tuple[int, int, list[Any]]:
    """(rows, distinct cells, the cells with values) of what the store holds."""
    table = store._arrow(
        "SELECT meter_key, channel, resolution, interval_end, value, source FROM readings"
    )
    cells = sorted(
        zip(*(table.column(i).to_pylist() for i in range(4)), strict=True)  # type: ignore[misc]
    )
    registers = store._arrow("SELECT count(*) AS n FROM register_reads").column("n")[0].as_py()
    return table.num_rows, len(set(cells)), [cells, registers]


def _clean_run(transport: Transport, envelopes: list[tuple[str, bytes]]) -> tuple[Any, ...]:
    store = _store()
    root = f"kw-{uuid.uuid4().hex[:8]}"
    worker, _ = _worker(store, transport.connect("clean", True, root))
    _publish(transport, envelopes, root)
    _drain(worker, len(envelopes))
    assert worker.stored == len(envelopes)
    return _stored(store)


@pytest.mark.parametrize("moment", ["after_receive", "after_store"])
def test_a_killed_worker_loses_nothing_and_stores_nothing_twice(
    transport: Transport, envelopes: list[tuple[str, bytes]], moment: str
) -> None:
    clean = _clean_run(transport, envelopes)
    store = _store()
    root = f"kw-{uuid.uuid4().hex[:8]}"
    link = transport.connect("hes-1", True, root)
    worker, _ = _worker(store, link)
    _publish(transport, envelopes, root)
    for _ in range(5):  # a few batches go through normally
        worker.step(1.0)
    assert 0 < worker.stored < len(envelopes)
    stored_before = worker.stored

    if moment == "after_receive":

        def die(_counters: object) -> None:
            raise Killed

        worker.flush = die
    else:
        ack = link.ack

        def die_on_ack(delivery: Any) -> None:
            ack(delivery)  # the first acknowledgement of the batch gets out, then it dies
            raise Killed

        link.ack = die_on_ack  # type: ignore[method-assign]
    with pytest.raises(Killed):
        worker.step(1.0)
    transport.kill("hes-1", link)  # no goodbye, nothing abandoned: the process is gone

    successor, _ = _worker(store, transport.connect("hes-1", True, root))
    _drain(successor, len(envelopes) - stored_before - (1 if moment == "after_store" else 0))
    rows, distinct, cells = _stored(store)
    assert rows == distinct, "a value was stored twice"
    assert (rows, distinct, cells) == clean, "the killed run stored something else"
    redelivered = successor.hes.stats.frames_redelivered
    if moment == "after_store":
        assert redelivered > 0  # the stored batch came again and was recognised
    else:
        assert redelivered == 0  # nothing of it was stored: admitted afresh
