"""How good are the MDMS's estimates of lost values? (issue 13 item 7)

The same fleet (same seed, so the same true values) is simulated twice with the direct path:
once clean, once with ``--loss`` (whole meter messages lost: a slot's values and the register
reads at its end; singly or in bursts, ``kenshin.mdms.loss``). Every 30-min forward value the
MDMS estimated in the lossy run is compared with the clean run's value of the same cell, and so
is a naive baseline computed in the same run: the value stored for the same slot on the previous
like day (same day class: weekday, Saturday, Sunday/holiday), as a settlement clerk would fill a
hole. Figures: WAPE (sum of absolute errors ÷ sum of true values) of the 30-min values by gap
length and method, and of the daily totals of the meter-days that had an estimate.

Usage: ``python benchmarks/estimation.py [--meters 2000] [--days 21] [--loss 0.05]
[--bursts 1,8,96] [--json PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _figures import Figure, add_json_option, figures_table, record
from kenshin.app.system import build_system
from kenshin.core.channels import Channel
from kenshin.core.quality import EstimationMethod, Quality
from kenshin.core.timeslots import JST, Resolution
from kenshin.fleet.simulator import FleetConfig
from kenshin.mdms import versions
from kenshin.mdms.daytypes import day_class
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.sweep import day_window

START = dt.datetime(2026, 4, 6, tzinfo=JST)  # a Monday
SLOTS = 48
BUCKETS = ((1, 1), (2, 3), (4, 8), (9, 24), (25, 48), (49, 10**9))


def simulate(path: Path, meters: int, days: int, loss: float, burst: float) -> None:
    config = FleetConfig(n_meters=meters, start=START, seed=7)
    system = build_system(config, path, loss=loss, loss_burst=burst)
    system.run(START + dt.timedelta(days=days), last=True)
    system.close()


def grid(path: Path, meters: int, days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, quality, method) of each meter × day × slot: current forward 30-min versions."""
    value = np.full((meters, days, SLOTS), -1, np.int64)
    quality = np.full((meters, days, SLOTS), 255, np.uint8)
    method = np.zeros((meters, days, SLOTS), np.uint8)
    store = DuckDBStore(path, read_only=True)
    try:
        for d in range(days):
            start, end = day_window((START + dt.timedelta(days=d)).date())
            rows = store.read_window_versions(Channel.ACTIVE_FORWARD, Resolution.MIN30, start, end)
            cur = versions.current_cells(rows, Resolution.MIN30.microseconds)
            key = np.asarray(cur.column("meter_key").to_numpy(), np.int64)
            slot = np.asarray(cur.column("interval_end").cast(pa.int64()).to_numpy()) - start
            slot = slot // Resolution.MIN30.microseconds - 1
            ours = key < meters  # the roster's meters, not specified sub-meters
            key, slot = key[ours], slot[ours]
            value[key, d, slot] = np.asarray(cur.column("value").fill_null(-1).to_numpy())[ours]
            quality[key, d, slot] = np.asarray(cur.column("quality").to_numpy())[ours]
            method[key, d, slot] = np.asarray(cur.column("method").fill_null(0).to_numpy())[ours]
    finally:
        store.close()
    return value, quality, method


def previous_like_day(days: int) -> np.ndarray:
    """For each day, the latest earlier day of the same class (-1: none in the period)."""
    dates = [(START + dt.timedelta(days=d)).date() for d in range(days)]
    classes = day_class(dates)
    out = np.full(days, -1, np.int64)
    for d in range(days):
        earlier = [e for e in range(d) if classes[e] == classes[d]]
        out[d] = earlier[-1] if earlier else -1
    return out


def run_lengths(flags: np.ndarray) -> np.ndarray:
    """For each cell of a meter's flattened period, the length of the run of flagged cells it
    belongs to (0 where not flagged)."""
    out = np.zeros_like(flags, dtype=np.int64)
    for m in range(flags.shape[0]):
        row = flags[m]
        edges = np.diff(np.r_[0, row.astype(np.int8), 0])
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        for a, b in zip(starts, ends, strict=True):
            out[m, a:b] = b - a
    return out


def wape(error: np.ndarray, truth: np.ndarray) -> float:
    return float(np.abs(error).sum() / max(truth.sum(), 1))


