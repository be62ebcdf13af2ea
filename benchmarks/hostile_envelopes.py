"""Hostile envelopes through a head-end worker (issue 12): ≥ 100,000, 0 crashes, clock unchanged.

A worker keeping the duties behind a simulated fleet (its clock follows the collectors) takes
three hours of a 200-meter fleet's genuine envelopes through the in-memory twin of the link, then
N hostile messages on random topics, in batches as a broker would hand them over:

- random bytes; envelope headers with any send time (int64) and collector id, no frames;
- envelopes of random frames; genuine frames (already accepted: replays) under any header;
- genuine, not yet delivered envelopes re-dated up to a year ahead, on their own topic (their
  frames are fresh: stored, but the clock may move only to what they vouch for).

Half of the forged headers are well-formed (a valid collector id, a send time before 2100), so
their frames reach authentication and the replay check; topics are random areas and collectors.

Counts crashes (any exception out of the worker step), and checks that the clock is where the
genuine frames put it (at most ``CLOCK_LEAD`` past their newest interval end), that no route
moved and that nothing but the re-dated envelopes' fresh values was stored.

Usage: python benchmarks/hostile_envelopes.py [--envelopes 100000] [--seed 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import struct
import time
import uuid

import numpy as np
from rich.console import Console
from rich.progress import Progress

from _figures import Figure, add_json_option, figures_table, record
from kenshin.app.services import committed_replay_guard
from kenshin.app.system import policy_for, simulated_field
from kenshin.aroute.codec.envelope import SENT_AT_MAX_US, decode_envelope, encode_envelope
from kenshin.aroute.keys import KeyRing, load_master_key
from kenshin.aroute.link import MemoryBroker
from kenshin.aroute.mqtt import shared_up_subscription, up_topic
from kenshin.core.clock import FollowClock
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.hes.service import CLOCK_LEAD_US, HeadEnd
from kenshin.hes.worker import HesWorker
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.service import MeterDataService

START = dt.datetime(2026, 5, 11, tzinfo=JST)
YEAR_US = 365 * 86_400_000_000


def _header(collector: bytes, sent_at: int, frames: list[bytes]) -> bytes:
    body = b"".join(struct.pack(">H", len(f)) + f for f in frames)
    name = collector[:255]
    return (
        b"KSA\x01" + bytes([len(name)]) + name + struct.pack(">qIH", sent_at, 0, len(frames)) + body
    )


def _area(rng: np.random.Generator) -> str:
    """Two printable characters that can be a topic level."""
    text = "".join(map(chr, rng.integers(0x21, 0x7E, size=2).tolist()))
    return text.replace("/", "_").replace("+", "_").replace("#", "_")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envelopes", type=int, default=100_000)
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    add_json_option(parser)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    config = FleetConfig(n_meters=args.meters, start=START, seed=args.seed)
    keys = KeyRing(load_master_key(None))
    field = simulated_field(Fleet(config), policy_for(config), keys)
    genuine, later = [], []
    for step in range(3 * 12 + 12):
        field.step()
        out = later if step >= 36 else genuine
        out.extend((e.collector, e.payload) for e in field.due(field.now_us))

    store = DuckDBStore(":memory:")
    store.write_meters(Fleet(config).meters_table())
    meters = store.read_meters()
    mdms = MeterDataService(store, background=False)
    clock = FollowClock(START)
    hes = HeadEnd(
        mdms, clock, meters, keys, committed_replay_guard(store, meters.num_rows),
        policy=policy_for(config),
    )  # fmt: skip
    broker = MemoryBroker()
    root = f"kb-{uuid.uuid4().hex[:8]}"
    link = broker.connect(f"{root}-hes", (shared_up_subscription(root=root),), persistent=True)
    worker = HesWorker(hes, link, mdms.flush, inline_duties=True)
    publisher = broker.connect(f"{root}-pub")
    area = config.area.code
    for collector, payload in genuine:
        publisher.publish(up_topic(area, collector, root), payload)
    while worker.step(0.0):
        worker.tick(busy=True)

    def newest_end_us() -> int:
        t = store._arrow("SELECT max(interval_end) AS t FROM readings").column("t")[0].as_py()
        return to_epoch_us(t)

    routes = hes.route.copy()
    origins = dict(hes.origins)
    replayable = [decode_envelope(p).frames for _, p in genuine]
    crashes = 0
    kinds = np.array(["random", "header", "frames", "replay", "redated"])
    counts = dict.fromkeys(kinds.tolist(), 0)
    redated = 0
    t0 = time.perf_counter()
    with Progress(transient=True) as progress:
        task = progress.add_task("hostile envelopes", total=args.envelopes)
        sent = 0
        while sent < args.envelopes:
            n = min(256, args.envelopes - sent)
            for _ in range(n):
                kind = str(rng.choice(kinds, p=[0.3, 0.2, 0.2, 0.29, 0.01]))
                if kind == "redated" and redated >= len(later):
                    kind = "replay"
                counts[kind] += 1
                # half with a well-formed header (a valid id, a send time up to 2100), so
                # their frames reach authentication and the replay check
                valid = rng.random() < 0.5
                collector = (
                    f"c{int(rng.integers(1000)):05d}".encode()
                    if valid
                    else rng.bytes(int(rng.integers(0, 12)))
                )
                sent_at = int(
                    rng.integers(0, SENT_AT_MAX_US)
                    if valid
                    else rng.integers(-(2**63), 2**63 - 1, dtype=np.int64)
                )
                topic = f"{root}/{_area(rng)}/c{int(rng.integers(1000)):05d}/up"
                if kind == "random":
                    payload = rng.bytes(int(rng.integers(0, 200)))
                elif kind == "header":
                    payload = _header(collector, sent_at, [])
                elif kind == "frames":
                    frames = [rng.bytes(int(rng.integers(0, 120))) for _ in range(3)]
                    payload = _header(collector, sent_at, frames)
                elif kind == "replay":
                    frames = replayable[int(rng.integers(len(replayable)))]
                    payload = _header(collector, sent_at, frames)
                else:
                    name, original = later[redated]
                    topic = up_topic(area, name, root)  # its own topic: only the date is forged
                    redated += 1
                    envelope = decode_envelope(original)
                    ahead = int(rng.integers(1, YEAR_US))
                    payload = encode_envelope(
                        name, envelope.sent_at_us + ahead, envelope.sequence, envelope.frames
                    )
                publisher.publish(topic, payload)
            sent += n
            try:
                while worker.step(0.0):
                    worker.tick(busy=True)
            except Exception:  # counting crashes is the point
                crashes += 1
            progress.update(task, completed=sent)
    seconds = time.perf_counter() - t0
    lead_ok = to_epoch_us(clock.now()) <= newest_end_us() + CLOCK_LEAD_US
    moved = int(np.count_nonzero(hes.route != routes))
    origins_moved = sum(1 for c, a in hes.origins.items() if origins.get(c, a) != a)
    st = hes.stats
    figures = [
        Figure(
            f"hostile envelopes through a head-end worker (memory link, duties on, "
            f"{args.meters} meters)",
            f"{args.envelopes:,} in {seconds:.1f} s ({args.envelopes / seconds:,.0f}/s): "
            f"{crashes} crashes",
            target="≥ 100,000, 0 crashes",
            met=args.envelopes >= 100_000 and crashes == 0,
        ),
        Figure(
            "… the head-end clock after them",
            "within the lead of the newest stored interval end"
            if lead_ok
            else "AHEAD of what the frames vouch for",
            target="unchanged by unauthenticated fields",
            met=lead_ok,
        ),
        Figure(
            "… routes back to collectors moved by them",
            f"{moved} meters, {origins_moved} collectors",
            target="0",
            met=moved == 0 and origins_moved == 0,
        ),
    ]
    console = Console()
    console.print(figures_table(figures, "hostile envelopes"))
    note = (
        f"by kind: {counts}; malformed envelopes counted {st.malformed_envelopes:,}, frames "
        f"refused {st.frames_rejected_total:,} "
        f"({', '.join(f'{r.label} {n:,}' for r, n in st.frames_rejected.items())}), "
        f"frames accepted {st.frames_accepted:,} (the re-dated envelopes' fresh frames and the "
        f"genuine baseline)"
    )
    console.print(note)
    record(args.json, figures, details=[note])


if __name__ == "__main__":
    main()
