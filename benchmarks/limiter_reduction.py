"""How much a lower ampere limit takes off households' evening demand (issue 16: the load
reaction, calibrated and documented): two copies of one fleet through a winter weekday evening
(Tokyo area, Wednesday 2026-01-14, 18:00–20:00), one left alone, one with every household that
has a switch and a larger contract limited to L A from 18:00 (L = 10, 15, 20, 30). Per contract
size: mean demand left alone, mean load served under the limit, the reduction per household,
trips and lockouts per 100 households.

Anchor: the arithmetic cut, Σ max(0, P_i − L × 100 V) over the same households and steps (what
clipping each household's demand at the cap would remove), so the reaction model's figure is
read against the naive one.

Usage: ``python benchmarks/limiter_reduction.py [--meters 10000]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from kenshin.core.customers import CustomerType
from kenshin.core.switch import SwitchState
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import Fleet, FleetConfig

START = dt.datetime(2026, 1, 14, 17, 0, tzinfo=JST)
LIMITED_FROM = dt.datetime(2026, 1, 14, 18, 0, tzinfo=JST)
END = dt.datetime(2026, 1, 14, 20, 0, tzinfo=JST)


def _run(meters: int, limit_a: int | None) -> tuple[Fleet, np.ndarray, np.ndarray, np.ndarray]:
    """(fleet, demand per step and meter [W], served [W], limited mask)."""
    fleet = Fleet(FleetConfig(n_meters=meters, start=START, seed=11))
    pop = fleet.population
    households = np.isin(
        pop.customer_type,
        [int(CustomerType.HOUSEHOLD_DETACHED), int(CustomerType.HOUSEHOLD_APARTMENT)],
    )
    limited = fleet.meters.has_switch & households & (pop.contract_a > (limit_a or 0))
    demand, served = [], []
    original = fleet.limiter.step
    captured: dict[str, np.ndarray] = {}

    def watch(start_us, demand_w, pv_w, limit, powered):  # type: ignore[no-untyped-def]
        out = original(start_us, demand_w, pv_w, limit, powered)
        captured["demand"], captured["served"] = demand_w.copy(), out[0].copy()
        return out

    fleet.limiter.step = watch  # type: ignore[method-assign]
    while fleet.now < END:
        if limit_a is not None and fleet.now == LIMITED_FROM:
            fleet.meters.ampere_limit_a[limited] = limit_a
        fleet.step()
        if fleet.now > LIMITED_FROM:
            demand.append(captured["demand"])
            served.append(captured["served"])
    return fleet, np.array(demand), np.array(served), limited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=10_000)
    args = parser.parse_args()
    console = Console()
    for limit in (10, 15, 20, 30):
        fleet, demand, served, limited = _run(args.meters, limit)
        contract = fleet.population.contract_a
        table = Table(
            title=f"{limit} A from 18:00 to 20:00, {args.meters:,} meters, "
            f"{int(limited.sum()):,} households limited",
        )
        for name in (
            "contract A",
            "households",
            "demand kW",
            "served kW",
            "reduction kW",
            "arithmetic cut kW",
            "trips /100",
            "locked out /100",
        ):
            table.add_column(name, justify="right")
        trips = fleet.limiter._trip_slot  # trips per meter since the start
        locked = fleet.meters.switch_state == SwitchState.LOCKED_OUT
        for size in sorted(set(contract[limited].tolist())):
            group = limited & (contract == size)
            d = demand[:, group].mean() / 1000
            s = served[:, group].mean() / 1000
            cut = np.maximum(demand[:, group] - limit * 100.0, 0).mean() / 1000
            table.add_row(
                str(size),
                f"{int(group.sum()):,}",
                f"{d:.2f}",
                f"{s:.2f}",
                f"{d - s:.2f}",
                f"{cut:.2f}",
                f"{100 * trips[group].mean():.0f}",
                f"{100 * locked[group].mean():.1f}",
            )
        d_all, s_all = demand[:, limited].sum(axis=1).mean(), served[:, limited].sum(axis=1).mean()
        table.caption = (
            f"all limited households: {d_all / 1e6:.2f} MW demand, {s_all / 1e6:.2f} MW served, "
            f"reduction {(d_all - s_all) / 1e6:.2f} MW ({1 - s_all / d_all:.0%})"
        )
        console.print(table)


if __name__ == "__main__":
    main()
