"""Planning an emergency campaign over 1,000,000 meters (issue 16 figure: ≤ 5 s): the fleet's
population and its demand at 18:00 on a winter weekday (Tokyo area) from the load model, 1 % of
households on the priority register; timed: who may be limited (``eligible``) and the plan
(``plan_campaign``, each rule) for a target of 5 % of the area's demand. Median of 3.

Anchor, in the same run: one ``expected_reduction_kw`` pass over every candidate at one cap (the
least a plan can cost: it needs one per ampere step).

Usage: ``python benchmarks/campaign_plan.py [--meters 1000000]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from kenshin.control.planner import Rule, eligible, expected_reduction_kw, plan_campaign
from kenshin.core.timeslots import JST
from kenshin.fleet.load import LoadModel
from kenshin.fleet.population import PopulationConfig, build_population

EVENING = dt.datetime(2026, 1, 14, 18, 0, tzinfo=JST)
TARGET_S = 5.0


# the forecast's uncertainty (log-sd) the desk estimated from the like days in the drills
UNCERTAINTY = 0.42


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=1_000_000)
    args = parser.parse_args()
    console = Console()
    started = time.perf_counter()
    population = build_population(PopulationConfig(n_meters=args.meters), np.random.default_rng(5))
    demand_kw = LoadModel(population, 5).step(EVENING).load_w / 1000
    switch = np.isin(population.meter_class, [1, 2])
    contract = population.contract_a.astype(np.int64)
    rng = np.random.default_rng(6)
    priority = rng.random(args.meters) < 0.01
    everywhere = np.ones(args.meters, dtype=bool)
    console.print(f"inputs built in {time.perf_counter() - started:.1f} s")
    target = 0.05 * float(demand_kw.sum())
    for rule in Rule:
        times, anchors = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            candidates = eligible(switch, contract, everywhere, priority, floor_a=10)
            sigma = UNCERTAINTY if rule is Rule.FEW else 0.0  # as the desk plans
            plan = plan_campaign(
                candidates, demand_kw, contract, target, seed=1, rule=rule, uncertainty=sigma
            )
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            keys = candidates.keys
            expected_reduction_kw(
                demand_kw[keys], contract[keys].astype(np.float64), np.full(len(keys), 20.0)
            )
            anchors.append(time.perf_counter() - t0)
        median, anchor = statistics.median(times), statistics.median(anchors)
        how = (
            f"each at its floor ({plan.lower_share:.0%} of the candidates drawn)"
            if rule is Rule.FEW
            else f"cap {plan.cap_a} A for {plan.lower_share:.0%}, one step above for the rest"
        )
        console.print(
            f"rule {rule.value}: {args.meters:,} meters, {len(candidates.keys):,} candidates: "
            f"target {target / 1000:,.1f} MW, planned {plan.planned_kw / 1000:,.1f} MW on "
            f"{len(plan.meter_keys):,} households ({how}); excluded {plan.excluded}"
        )
        verdict = "met" if median <= TARGET_S else "NOT met"
        console.print(
            f"plan: [bold]{median:.2f} s[/] (median of 3; target ≤ {TARGET_S:.0f} s: {verdict}); "
            f"anchor, one reduction pass: {anchor:.3f} s (ratio {median / anchor:.0f})"
        )


if __name__ == "__main__":
    main()
