"""The worker keeping the duties counts a value as received only once a worker stored it
(issue 12, defect 3): values it saw go by but nobody stored are missed and re-read.

Two workers share the uplink on the in-memory twin of the link; A also observes every envelope
and keeps the duties, B only stores. B takes a batch and dies for good: the broker keeps B's
share for B's session, so A sees those envelopes on its plain subscription but never a report
that they were stored. Once the wait for a report is over (``confirm_within_s`` of wall time,
a clock of the test's here), A's A1 tracker must count exactly values that are in the store,
and ask meters again for the ones that are not.
"""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np

from kenshin.app.system import policy_for, simulated_field
from kenshin.aroute.keys import KeyRing, load_master_key
from kenshin.aroute.link import MemoryBroker
from kenshin.aroute.mqtt import (
    shared_up_subscription,
    stored_subscription,
    up_subscription,
    up_topic,
)
from kenshin.aroute.replay import MemoryReplayGuard
from kenshin.core.clock import FollowClock
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.hes.duties import MISSING
from kenshin.hes.policy import Duty
from kenshin.hes.service import HeadEnd
from kenshin.hes.worker import HesWorker, WorkerReports
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.service import MeterDataService

START = dt.datetime(2026, 5, 11, tzinfo=JST)
CONFIG = FleetConfig(n_meters=40, start=START, seed=3)


def test_values_nobody_stored_are_missed_and_re_read() -> None:
    keys = KeyRing(load_master_key(None))
    field = simulated_field(Fleet(CONFIG), policy_for(CONFIG), keys)
    envelopes = []
    for _ in range(4 * 12):
        field.step()
        envelopes.extend((e.collector, e.payload) for e in field.due(field.now_us))

    store = DuckDBStore(":memory:")
    store.write_meters(Fleet(CONFIG).meters_table())
    meters = store.read_meters()
    guard = MemoryReplayGuard(meters.num_rows)  # one replay state, as PostgreSQL workers share
    broker = MemoryBroker()
    wall = [1000.0]  # the workers' monotonic clock [s]
    root = f"ko-{uuid.uuid4().hex[:8]}"

    def worker(name: str, duties: bool) -> HesWorker:
        mdms = MeterDataService(store, background=False)
        hes = HeadEnd(
            mdms, FollowClock(START), meters, keys, guard, policy=policy_for(CONFIG),
            track_duties=duties,
        )  # fmt: skip
        link = broker.connect(
            f"{root}-{name}", (shared_up_subscription(root=root),), persistent=True
        )
        observer = (
            broker.connect(
                f"{root}-{name}-observer",
                (up_subscription(root=root), stored_subscription(root=root)),
            )
            if duties
            else None
        )
        reports = WorkerReports(name, root)
        return HesWorker(
            hes, link, mdms.flush, observer=observer, reports=reports, _monotonic=lambda: wall[0]
        )

    a, b = worker("a", True), worker("b", False)
    publisher = broker.connect(f"{root}-fleet")
    for collector, payload in envelopes:
        publisher.publish(up_topic(CONFIG.area.code, collector, root), payload)
    assert b.link.receive(0.0, 8)  # B takes a batch and dies before storing it
    broker.kill(f"{root}-b")
    while a.step(0.0):
        a.tick(busy=True)
    for _ in range(3):  # a last look at the reports
        a.step(0.0)
        a.tick(busy=True)
    assert a.ledger is not None and len(a.ledger) > 0  # B's share: seen, never named stored
    assert a.ledger.confirmed > 0  # A's own share was named
    rereads_before = a.hes.stats.rereads_requested
    wall[0] += a.confirm_within_s or 0.0  # the wait for a report is over
    a.step(0.0)
    a.tick(busy=True)
    assert len(a.ledger) == 0
    assert a.hes.stats.values_retracted > 0

    stored = store._arrow(
        "SELECT meter_key, epoch_us(interval_end) AS t FROM readings "
        "WHERE resolution = 30 AND channel = 1 AND source = 1"
    )
    stored_cells = set(
        zip(stored.column("meter_key").to_pylist(), stored.column("t").to_pylist(), strict=True)
    )
    tracker = a.hes.trackers[Duty.A1]
    rows, meters_seen = np.nonzero(tracker.delay_s != MISSING)
    counted = {
        (int(m), int(tracker.slot_end_us[r])) for r, m in zip(rows, meters_seen, strict=True)
    }
    assert counted, "the duty worker counted nothing"
    assert counted <= stored_cells, "counted as received, but no worker stored it"
    # what B held is asked for again: a RESEND for each meter whose values were taken back
    assert a.hes.stats.rereads_requested > rereads_before
    now_us = to_epoch_us(a.hes.clock.now())
    assert now_us > to_epoch_us(START) + 2 * 3_600_000_000  # deadlines were judged
