"""A worker that stays down while another goes on loses nothing (issue 12, defect 3).

Two head-end workers share the uplink and one replay state (as PostgreSQL workers do; here a
shared memory guard over one store). Worker A takes a batch and dies before storing it; the
broker keeps that batch for A's session while B takes every newer frame of the same meters,
36 hours of them, so A's frames fall below their meters' 64-counter replay windows. When A is
back, its frames are late, not replays: their values are stored where the store holds none,
and the store ends with exactly the rows of a clean run. A replay of anything already stored
still adds nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from kenshin.app.system import policy_for, simulated_field
from kenshin.aroute.codec.decode import FrameDecoder
from kenshin.aroute.codec.envelope import decode_envelope
from kenshin.aroute.keys import KeyRing, load_master_key
from kenshin.aroute.link import EnvelopeLink, MemoryBroker
from kenshin.aroute.mqtt import shared_up_subscription, up_topic
from kenshin.aroute.replay import WINDOW, MemoryReplayGuard
from kenshin.core.batches import ReadingBatch
from kenshin.core.clock import SteppedClock
from kenshin.core.quality import Source
from kenshin.core.schema import REGISTER_READS_SCHEMA
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.hes.ingest import decoded_to_batch
from kenshin.hes.service import HeadEnd
from kenshin.hes.worker import HesWorker
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.service import MeterDataService

START = dt.datetime(2026, 5, 11, tzinfo=JST)
CONFIG = FleetConfig(n_meters=40, start=START, seed=5)
HOURS = 36


@pytest.fixture(scope="module")
def envelopes() -> list[tuple[str, bytes]]:
    field = simulated_field(Fleet(CONFIG), policy_for(CONFIG), KeyRing(load_master_key(None)))
    out = []
    for _ in range(HOURS * 12):
        field.step()
        out.extend((e.collector, e.payload) for e in field.due(field.now_us))
    return out


class Plant:
    """One store, one replay state, and the workers that share them."""

    def __init__(self) -> None:
        self.store = DuckDBStore(":memory:")
        self.store.write_meters(Fleet(CONFIG).meters_table())
        self.meters = self.store.read_meters()
        self.guard = MemoryReplayGuard(self.meters.num_rows)
        self.broker = MemoryBroker()
        self.root = f"kl-{uuid.uuid4().hex[:8]}"

    def link(self, name: str) -> EnvelopeLink:
        return self.broker.connect(
            f"{self.root}-{name}", (shared_up_subscription(root=self.root),), persistent=True
        )

    def worker(self, link: EnvelopeLink) -> HesWorker:
        mdms = MeterDataService(self.store, background=False)
        hes = HeadEnd(
            mdms,
            SteppedClock(START + dt.timedelta(hours=HOURS + 1)),
            self.meters,
            KeyRing(load_master_key(None)),
            self.guard,
            policy=policy_for(CONFIG),
            track_duties=False,
        )
        return HesWorker(hes, link, mdms.flush, batch_limit=16)

    def publish(self, envelopes: list[tuple[str, bytes]]) -> None:
        publisher = self.broker.connect(f"{self.root}-fleet")
        for collector, payload in envelopes:
            publisher.publish(up_topic(CONFIG.area.code, collector, self.root), payload)

    def stored(self) -> tuple[int, list[Any], int]:
        table = self.store._arrow(
            "SELECT meter_key, channel, resolution, interval_end, value FROM readings"
        )
        cells = sorted(zip(*(c.to_pylist() for c in table.columns), strict=True))
        # a register read is a fact about an instant: two frames may both carry it (an A1 push
        # and an A2 day both read the register at midnight); compare the distinct facts
        facts = self.store._arrow(
            "SELECT DISTINCT meter_key, channel, read_at, register FROM register_reads"
        )
        return table.num_rows, cells, facts.num_rows


def _drain(worker: HesWorker) -> None:
    while worker.step(0.0):
        pass


def test_a_worker_down_for_36_hours_loses_nothing(envelopes: list[tuple[str, bytes]]) -> None:
    clean = Plant()
    only = clean.worker(clean.link("only"))
    clean.publish(envelopes)
    _drain(only)

    plant = Plant()
    a_link = plant.link("a")
    b = plant.worker(plant.link("b"))
    plant.publish(envelopes)
    taken = a_link.receive(0.0, 16)  # A takes its first batch and dies before storing it
    assert taken
    plant.broker.kill(f"{plant.root}-a")
    _drain(b)  # B goes on alone: every other envelope, 36 hours of newer frames
    a = plant.worker(plant.link("a"))  # A is back: the broker gives it its batch again
    _drain(a)

    assert a.hes.stats.frames_late > 0  # below their windows: not replays
    first_counter_gap = WINDOW  # (the windows had moved at least this far meanwhile)
    assert b.hes.stats.frames_accepted > first_counter_gap
    rows, cells, registers = plant.stored()
    assert rows == len(set(cells)), "a value was stored twice"
    assert (rows, cells, registers) == clean.stored(), "the run with a down worker differs"


def test_late_frames_already_stored_add_nothing(envelopes: list[tuple[str, bytes]]) -> None:
    """A replay of old, stored frames (an attacker, or a redelivery after a commit whose
    acknowledgement was lost) is older than the window too: nothing new is stored."""
    plant = Plant()
    worker = plant.worker(plant.link("w"))
    plant.publish(envelopes)
    _drain(worker)
    before = plant.stored()
    plant.publish(envelopes[:50])
    _drain(worker)
    assert worker.hes.stats.frames_late > 0
    assert plant.stored() == before


def test_pushes_taken_after_their_answers_add_no_version(
    envelopes: list[tuple[str, bytes]],
) -> None:
    """Worker A takes a batch and dies; while it is away the duty worker re-reads those slots
    and the answers are stored (here: written as the MDMS stores a re-read answer, the same
    values). When A is back, its pushes are fresh (inside their windows) but repeat what the
    cells hold: A compares them with the store while it catches up, and stores none twice."""
    plant = Plant()
    a_link = plant.link("a")
    plant.publish(envelopes[:40])
    taken = a_link.receive(0.0, 16)  # A takes its first batch and dies before storing it
    assert taken
    plant.broker.kill(f"{plant.root}-a")
    decoder = FrameDecoder(
        plant.worker(plant.link("x")).hes.registry, KeyRing(load_master_key(None))
    )
    frames = [f for m in taken for f in decode_envelope(m.payload).frames]
    authentic = decoder.authenticate(frames)
    decoded = decoder.parse(authentic, np.ones(len(authentic), dtype=bool))
    answers = decoded_to_batch(decoded, 0).readings
    answers = answers.set_column(
        answers.schema.get_field_index("source"),
        "source",
        pa.array(np.full(answers.num_rows, int(Source.REREAD), np.uint8)),
    )
    assert answers.num_rows > 0
    answered = MeterDataService(plant.store, background=False)
    answered.ingest(ReadingBatch(answers, REGISTER_READS_SCHEMA.empty_table()))
    answered.flush()
    before = plant.stored()[0]

    a = plant.worker(plant.link("a"))  # back: the broker gives it its batch again
    assert a.catching_up
    _drain(a)
    assert not a.catching_up  # a short batch: caught up
    rows, cells, _ = plant.stored()
    assert rows == len({(m, c, r, t) for m, c, r, t, _ in cells}), "a value stored twice"
    assert rows > before  # the pushes of cells nobody answered were stored


def test_a_copy_sent_again_after_its_answers_adds_no_version(
    envelopes: list[tuple[str, bytes]],
) -> None:
    """The fleet publishes again what a broker may have lost (Backlog.resend_passed), marked
    ``again``; by then the duty worker may have re-read those slots and stored the answers. A
    worker that has long caught up compares such a copy with the store and stores nothing
    twice (the broker drill once stored 6 rows twice without this)."""
    plant = Plant()
    worker = plant.worker(plant.link("w"))
    plant.publish(envelopes[200:240])  # the worker's ordinary traffic: it has caught up
    _drain(worker)
    assert not worker.catching_up
    later = envelopes[240:260]
    decoder = FrameDecoder(worker.hes.registry, KeyRing(load_master_key(None)))
    frames = [f for _, p in later for f in decode_envelope(p).frames]
    authentic = decoder.authenticate(frames)
    decoded = decoder.parse(authentic, np.ones(len(authentic), dtype=bool))
    answers = decoded_to_batch(decoded, 0).readings  # the re-read answers, stored first
    answers = answers.set_column(
        answers.schema.get_field_index("source"),
        "source",
        pa.array(np.full(answers.num_rows, int(Source.REREAD), np.uint8)),
    )
    answered = MeterDataService(plant.store, background=False)
    answered.ingest(ReadingBatch(answers, REGISTER_READS_SCHEMA.empty_table()))
    answered.flush()
    before = plant.stored()[0]
    publisher = plant.broker.connect(f"{plant.root}-fleet")
    for collector, payload in later:  # the copies, sent again
        publisher.publish(up_topic(CONFIG.area.code, collector, plant.root), payload, again=True)
    _drain(worker)
    rows, cells, _ = plant.stored()
    assert rows == before, "a copy sent again stored values the answers had stored"
    assert rows == len({(m, c, r, t) for m, c, r, t, _ in cells})
