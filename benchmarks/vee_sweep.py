"""Benchmark of the MDMS VEE engine (issue 4 item 2): a full daily sweep of 30-min values.

Figures (printed as a table):
1. ``run_vee`` over 1,000,000 meters × 48 slots: target ≤ 60 s on the 2-core machine.
2. Readings/s of densify (values and register reads) + run_vee; the MDMS target including storing
   is ≥ 1,000,000 readings/s, so VEE must leave most of that budget to the store.
3. History statistics from 28 days of raw history, computed in chunks of meters: the store may
   instead compute ``recent_max``/``like_day``/``day_max`` in SQL; 1 M × 28 × 48 values are
   ~5 GB even as int32, so the sweep takes statistics, not raw history.

Synthetic day: a household-like profile per meter, ~3 % of deliveries lost (value and the register
read at its end), 0.01 % spikes (interval corrupted, register intact), 0.1 % duplicate rows, 0.1 %
of registers roll over, 0.5 % of meters silent all day and 0.5 % for 3 hours, 0.1 % in a 5-hour
outage, 0.1 % new meters without history, one in 20 history days unusable (estimated, outage).

Usage: ``python benchmarks/vee_sweep.py [--meters 1000000] [--history-days 28]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mdms_data import MODULUS, SLOTS, profile
from kenshin.core.quality import EstimationMethod, Quality, Rule
from kenshin.core.timeslots import Resolution, day_slot_ends, jst_midnight, to_epoch_us
from kenshin.mdms.estimate import HistoryStats
from kenshin.mdms.vee import (
    VeeConfig,
    VeeInput,
    day_class,
    densify,
    densify_registers,
    run_vee,
)

console = Console()
DAY = dt.date(2026, 11, 3)  # Culture Day: a Sunday-class day


def history(rng: np.random.Generator, n: int, days: int) -> tuple[HistoryStats, float]:
    """Statistics of ``days`` days of raw int32 history, chunked; (stats, seconds computing)."""
    config = VeeConfig()
    dates = np.arange(np.datetime64(DAY) - days, np.datetime64(DAY))
    classes = day_class(dates)
    target = int(day_class([DAY])[0])
    chunk = 50_000
    parts: list[HistoryStats] = []
    seconds = 0.0
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        mean = profile(rng, m)
        raw = rng.poisson(mean[:, None, :], size=(m, days, SLOTS)).astype(np.int32)
        usable = rng.random((m, days)) > 0.05
        usable[rng.random(m) < 0.001] = False  # new meters: no history yet
        started = time.perf_counter()
        parts.append(config.stats(raw, usable, classes, target))
        seconds += time.perf_counter() - started
    stats = HistoryStats(
        recent_max=np.concatenate([p.recent_max for p in parts]),
        like_day=np.concatenate([p.like_day for p in parts]),
        like_days_used=np.concatenate([p.like_days_used for p in parts]),
        day_max=np.concatenate([p.day_max for p in parts]),
    )
    return stats, seconds


def long_rows(
    rng: np.random.Generator, n: int
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], int, np.ndarray]:
    """(interval rows, register rows, window start, outage) of one day, as the store has them."""
    ends = day_slot_ends(DAY, Resolution.MIN30)
    start_us = to_epoch_us(jst_midnight(DAY))
    values = rng.poisson(profile(rng, n)).astype(np.int64)
    start_reg = rng.integers(0, MODULUS // 2, size=n)
    start_reg[rng.random(n) < 0.001] = MODULUS - 200  # these roll over today (SPEC M5)
    registers = np.empty((n, SLOTS + 1), dtype=np.int64)
    registers[:, 0] = start_reg
    np.cumsum(values, axis=1, out=registers[:, 1:])
    registers[:, 1:] += start_reg[:, None]
    registers %= MODULUS
    spikes = rng.random((n, SLOTS)) < 0.0001
    values[spikes] *= 50
    lost = rng.random((n, SLOTS)) < 0.03
    lost[rng.random(n) < 0.005] = True  # silent all day: gaps for new meters, like days otherwise
    lost[rng.random(n) < 0.005, 10:16] = True  # 3 hours lost: like days scaled to the registers
    reg_present = np.ones((n, SLOTS + 1), dtype=bool)
    reg_present[:, 1:] = ~lost  # a lost delivery loses the value and the read at its end

    meter, slot = np.nonzero(~lost)
    dup = rng.random(meter.size) < 0.001
    meter = np.concatenate([meter, meter[dup]])
    slot = np.concatenate([slot, slot[dup]])
    tx = ends[slot] + 60_000_000 + np.arange(meter.size)
    interval_rows = (meter, ends[slot], values[meter, slot], tx)
    rmeter, rslot = np.nonzero(reg_present)
    read_at = start_us + rslot * Resolution.MIN30.microseconds
    register_rows = (rmeter, read_at, registers[rmeter, rslot], read_at + 60_000_000)
    outage = np.zeros((n, SLOTS), dtype=bool)
    outage[rng.random(n) < 0.001, 20:30] = True
    return interval_rows, register_rows, start_us, outage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1_000_000)
    parser.add_argument("--history-days", type=int, default=28)
    args = parser.parse_args()
    n = args.meters
    rng = np.random.default_rng(7)

    console.print(f"generating {n:,} meters × {args.history_days} days of history …")
    stats, stats_s = history(rng, n, args.history_days)
    interval_rows, register_rows, start_us, outage = long_rows(rng, n)
    n_rows = interval_rows[0].size

    started = time.perf_counter()
    res = Resolution.MIN30
    dense = densify(*interval_rows, window_start_us=start_us, resolution=res, n_meters=n)
    regs = densify_registers(*register_rows, window_start_us=start_us, resolution=res, n_meters=n)
    densify_s = time.perf_counter() - started

    started = time.perf_counter()
    result = run_vee(
        VeeInput(
            values=dense.values,
            present=dense.present,
            registers=regs.values,
            register_present=regs.present,
            outage=outage,
            structure_flags=dense.flags,
            stats=stats,
        )
    )
    vee_s = time.perf_counter() - started
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    table = Table(title=f"VEE daily sweep, {n:,} meters × {SLOTS} slots (30-min)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row("interval rows in", f"{n_rows:,}", "")
    table.add_row(f"history stats ({args.history_days} d raw, chunked) \\[s]", f"{stats_s:.1f}", "")
    table.add_row("densify values + registers \\[s]", f"{densify_s:.1f}", "")
    table.add_row("run_vee \\[s]", f"{vee_s:.1f}", "≤ 60")
    rate = n_rows / (densify_s + vee_s)
    table.add_row("densify + run_vee \\[readings/s]", f"{rate:,.0f}", "≥ 1,000,000 incl. store")
    table.add_row("peak RSS \\[GiB]", f"{rss_gib:.1f}", "")
    for q in (Quality.VALID, Quality.ESTIMATED, Quality.SUSPECT, Quality.MISSING, Quality.OUTAGE):
        table.add_row(f"  quality {q.label}", f"{result.quality_counts[q]:,}", "")
    rules = (Rule.MISSING, Rule.SPIKE, Rule.SUM_CHECK, Rule.ROLLOVER, Rule.DUPLICATE_EQUAL)
    for rule in rules:
        table.add_row(f"  rule {rule.label}", f"{result.rule_counts[rule]:,}", "")
    table.add_row("  gaps (re-read list)", f"{len(result.gaps):,}", "")
    methods = np.bincount(result.method.ravel(), minlength=len(EstimationMethod))
    for method in list(EstimationMethod)[1:]:
        table.add_row(f"  method {method.label}", f"{methods[method]:,}", "")
    console.print(table)


if __name__ == "__main__":
    main()