def evaluate(truth_v: np.ndarray, lossy: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict:
    value, quality, method = lossy
    meters, days, _ = value.shape
    estimated = quality == Quality.ESTIMATED
    prev = previous_like_day(days)
    baseline = np.full_like(value, -1)
    has_prev = prev >= 0
    baseline[:, has_prev, :] = value[:, prev[has_prev], :]
    usable = estimated & (baseline >= 0) & (truth_v >= 0)
    runs = run_lengths((quality != Quality.VALID).reshape(meters, days * SLOTS)).reshape(
        value.shape
    )
    result: dict = {"cells": int(usable.sum()), "by_gap": [], "by_method": {}}
    for low, high in BUCKETS:
        cell = usable & (runs >= low) & (runs <= high)
        if not cell.any():
            continue
        t = truth_v[cell]
        result["by_gap"].append(
            (low, high, int(cell.sum()), wape(value[cell] - t, t), wape(baseline[cell] - t, t))
        )
    for m in (EstimationMethod.LINEAR, EstimationMethod.LIKE_DAY, EstimationMethod.LIKE_DAY_SCALED):
        cell = usable & (method == m)
        if cell.any():
            t = truth_v[cell]
            result["by_method"][m.label] = (
                int(cell.sum()),
                wape(value[cell] - t, t),
                wape(baseline[cell] - t, t),
            )
    # daily totals of the meter-days with an estimate the baseline can fill too
    day_has = usable.any(axis=2) & ~((quality == Quality.MISSING).any(axis=2))
    day_ok = day_has & (truth_v >= 0).all(axis=2)
    filled = np.where(usable, baseline, value)
    t_day = truth_v.sum(axis=2)[day_ok]
    result["daily"] = (
        int(day_ok.sum()),
        wape(value.sum(axis=2)[day_ok] - t_day, t_day),
        wape(filled.sum(axis=2)[day_ok] - t_day, t_day),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--bursts", default="1,8,96", help="mean burst lengths [slots]")
    add_json_option(parser)
    args = parser.parse_args()
    console = Console(width=140)
    bursts = [float(b) for b in args.bursts.split(",")]
    figures: list[Figure] = []
    details: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        simulate(Path(tmp) / "clean.duckdb", args.meters, args.days, 0.0, 1.0)
        truth_v, truth_q, _ = grid(Path(tmp) / "clean.duckdb", args.meters, args.days)
        # a clean cell VEE flagged (a genuine spike it estimated) has no trusted truth
        flagged_clean = int((truth_q != Quality.VALID).sum())
        truth_v = np.where(truth_q == Quality.VALID, truth_v, -1)
        details.append(f"clean run: {flagged_clean:,} cells not valid, left out of the comparison")
        for burst in bursts:
            path = Path(tmp) / f"lossy-{burst:g}.duckdb"
            simulate(path, args.meters, args.days, args.loss, burst)
            got = evaluate(truth_v, grid(path, args.meters, args.days))
            name = f"loss {args.loss:.0%}, bursts of {burst:g} slots"
            for low, high, cells, est, base in got["by_gap"]:
                span = f"{low}" if low == high else f"{low}–{high if high < 10**9 else '…'}"
                figures.append(
                    Figure(
                        f"{name}: 30-min WAPE, gaps of {span} slots",
                        f"{est:.1%} ({cells:,} estimates)",
                        anchor=f"previous like day {base:.1%}",
                        ratio=f"{est / base:.2f}" if base else "",
                        target="below the baseline",
                        met=est < base,
                    )
                )
            days_n, est, base = got["daily"]
            figures.append(
                Figure(
                    f"{name}: daily totals WAPE",
                    f"{est:.2%} ({days_n:,} meter-days)",
                    anchor=f"previous like day {base:.2%}",
                    ratio=f"{est / base:.2f}" if base else "",
                    target="below the baseline",
                    met=est < base,
                )
            )
            for label, (cells, est_m, base_m) in got["by_method"].items():
                details.append(
                    f"{name}: method {label}: {cells:,} estimates, WAPE {est_m:.1%} "
                    f"(baseline on the same cells {base_m:.1%})"
                )
        seconds = time.perf_counter() - started
    title = (
        f"estimates against the truth: {args.meters:,} meters × {args.days} days, "
        f"{len(bursts) + 1} simulations, {seconds:.0f} s"
    )
    console.print(figures_table(figures, title))
    for line in details:
        console.print(line)
    record(args.json, figures, details=details)


if __name__ == "__main__":
    main()
