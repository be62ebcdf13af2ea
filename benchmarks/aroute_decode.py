"""Benchmark of the A-route wire codec (issue: A-route): head-end decode rate on one core.

Workload: realistic SPEC A1 frames of low-voltage meters (30-min forward and reverse values, two
15-min forward and reverse values each under A5, forward and reverse register reads: one
PUSH_SCHEDULED frame per meter and slot), bundled 500 frames per collector envelope.

Figures (printed as a table):
1. Head-end: envelope parse + authenticate/decrypt + replay check + plaintext parse +
   ``decoded_to_batch`` (Arrow), in meter messages/s; target ≥ 50,000/s on one core.
2. Meter side: ``encode_interval_frames`` (plaintexts with numpy, one AES-GCM call per frame)
   + envelope bundling, in frames/s (no target; the simulator pays it).
3. The same decode with a cold key cache (every frame derives its key and builds its cipher):
   what a head-end serving more meters than its cache holds pays per frame.

Everything runs in one thread (``--pin`` also pins the process to one CPU; on a shared machine
that can land on a busy CPU). Rates are the best of ``--repeat`` runs.

Usage: ``python benchmarks/aroute_decode.py [--meters 10000] [--slots 4] [--per-envelope 500]
[--json PATH]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from _figures import Figure, add_json_option, record
from kenshin.aroute.codec.decode import FrameDecoder
from kenshin.aroute.codec.encode import encode_interval_frames
from kenshin.aroute.codec.envelope import decode_envelope, encode_envelope
from kenshin.aroute.frames import FrameType
from kenshin.aroute.keys import DEV_MASTER_KEY, KeyRing
from kenshin.aroute.messages import IntervalBlock, RegisterBlock
from kenshin.aroute.registry import MeterRegistry
from kenshin.aroute.replay import MemoryReplayGuard
from kenshin.core.channels import Channel
from kenshin.core.timeslots import US_PER_MINUTE, Resolution
from kenshin.hes.ingest import decoded_to_batch

TARGET_PER_S = 50_000
console = Console()


def pin_to_one_core() -> str:
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):  # not Linux
        return "not pinned"


def slot_blocks(
    keys: np.ndarray, slot_end_us: int, rng: np.random.Generator
) -> tuple[list[IntervalBlock], list[RegisterBlock]]:
    m = len(keys)
    fwd15 = rng.integers(0, 60, size=(2, m), dtype=np.int32)
    rev15 = rng.integers(0, 20, size=(2, m), dtype=np.int32)
    q15 = Resolution.MIN15.microseconds
    ends15 = np.array([slot_end_us - q15, slot_end_us], dtype=np.int64)
    ends30 = np.array([slot_end_us], dtype=np.int64)
    intervals = [
        IntervalBlock(Resolution.MIN30, Channel.ACTIVE_FORWARD, keys, ends30, fwd15.sum(0)[None]),
        IntervalBlock(Resolution.MIN30, Channel.ACTIVE_REVERSE, keys, ends30, rev15.sum(0)[None]),
        IntervalBlock(Resolution.MIN15, Channel.ACTIVE_FORWARD, keys, ends15, fwd15),
        IntervalBlock(Resolution.MIN15, Channel.ACTIVE_REVERSE, keys, ends15, rev15),
    ]
    registers = [
        RegisterBlock(
            Channel.ACTIVE_FORWARD,
            keys,
            slot_end_us,
            rng.integers(0, 10**8, m, dtype=np.int32),
        ),
        RegisterBlock(
            Channel.ACTIVE_REVERSE,
            keys,
            slot_end_us,
            rng.integers(0, 10**8, m, dtype=np.int32),
        ),
    ]
    return intervals, registers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--per-envelope", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best and median count")
    parser.add_argument(
        "--pin", action="store_true", help="pin the process to one CPU (the path is one thread)"
    )
    add_json_option(parser)
    args = parser.parse_args()
    pinned = pin_to_one_core() if args.pin else "one thread, not pinned"

    n = args.meters
    rng = np.random.default_rng(1)
    keys = np.arange(n, dtype=np.int32)
    device_ids = (13 * 10**14 + rng.choice(10**9, size=n, replace=False)).astype(np.uint64)
    first_slot_us = 28_000_020 * US_PER_MINUTE  # a 30-min boundary in 2023

    meter_ring = KeyRing(DEV_MASTER_KEY, max_cached=2 * n)
    envelopes: list[list[bytes]] = []
    encode_s = 0.0
    frames_total = 0
    frame_bytes = 0
    for slot in range(args.slots):
        slot_end = first_slot_us + slot * Resolution.MIN30.microseconds
        intervals, registers = slot_blocks(keys, slot_end, rng)
        counters = np.full(n, slot + 1, dtype=np.int64)
        started = time.perf_counter()
        frames = encode_interval_frames(
            FrameType.PUSH_SCHEDULED, device_ids, counters, intervals, registers, meter_ring
        )
        bundle = [
            encode_envelope(
                f"C{i // args.per_envelope:05d}", slot_end, slot, frames[i : i + args.per_envelope]
            )
            for i in range(0, n, args.per_envelope)
        ]
        encode_s += time.perf_counter() - started
        frames_total += len(frames)
        frame_bytes = len(frames[0])
        envelopes.append(bundle)
    encode_rate = frames_total / encode_s

    def run(cold: bool) -> tuple[float, int, int]:
        registry = MeterRegistry(device_ids, keys)
        ring = KeyRing(DEV_MASTER_KEY, max_cached=2 * n)
        decoder = FrameDecoder(registry, ring)
        replay = MemoryReplayGuard(n)
        accepted = rows = 0
        elapsed = 0.0
        for slot, bundle in enumerate(envelopes):
            if cold:
                ring.clear()
            tx = first_slot_us + slot * Resolution.MIN30.microseconds + 60_000_000
            started = time.perf_counter()
            for payload in bundle:
                authentic = decoder.authenticate(decode_envelope(payload).frames)
                admitted = replay.admit(authentic.meter_key, authentic.counter)
                decoded = decoder.parse(authentic, admitted)
                batch = decoded_to_batch(decoded, tx)
                accepted += decoded.accepted
                rows += batch.num_rows + batch.registers.num_rows
            if slot or cold or len(envelopes) == 1:  # slot 0 of the warm run fills the cache
                elapsed += time.perf_counter() - started
            else:
                accepted = rows = 0
        return accepted / elapsed, accepted, rows

    warm = [run(cold=False) for _ in range(args.repeat)]
    cold = [run(cold=True) for _ in range(args.repeat)]
    warm_rate = max(r for r, _, _ in warm)
    warm_median = float(np.median([r for r, _, _ in warm]))
    cold_rate = max(r for r, _, _ in cold)
    _, warm_frames, warm_rows = warm[0]

    table = Table(title=f"A-route codec, {n:,} LV meters, {args.per_envelope} frames/envelope")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("ok")
    table.add_row(
        "decode + auth + replay + Arrow [msg/s]",
        f"{warm_rate:,.0f}",
        f"≥ {TARGET_PER_S:,}",
        "yes" if warm_rate >= TARGET_PER_S else "NO",
    )
    table.add_row("  per message [µs]", f"{1e6 / warm_rate:.2f}", "", "")
    table.add_row("  median of the runs [msg/s]", f"{warm_median:,.0f}", "", "")
    table.add_row(
        "decode, cold key cache [msg/s]",
        f"{cold_rate:,.0f}",
        f"≥ {TARGET_PER_S:,}",
        "yes" if cold_rate >= TARGET_PER_S else "NO",
    )
    table.add_row("encode + bundle [frames/s]", f"{encode_rate:,.0f}", "", "")
    table.add_row("frame size [bytes]", f"{frame_bytes}", "", "")
    table.add_row("rows per message (values + registers)", f"{warm_rows / warm_frames:.0f}", "", "")
    console.print(table)
    note = (
        f"{pinned}; best of {args.repeat} runs; {args.slots} slots, the first decoded slot "
        "of a warm run fills the key cache and is not counted"
    )
    console.print(note)
    target = f"≥ {TARGET_PER_S:,}/s"
    record(
        args.json,
        [
            Figure(
                f"A-route decode + authenticate + replay check + Arrow batch, one thread, "
                f"{n:,} LV meters",
                f"{warm_rate:,.0f} msg/s (median {warm_median:,.0f})",
                target=target,
                met=warm_rate >= TARGET_PER_S,
            ),
            Figure(
                "  the same with a cold key cache",
                f"{cold_rate:,.0f} msg/s",
                target=target,
                met=cold_rate >= TARGET_PER_S,
            ),
            Figure("  meter side: encode + bundle", f"{encode_rate:,.0f} frames/s"),
        ],
        details=[note],
    )


if __name__ == "__main__":
    main()
