"""One inference pass of the outage engine (issue 15 figure): 1,000,000 meters on the fleet's
topology model, one core, in a storm: 2 % of the pole transformers and one whole feeder dark (a
quarter of their meters gasping, the rest silent), 1 % of all other meters silent at random
(radio), one collector dead. Timed: ``kenshin.outage.inference.infer`` from the per-meter
evidence to the list of suspect devices; median of 5.

Anchor, in the same run: one ``np.bincount`` of the meters by transformer (the least any pass over
the topology costs).

Target: ≤ 1 s on one core.

Usage: ``python benchmarks/outage_inference.py [--meters 1000000] [--json PATH]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _figures import Figure, add_json_option, figures_table, record
from kenshin.grid.topology import build_topology
from kenshin.outage.inference import Seen, infer

TARGET_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=1_000_000)
    add_json_option(parser)
    args = parser.parse_args()
    n = args.meters
    rng = np.random.default_rng(15)
    lv = rng.random(n) > 0.002  # a few HV customers, as the fleet has
    topology = build_topology(lv, rng)
    collector = (rng.permutation(n) // 400).astype(np.int64)  # ~400 meters per collector
    seen = np.full(n, int(Seen.ALIVE), np.int8)
    seen[rng.random(n) < 0.01] = int(Seen.SILENT)
    dark_tx = rng.choice(topology.n_transformers, topology.n_transformers // 50, replace=False)
    dark = np.isin(topology.transformer, dark_tx) | (topology.feeder == 0)
    seen[dark] = int(Seen.SILENT)
    seen[dark & (rng.random(n) < 0.25)] = int(Seen.GASPED)
    seen[collector == 7] = int(Seen.SILENT)
    times, suspects = [], 0
    for _ in range(5):
        t = time.perf_counter()
        result = infer(seen, topology, collector)
        times.append(time.perf_counter() - t)
        suspects = len(result.suspects)
    took = statistics.median(times)
    t = time.perf_counter()
    np.bincount(np.maximum(topology.transformer, 0), minlength=topology.n_transformers)
    anchor = time.perf_counter() - t
    at_size = n == 1_000_000
    figures = [
        Figure(
            f"outage inference, one pass, {n:,} meters (storm: {len(dark_tx):,} transformers, a "
            "feeder, a collector, 1 % radio silence), one core, median of 5",
            f"{took:.3f} s ({suspects:,} suspects)",
            anchor=f"one bincount by transformer {anchor * 1000:.1f} ms",
            ratio=f"{took / anchor:.0f}",
            target=f"≤ {TARGET_S:g} s at 1,000,000 meters",
            met=took <= TARGET_S if at_size else None,
        )
    ]
    Console(width=120).print(figures_table(figures, "outage inference"))
    record(args.json, figures)


if __name__ == "__main__":
    main()
