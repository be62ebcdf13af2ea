"""Nothing outside the authenticated frame drives the head-end (issue 12, SPEC X2/X4).

A worker keeping the duties behind a simulated fleet (its clock follows the collectors) first
takes three hours of a small fleet's genuine envelopes through the in-memory twin of the link.
Then hostile messages arrive on arbitrary topics: random bytes, envelopes with any send time,
collector id and frames, genuine envelopes replayed under other topics or re-dated a year ahead.
The worker must keep running, count and drop what is malformed, store nothing new, and neither
its clock nor its routes back to the collectors may move.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kenshin.app.services import committed_replay_guard
from kenshin.app.system import policy_for, simulated_field
from kenshin.aroute.codec.envelope import SENT_AT_MAX_US, decode_envelope, encode_envelope
from kenshin.aroute.keys import KeyRing, load_master_key
from kenshin.aroute.link import MemoryBroker, MemoryLink
from kenshin.aroute.mqtt import shared_up_subscription, up_topic
from kenshin.core.clock import FollowClock
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.hes.service import CLOCK_LEAD_US, HeadEnd
from kenshin.hes.worker import HesWorker
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.service import MeterDataService

START = dt.datetime(2026, 5, 11, tzinfo=JST)
CONFIG = FleetConfig(n_meters=60, start=START, seed=11)
ROOT = f"kh-{uuid.uuid4().hex[:8]}"
AREA = CONFIG.area.code
YEAR_US = 365 * 86_400_000_000


class Rig:
    """One worker with duties on a memory link, fed three hours of genuine envelopes."""

    def __init__(self) -> None:
        keys = KeyRing(load_master_key(None))
        field = simulated_field(Fleet(CONFIG), policy_for(CONFIG), keys)
        self.genuine: list[tuple[str, bytes]] = []
        for _ in range(3 * 12):
            field.step()
            self.genuine.extend((e.collector, e.payload) for e in field.due(field.now_us))
        self.later: list[tuple[str, bytes]] = []  # the next half hour, not yet delivered
        for _ in range(6):
            field.step()
            self.later.extend((e.collector, e.payload) for e in field.due(field.now_us))
        self.store = DuckDBStore(":memory:")
        self.store.write_meters(Fleet(CONFIG).meters_table())
        meters = self.store.read_meters()
        mdms = MeterDataService(self.store, background=False)
        self.clock = FollowClock(START)
        self.hes = HeadEnd(
            mdms,
            self.clock,
            meters,
            keys,
            committed_replay_guard(self.store, meters.num_rows),
            policy=policy_for(CONFIG),
        )
        self.broker = MemoryBroker()
        link = self.broker.connect(
            f"{ROOT}-hes", (shared_up_subscription(root=ROOT),), persistent=True
        )
        self.worker = HesWorker(self.hes, link, mdms.flush, inline_duties=True)
        self.publisher: MemoryLink = self.broker.connect(f"{ROOT}-pub")
        for collector, payload in self.genuine:
            self.publisher.publish(up_topic(AREA, collector, ROOT), payload)
        self.drain()

    def drain(self) -> None:
        while self.worker.step(0.0):
            self.worker.tick(busy=True)

    def rows(self) -> int:
        return int(self.store._arrow("SELECT count(*) AS n FROM readings").column("n")[0].as_py())

    def snapshot(self) -> tuple[object, ...]:
        return (
            self.clock.now(),
            dict(self.hes.origins),
            self.hes.route.copy().tolist(),
            self.rows(),
        )


@pytest.fixture(scope="module")
def rig() -> Rig:
    rig = Rig()
    assert rig.hes.stats.frames_accepted > 100 and rig.hes.origins  # the baseline worked
    return rig


def _last_vouched_us(rig: Rig) -> int:
    ends = rig.store._arrow("SELECT max(interval_end) AS t FROM readings").column("t")[0].as_py()
    return to_epoch_us(ends)


def test_the_clock_follows_the_fleet_within_the_lead(rig: Rig) -> None:
    now_us = to_epoch_us(rig.clock.now())
    assert now_us > to_epoch_us(START) + 2 * 3_600_000_000  # it did follow the fleet
    assert now_us <= _last_vouched_us(rig) + CLOCK_LEAD_US


def test_the_envelope_that_once_killed_the_head_end_is_dropped(rig: Rig) -> None:
    before = rig.snapshot()
    malformed = rig.hes.stats.malformed_envelopes
    rig.publisher.publish(
        up_topic("03", "c00001", ROOT), b"KSA\x01\x01c" + struct.pack(">qIH", 2**62, 0, 0)
    )
    rig.drain()
    assert rig.hes.stats.malformed_envelopes == malformed + 1
    assert rig.snapshot() == before


def test_a_genuine_envelope_dated_a_year_ahead_moves_the_clock_only_to_its_frames(
    rig: Rig,
) -> None:
    """The fresh frames inside are stored (they are authentic); the header's send time, which
    nothing authenticates, is believed only up to CLOCK_LEAD past what the frames vouch for."""
    collector, payload = rig.later[0]
    envelope = decode_envelope(payload)
    forged = encode_envelope(
        collector, envelope.sent_at_us + YEAR_US, envelope.sequence, envelope.frames
    )
    rows = rig.rows()
    rig.publisher.publish(up_topic(AREA, collector, ROOT), forged)
    rig.drain()
    assert rig.rows() > rows
    assert to_epoch_us(rig.clock.now()) <= _last_vouched_us(rig) + CLOCK_LEAD_US
    slo_days = {s.day for s in rig.hes.slo()}
    assert max(slo_days) <= (START + dt.timedelta(days=2)).date()  # no year of "missed" days


def test_a_genuine_envelope_replayed_under_another_area_changes_no_route(rig: Rig) -> None:
    before = rig.snapshot()
    replayed = rig.hes.stats.frames_rejected_total
    for collector, payload in rig.genuine[:20]:
        rig.publisher.publish(up_topic("99", collector, ROOT), payload)
    rig.drain()
    assert rig.hes.stats.frames_rejected_total > replayed  # refused as replays
    assert rig.snapshot() == before
    assert all(area == AREA for area in rig.hes.origins.values())


def _envelope_bytes(draw: st.DrawFn, rig: Rig) -> bytes:
    kind = draw(st.sampled_from(["random", "header", "frames", "genuine-frames"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    sent_at = draw(st.integers(-(2**63), 2**63 - 1))
    collector = draw(st.text(max_size=20))
    name = collector.encode()[:255]
    frames: list[bytes]
    if kind == "header":
        frames = []
    elif kind == "frames":
        frames = draw(st.lists(st.binary(min_size=0, max_size=120), max_size=5))
    else:  # already-accepted frames under any header: replays
        genuine = decode_envelope(rig.genuine[draw(st.integers(0, len(rig.genuine) - 1))][1])
        frames = genuine.frames
    body = b"".join(struct.pack(">H", len(f)) + f for f in frames)
    return (
        b"KSA\x01" + bytes([len(name)]) + name + struct.pack(">qIH", sent_at, 0, len(frames)) + body
    )


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_hostile_messages_on_any_topic_move_nothing(rig: Rig, data: st.DataObject) -> None:
    before = rig.snapshot()
    for _ in range(data.draw(st.integers(1, 4))):
        payload = _envelope_bytes(data.draw, rig)
        area = data.draw(st.text(max_size=6).filter(lambda s: not set(s) & set("/+#")))
        collector = data.draw(st.text(max_size=8).filter(lambda s: not set(s) & set("/+#")))
        rig.publisher.publish(f"{ROOT}/{area}/{collector}/up", payload)
    rig.drain()  # raises if the worker would crash
    assert rig.snapshot() == before


def test_send_times_at_the_edges_are_accepted_or_refused_cleanly(rig: Rig) -> None:
    before = rig.snapshot()
    for sent_at in (0, SENT_AT_MAX_US, SENT_AT_MAX_US + 1, -1, 2**63 - 1):
        payload = b"KSA\x01\x02c9" + struct.pack(">qIH", sent_at, 0, 0)
        rig.publisher.publish(up_topic(AREA, "c9", ROOT), payload)
    rig.drain()
    assert rig.snapshot() == before
    assert np.all(rig.hes.route >= -1)


def test_a_flood_of_malformed_envelopes_costs_a_few_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker-side flood must not become a log flood: one line per batch, at most 20 a
    minute, and the next line that gets through says how many were not logged."""
    from kenshin.hes.service import MalformedLog

    now = [0.0]
    flood = MalformedLog(max_lines=20, period_s=60.0, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="kenshin.hes"):
        for _ in range(1000):
            flood.report(["not an A-route envelope (bad magic)"] * 3)
        assert len(caplog.records) == 20
        now[0] = 61.0
        flood.report(["envelope truncated in its header"])
    assert len(caplog.records) == 21
    assert "and 2940 earlier, not logged" in caplog.records[-1].getMessage()
