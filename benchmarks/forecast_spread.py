"""How far a campaign's open-loop plan can be right, by forecast (issue 16: why ±5 % is not
robust). No A-route, store or desk: the fleet's load model alone, ten days of a winter fortnight
(Monday 2026-01-05 to the drill's Wednesday 2026-01-14, Tokyo area), for several seeds.

For each seed and forecast, the planner (``kenshin.control.planner.plan_campaign``) plans the
drill's campaign (18:00–20:00, 50 kW per 1,000 meters) from the forecast, exactly as the desk
does at 17:40, and the household model's reduction of the households it chose is worked out
twice: at the forecast (what the plan expects) and at the households' true demand (what the same
model gives if the forecast had been right). Their ratio R is the plan's error that comes from
the forecast alone; the drill's error follows it (seeds 9 and 10, the drill's worst, are among
the lowest R). Printed per forecast: R's mean and spread over the seeds, R per half hour, the
chosen households' true ÷ forecast demand, and the forecast's R² over all candidates.

Forecasts (all scaled on the day by the half hour 17:00–17:30, known at 17:40):
- ``like day`` — the desk's: yesterday × today ÷ yesterday by tenth of yesterday's 17:00 value;
- ``mean of k like days`` — the last k non-holiday weekdays, the same scaling;
- ``... , one ratio`` — one area-wide ratio instead of tenths;
- ``like day, shrunk`` — each value moved toward its tenth's mean as far as today's afternoon
  (15:00–17:30) came true against yesterday's (regression to the mean).

Rules (``kenshin.control.planner.Rule``): ``all`` (one cap for all, a share one step lower) for
every forecast, and ``few`` (``a random few at 10 A``: households in a seeded random order, each
at the 10 A floor or its own, until the plan's expected reduction meets the target — each giving
much, so less sensitive to how its level comes true) with the like day and with the mean of 5
like days, one ratio (the desk's since it measured best here).

Usage: ``python benchmarks/forecast_spread.py [--meters 10000] [--seeds 30]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import track
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from kenshin.control.planner import Eligible, Rule, expected_reduction_kw, plan_campaign
from kenshin.core.meterspec import MeterClass
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import Fleet, FleetConfig

F64 = npt.NDArray[np.float64]
FIRST = dt.datetime(2026, 1, 5, tzinfo=JST)  # a Monday
END = dt.datetime(2026, 1, 14, 20, 30, tzinfo=JST)  # the drill's Wednesday
TODAY = 9  # days after FIRST
WEEKDAYS_BEFORE = [8, 4, 3, 2, 1, 0]  # 2026-01-12 is a holiday (成人の日), 10–11 a weekend
SCALED_ON = 34  # 17:00–17:30, the last half hour stored at 17:40
PERIOD = list(range(36, 40))  # 18:00–20:00
KW_PER_1000_METERS = 50.0


def half_hours(meters: int, seed: int) -> tuple[F64, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """([day, half hour, meter] true mean demand [kW], contract [A], meter class)."""
    fleet = Fleet(FleetConfig(n_meters=meters, start=FIRST, seed=seed))
    roster = fleet.meters_table()
    keys = roster.column("meter_key").to_numpy()
    contract = np.zeros(meters, np.int64)
    contract[keys] = roster.column("contract_a").to_numpy()
    meter_class = np.zeros(meters, np.int64)
    meter_class[keys] = roster.column("meter_class").to_numpy()
    out = np.zeros((TODAY + 1, 48, meters))
    now = FIRST
    while now < END:
        power = fleet.load.step(now, 5)  # the load model alone: demand does not see limits
        day, minute = (now.date() - FIRST.date()).days, now.hour * 60 + now.minute
        out[day, minute // 30] += power.load_w / 6 / 1000
        now += dt.timedelta(minutes=5)
    return out, contract, meter_class


def _tenths(x: F64, y: F64, idx: npt.NDArray[np.int64]) -> tuple[F64, F64]:
    """(edges of the tenths of ``x[idx]``, Σy ÷ Σx of each tenth)."""
    edges = np.quantile(x[idx], np.linspace(0, 1, 11)[1:-1])
    tenth = np.searchsorted(edges, x[idx])
    num = np.bincount(tenth, y[idx], minlength=10)
    den = np.bincount(tenth, x[idx], minlength=10)
    return edges, np.clip(num / np.maximum(den, 1e-9), 0.5, 2.0)


def forecasts(days: F64, candidates: npt.NDArray[np.int64]) -> dict[str, F64]:
    today = days[TODAY]
    out: dict[str, F64] = {}
    for k in (1, 2, 3, 5):
        base = days[WEEKDAYS_BEFORE[:k]].mean(axis=0)
        edges, ratio = _tenths(base[SCALED_ON], today[SCALED_ON], candidates)
        name = "like day" if k == 1 else f"mean of {k} like days"
        out[name] = base * ratio[np.searchsorted(edges, base[SCALED_ON])]
        one = today[SCALED_ON][candidates].sum() / base[SCALED_ON][candidates].sum()
        out[f"{name}, one ratio"] = base * one
    yesterday = days[WEEKDAYS_BEFORE[0]]
    afternoon = list(range(30, SCALED_ON + 1))
    n = yesterday.shape[1]
    edges, ratio = _tenths(
        np.concatenate([yesterday[h] for h in afternoon]),
        np.concatenate([today[h] for h in afternoon]),
        np.concatenate([candidates + i * n for i in range(len(afternoon))]),
    )
    out["like day, shrunk"] = yesterday * ratio[np.searchsorted(edges, yesterday)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=30)
    args = parser.parse_args()
    rows: dict[str, list[tuple[F64, F64, float]]] = {}
    for seed in track(range(1, args.seeds + 1), description="simulating", transient=True):
        days, contract, meter_class = half_hours(args.meters, seed)
        switch = np.isin(meter_class, [int(MeterClass.LV_1P2W), int(MeterClass.LV_1P3W)])
        candidates = np.flatnonzero(switch & (contract > 10))
        truth = days[TODAY]
        target_kw = KW_PER_1000_METERS * args.meters / 1000
        made = forecasts(days, candidates)
        runs = [(name, forecast, False) for name, forecast in made.items()] + [
            ("like day, a random few at 10 A", made["like day"], True),
            (
                "mean of 5, one ratio, a random few at 10 A",
                made["mean of 5 like days, one ratio"],
                True,
            ),
        ]
        for name, forecast, few in runs:
            basis = forecast[PERIOD].mean(axis=0)
            rule = Rule.FEW if few else Rule.ALL
            plan = plan_campaign(
                Eligible(candidates), basis, contract, target_kw, seed=seed, rule=rule
            )
            chosen, cap = plan.meter_keys, plan.limit_a.astype(np.float64)
            held = contract[chosen].astype(np.float64)
            ratio = np.array(
                [
                    expected_reduction_kw(truth[h][chosen], held, cap).sum()
                    / expected_reduction_kw(forecast[h][chosen], held, cap).sum()
                    for h in PERIOD
                ]
            )
            level = np.array([truth[h][chosen].sum() / forecast[h][chosen].sum() for h in PERIOD])
            f, t = forecast[PERIOD].mean(axis=0)[candidates], truth[PERIOD].mean(axis=0)[candidates]
            r2 = 1 - float(((t - f) ** 2).sum() / ((t - t.mean()) ** 2).sum())
            rows.setdefault(name, []).append((ratio, level, r2))
    table = Table(
        title=f"the plan's reduction at the truth ÷ at the forecast, {args.meters:,} meters, "
        f"seeds 1–{args.seeds}"
    )
    for column in ("forecast", "R mean", "R sd", "R by half hour", "level (true ÷ forecast)", "R²"):
        table.add_column(column)
    for name, runs in rows.items():
        ratio = np.array([r[0] for r in runs])
        per_seed = ratio.mean(axis=1)
        level = np.array([r[1] for r in runs]).mean(axis=1)
        table.add_row(
            name,
            f"{per_seed.mean():.3f}",
            f"{per_seed.std():.3f}",
            " ".join(f"{v:.2f}" for v in ratio.mean(axis=0)),
            f"{level.mean():.3f} ± {level.std():.3f}",
            f"{np.mean([r[2] for r in runs]):.2f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
