"""The whole nightly sweep through the store: what the MDMS does with a closed day
(``kenshin.mdms.scheduler.sweep_day``: the VEE sweep of both energy channels at every resolution
the system sweeps, then the S3 differences of parent meters and their specified sub-meters), on
DuckDB with ``--days`` days stored before the day.

The roster is the simulated fleet's (``Fleet(FleetConfig(n_meters, seed)).meters_table()`` and
``specified_table()``): its PV households, its A2 5-min sample (~10 % of the LV and ~10 % of the
HV/EHV meters, next-generation only) and its specified sub-meters are what ``expected_meters``
and the differences expect. The values are synthetic but shaped like what the fleet sends, in
the order the head-end stores it (slot by slot, the blocks of a slot message one after another):

- 30-min forward and reverse values of every meter (the fleet sends the reverse channel of every
  meter, zero where nothing is exported; PV meters export by day), with register reads of both
  channels at every slot end (they agree with the values: the sum check passes);
- 5-min forward and reverse values of the A2 sample (they add up to the 30-min values);
- 15-min values of next-generation meters only with ``--send-15min`` (the A5 soft switch; off by
  default, as in the system: then no 15-min values are sent or swept);
- the specified sub-meters' 30-min values (EV chargers draw part of the parent's forward energy,
  PV inverters generate at least the parent's export), under their own keys.

Not stored: 30-min reactive values of HV meters and 5-min reactive and voltage values of the
sample (the system stores them as received; no sweep reads them). ~3 % of the day's interval
values are lost (register reads all arrive), as ``kenshin simulate --loss 0.03`` loses them.

The day before DAY is swept first with no history kept (every plane of the look-back is read
from the store: what a restart costs), then DAY is timed as every later night runs, with the
time of each pass and of each store call.

Target (issue 11): whole nightly sweep, 1,000,000 meters, 28 days stored: ≤ 60 s.

Usage: ``python benchmarks/nightly_sweep.py [--meters 1000000] [--days 28]
[--duckdb-memory 4GB] [--send-15min] [--tmp /tmp] [--checkpoint-threshold 16MB] [--json PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from _figures import Figure, add_json_option, figures_table, record
from kenshin.app.allocator import cap_malloc_arenas
from kenshin.core.batches import readings_table
from kenshin.core.channels import Channel
from kenshin.core.meterspec import Generation
from kenshin.core.quality import Quality, Source
from kenshin.core.schema import READINGS_SCHEMA, REGISTER_READS_SCHEMA, TIMESTAMP
from kenshin.core.specified import SpecifiedKind
from kenshin.core.timeslots import Resolution
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.mdms import scheduler as scheduler_module
from kenshin.mdms import sweep as sweep_module
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.history import HistoryCache
from kenshin.mdms.months import month_of
from kenshin.mdms.scheduler import PASSES_AT_ONCE, sweep_day
from kenshin.mdms.sweep import day_window

DAY = dt.date(2026, 4, 29)  # a Wednesday; 28 days of history reach back to April 1
TWO_HOURS = 7_200_000_000  # the sweep runs two hours into the next day, as the system does
US30 = Resolution.MIN30.microseconds
FWD, REV = Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE
LOSS = 0.03
ROWS_PER_APPEND = 20_000_000  # about 1 GB of Arrow columns per append at 1 M meters
DAYLIGHT = np.zeros(48, bool)
DAYLIGHT[14:36] = True  # PV exports 07:00–18:00
TARGET_S = 60.0
TARGET_METERS = 1_000_000

I32 = npt.NDArray[np.int32]


@dataclass(frozen=True)
class Roster:
    meters: pa.Table
    specified: pa.Table
    keys: I32  # 0 … n-1
    pv: npt.NDArray[np.bool_]
    five: I32  # meters sending 5-min values (A2 sample, next generation)
    fifteen: I32  # meters sending 15-min values (soft switch on; next generation)
    sub_keys: I32
    sub_parent: I32
    sub_pv: npt.NDArray[np.bool_]


def build_roster(n: int, seed: int, send_15min: bool) -> Roster:
    fleet = Fleet(FleetConfig(n_meters=n, seed=seed, send_15min=send_15min))
    meters, specified = fleet.meters_table(), fleet.specified_table()
    keys = meters.column("meter_key").to_numpy()
    if not np.array_equal(keys, np.arange(n)):
        raise SystemExit("the fleet's meter keys are not 0 … n-1")
    gen2 = meters.column("generation").to_numpy() == Generation.GEN2
    sampled = meters.column("sampled_5min").to_numpy(zero_copy_only=False)
    return Roster(
        meters=meters,
        specified=specified,
        keys=keys.astype(np.int32),
        pv=meters.column("pv_kw").to_numpy() > 0,
        five=np.flatnonzero(sampled & gen2).astype(np.int32),
        fifteen=np.flatnonzero(gen2).astype(np.int32) if send_15min else np.empty(0, np.int32),
        sub_keys=specified.column("meter_key").to_numpy().astype(np.int32),
        sub_parent=specified.column("parent_key").to_numpy().astype(np.int32),
        sub_pv=specified.column("kind").to_numpy() == SpecifiedKind.PV_INVERTER,
    )


def split(values: npt.NDArray[np.int32], parts: int) -> npt.NDArray[np.int32]:
    """(48, m) slot values → (48 × parts, m) values that add up to them."""
    base, rest = np.divmod(values, parts)
    extra = np.arange(parts)[None, :, None] < rest[:, None, :]
    return (base[:, None, :] + extra).reshape(-1, values.shape[1]).astype(np.int32)


class Loader:
    """Appends the days in delivery order and counts what it appended."""

    def __init__(self, store: DuckDBStore, roster: Roster, rng: np.random.Generator) -> None:
        self.store, self.r, self.rng = store, roster, rng
        n = len(roster.keys)
        self.fwd_profile = rng.integers(20, 200, size=n).astype(np.int32)
        self.rev_profile = np.where(roster.pv, rng.integers(30, 300, size=n), 0).astype(np.int32)
        self.registers = rng.integers(0, 10**7, size=(2, n)).astype(np.int64)
        self.readings: Counter[tuple[int, int]] = Counter()
        self.register_rows = 0
        self.first_day = DAY

    def day(self, day: dt.date, loss: float) -> None:
        r, rng, n = self.r, self.rng, len(self.r.keys)
        start, end = day_window(day)
        tx = end + 600_000_000
        fwd = (self.fwd_profile[None, :] + rng.integers(0, 30, size=(48, n))).astype(np.int32)
        rev = np.where(
            DAYLIGHT[:, None] & r.pv[None, :],
            self.rev_profile[None, :] + rng.integers(0, 30, size=(48, n)),
            0,
        ).astype(np.int32)
        # register reads at every slot end, both channels (and the reading at the very start)
        regs = [
            (self.registers[i][None, :] + np.cumsum(v, axis=0)) for i, v in enumerate((fwd, rev))
        ]
        if day == self.first_day:  # the reading when the meters went live
            self.store.append(
                READINGS_SCHEMA.empty_table(),
                self._registers([self.registers[0], self.registers[1]], [start, start], tx),
            )
        self.registers = np.stack([regs[0][-1], regs[1][-1]])
        # sub-meters: a charger draws part of its parent's forward energy; an inverter
        # generates the parent's export and what the house used of it by day
        ev_share = rng.uniform(0.0, 0.6, size=len(r.sub_keys))
        self_used = np.where(DAYLIGHT[:, None], rng.integers(0, 40, (48, len(r.sub_keys))), 0)
        sub = np.where(
            r.sub_pv[None, :],
            rev[:, r.sub_parent] + self_used,
            (fwd[:, r.sub_parent] * ev_share[None, :]).astype(np.int64),
        ).astype(np.int32)
        blocks: list[tuple[Resolution, Channel, I32, npt.NDArray[np.int32]]] = [
            (Resolution.MIN30, FWD, r.keys, fwd),
            (Resolution.MIN30, REV, r.keys, rev),
        ]
        for res, keys in ((Resolution.MIN15, r.fifteen), (Resolution.MIN5, r.five)):
            if len(keys):
                parts = 30 // int(res)
                blocks += [
                    (res, FWD, keys, split(fwd[:, keys], parts)),
                    (res, REV, keys, split(rev[:, keys], parts)),
                ]
        blocks.append((Resolution.MIN30, FWD, r.sub_keys, sub))  # the specified message
        kept = [
            rng.random(v.shape) >= loss if loss else np.ones(v.shape, bool) for _, _, _, v in blocks
        ]
        per_slot = sum(v.size for _, _, _, v in blocks) // 48
        step = max(1, ROWS_PER_APPEND // max(1, per_slot))
        for first in range(0, 48, step):
            slots = range(first, min(48, first + step))
            registers = self._registers(
                [reg[j] for j in slots for reg in regs],
                [start + (j + 1) * US30 for j in slots for _ in regs],
                tx,
            )
            self.store.append(self._readings(blocks, kept, slots, start, tx), registers)

    def _readings(
        self,
        blocks: list[tuple[Resolution, Channel, I32, npt.NDArray[np.int32]]],
        kept: list[npt.NDArray[np.bool_]],
        slots: range,
        start: int,
        tx: int,
    ) -> pa.Table:
        cols: dict[str, list[npt.NDArray[Any]]] = {k: [] for k in ("key", "ch", "res", "end", "v")}
        for j in slots:  # a slot message: its blocks one after another
            for (res, channel, keys, values), keep in zip(blocks, kept, strict=True):
                parts = 30 // int(res)
                for p in range(j * parts, (j + 1) * parts):
                    mask = keep[p]
                    m = int(mask.sum())
                    cols["key"].append(keys[mask])
                    cols["v"].append(values[p][mask])
                    cols["end"].append(np.full(m, start + (p + 1) * res.microseconds, np.int64))
                    cols["ch"].append(np.full(m, int(channel), np.uint8))
                    cols["res"].append(np.full(m, int(res), np.uint8))
                    self.readings[(int(channel), int(res))] += m
        return readings_table(
            np.concatenate(cols["key"]),
            np.concatenate(cols["ch"]),
            np.concatenate(cols["res"]),
            np.concatenate(cols["end"]),
            np.concatenate(cols["v"]),
            None,
            int(Quality.VALID),  # labelled on ingest
            int(Source.METER_PUSH),
            0,
            0,
            tx,
        )

    def _registers(self, reads: list[npt.NDArray[np.int64]], at: list[int], tx: int) -> pa.Table:
        """Register reads of both channels, alternately, at the instants ``at``."""
        n = len(self.r.keys)
        channels = [int(FWD), int(REV)] * (len(reads) // 2)
        table = pa.Table.from_arrays(
            [
                pa.array(np.tile(self.r.keys, len(reads))),
                pa.array(np.repeat(np.array(channels, np.uint8), n)),
                pa.array(np.repeat(np.array(at, np.int64), n)).cast(TIMESTAMP),
                pa.array((np.concatenate(reads) % 10**8).astype(np.int32)),
                pa.array(np.full(n * len(reads), int(Source.METER_PUSH), np.uint8)),
                pa.array(np.full(n * len(reads), tx, np.int64)).cast(TIMESTAMP),
            ],
            schema=REGISTER_READS_SCHEMA,
        )
        self.register_rows += table.num_rows
        return table


def replace(
    module: object, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> None:
    setattr(module, name, make(getattr(module, name)))


class Timer:
    """Seconds of each sweep pass, and of each store call within the sweeps or the differences."""

    STORE_CALLS = (
        "written_days",
        "read_window_versions",
        "read_register_rows",
        "read_meters",
        "read_specified",
        "append",
        "replace_gaps",
    )

    def __init__(self, store: DuckDBStore) -> None:
        self.phase = "sweeps"
        self.stages: dict[tuple[str, str], float] = {}
        self.passes: dict[str, float] = {}
        self._adding = threading.Lock()  # passes run side by side
        for name in self.STORE_CALLS:
            setattr(store, name, self._wrap(getattr(store, name), name))
        # the functions the sweep and sweep_day call, replaced by timed ones in this process
        replace(sweep_module, "run_vee", lambda f: self._wrap(f, "run_vee (rules, estimates)"))
        replace(scheduler_module, "run_sweep", self._timed_pass)
        replace(scheduler_module, "run_differences", self._timed_differences)

    def _timed_pass(self, run_sweep: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            out = run_sweep(*a, **k)
            label = f"{k['channel'].label} {int(k['resolution'])}-min"
            with self._adding:
                self.passes[label] = self.passes.get(label, 0.0) + time.perf_counter() - t
            return out

        return timed

    def _timed_differences(self, run_differences: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            self.phase = "differences"
            t = time.perf_counter()
            try:
                return run_differences(*a, **k)
            finally:
                self.passes["S3 differences"] = time.perf_counter() - t
                self.phase = "sweeps"

        return timed

    def _wrap(self, f: Callable[..., Any], name: str) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            out = f(*a, **k)
            key = (self.phase, name)
            with self._adding:
                self.stages[key] = self.stages.get(key, 0.0) + time.perf_counter() - t
            return out

        return timed

    def clear(self) -> None:
        self.stages.clear()
        self.passes.clear()


def guard_memory(min_free_gib: float) -> None:
    """End the run (not the machine's other work) when less than ``min_free_gib`` is left."""

    def watch() -> None:
        while True:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:") and int(line.split()[1]) < min_free_gib * 2**20:
                    print(
                        f"less than {min_free_gib} GiB of memory left: ending the run", flush=True
                    )
                    os._exit(3)
            time.sleep(0.5)

    if Path("/proc/meminfo").exists():
        threading.Thread(target=watch, daemon=True).start()


def planes_gib(history: HistoryCache) -> float:
    """Memory of the day planes the history keeps between sweeps."""
    total = 0
    for plane in history._planes.values():
        for a in (plane.keys, plane.values, plane.usable, plane.totals):
            total += a.nbytes if a.strides[0] else 0  # broadcast views cost nothing
    return total / 2**30


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def stored_counts(store: DuckDBStore) -> tuple[dict[tuple[int, int], int], dict[int, int]]:
    cur = store._cursor()  # a benchmark's count of what is in the store
    readings = cur.sql(
        "SELECT channel, resolution, count(*) FROM readings GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    registers = cur.sql(
        "SELECT channel, count(*) FROM register_reads GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    return {(int(c), int(r)): int(k) for c, r, k in readings}, {
        int(c): int(k) for c, k in registers
    }


def main() -> None:
    cap_malloc_arenas()  # as the kenshin command does, before any thread starts
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=TARGET_METERS)
    parser.add_argument("--days", type=int, default=28, help="days stored before the day")
    parser.add_argument("--history-days", type=int, default=None, help="sweep look-back")
    parser.add_argument("--duckdb-memory", default="4GB", help="DuckDB memory_limit")
    parser.add_argument("--send-15min", action="store_true", help="A5 soft switch on")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--passes-at-once",
        type=int,
        default=None,
        help=f"passes of the sweep side by side (default: the system's, {PASSES_AT_ONCE})",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="directory of the DuckDB file")
    parser.add_argument(
        "--checkpoint-threshold",
        default=None,
        help="DuckDB checkpoint_threshold during the sweeps (the store sets 1GB; DuckDB 16MB)",
    )
    parser.add_argument(
        "--min-free-gib", type=float, default=1.5, help="end the run below this much free memory"
    )
    add_json_option(parser)
    args = parser.parse_args()
    guard_memory(args.min_free_gib)
    console = Console(width=130)
    # the resolutions the system's day-end sweep covers (kenshin.app.system.DirectSystem):
    # 30 min, 15 min when the soft switch sends them, 5 min when there is an A2 sample
    t0 = time.perf_counter()
    roster = build_roster(args.meters, args.seed, args.send_15min)
    roster_s = time.perf_counter() - t0
    resolutions: tuple[Resolution, ...] = (Resolution.MIN30,)
    if args.send_15min:
        resolutions += (Resolution.MIN15,)
    if len(roster.five):
        resolutions += (Resolution.MIN5,)
    parents = len(np.unique(roster.sub_parent))
    console.print(
        f"roster {roster_s:.1f} s: {args.meters:,} meters, {int(roster.pv.sum()):,} with PV, "
        f"{len(roster.five):,} sending 5-min values, {len(roster.fifteen):,} sending 15-min "
        f"values, {len(roster.sub_keys):,} specified sub-meters behind {parents:,} parents; "
        f"sweeping {', '.join(f'{int(r)}' for r in resolutions)}-min"
    )
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="nightly-sweep-") as tmp:
        path = Path(tmp) / "sweep.duckdb"
        store = DuckDBStore(path, memory_limit=args.duckdb_memory)
        store.write_meters(roster.meters)
        store.write_specified(roster.specified)
        loader = Loader(store, roster, np.random.default_rng(3))
        loader.first_day = DAY - dt.timedelta(days=args.days)
        started = time.perf_counter()
        for offset in range(args.days, -1, -1):
            loader.day(DAY - dt.timedelta(days=offset), LOSS if offset == 0 else 0.0)
            if args.meters >= 200_000:
                console.print(
                    f"  loaded {DAY - dt.timedelta(days=offset)} "
                    f"({time.perf_counter() - started:.0f} s)"
                )
        loaded = time.perf_counter() - started
        for month in store.months():  # only closed months are compacted, as the system does
            if month < month_of(day_window(DAY)[0]):
                store.compact(month)
        store.checkpoint()
        compacted = time.perf_counter() - started - loaded
        counts, register_counts = stored_counts(store)
        file_gb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e9
        peak_load = peak_gib()
        if args.checkpoint_threshold is not None:  # an experiment: how often the WAL is folded
            store._cursor().execute("SET checkpoint_threshold = ?", [args.checkpoint_threshold])
        timer = Timer(store)
        history = HistoryCache()

        def sweep(day: dt.date) -> tuple[scheduler_module.DaySweep, float]:
            t = time.perf_counter()
            out = sweep_day(
                store,
                day,
                now_us=day_window(day)[1] + TWO_HOURS,
                resolutions=resolutions,
                history_days=args.history_days,
                history=history,
                send_15min=args.send_15min,
                passes_at_once=args.passes_at_once,
            )
            return out, time.perf_counter() - t

        _, cold = sweep(DAY - dt.timedelta(days=1))
        cold_passes, cold_stages = dict(timer.passes), dict(timer.stages)
        peak_cold = peak_gib()
        timer.clear()
        swept, total = sweep(DAY)
        peak_sweep = peak_gib()
        planes = planes_gib(history)
        after, _ = stored_counts(store)
        store.close()

    rows = sum(counts.values())
    table = Table(
        title=(
            f"Whole nightly sweep (sweep_day) through DuckDB: {args.meters:,} meters, "
            f"{args.days} days stored + the day, DuckDB memory_limit {args.duckdb_memory}"
            + (
                f", checkpoint_threshold {args.checkpoint_threshold}"
                if args.checkpoint_threshold
                else ""
            )
        )
    )
    table.add_column("what")
    table.add_column("measured", justify="right")
    for (channel, res), k in sorted(counts.items(), key=lambda x: (-x[0][1], x[0][0])):
        label = Channel(channel).label
        who = "specified sub-meters included" if (channel, res) == (int(FWD), 30) else ""
        table.add_row(f"stored {res}-min {label} {who}".rstrip(), f"{k:,}")
    for channel, k in register_counts.items():
        table.add_row(f"stored register reads {Channel(channel).label}", f"{k:,}")
    table.add_row("readings stored before the sweeps", f"{rows:,}")
    table.add_row("DuckDB files after loading [GB]", f"{file_gb:.1f}")
    table.add_row("load (not timed in the sweep)", f"{loaded:.0f} s")
    table.add_row("compaction + checkpoint (not timed)", f"{compacted:.1f} s")
    table.add_row("first sweep of the day before, no history kept (cold)", f"{cold:.1f} s")
    for label, s in cold_passes.items():
        table.add_row(f"  {label}", f"{s:.1f}")
    for (phase, name), s in cold_stages.items():
        if s >= 0.05 * cold:
            table.add_row(f"    {phase}: {name}", f"{s:.1f}")
    at_once = swept.passes_at_once
    overlap = at_once > 1
    table.add_row(
        f"[bold]the day's sweep[/] ({at_once} passes at once"
        + ("; each pass's and stage's own time, so they overlap)" if overlap else ")"),
        "",
    )
    for label, s in timer.passes.items():
        table.add_row(f"  {label}", f"{s:.2f}")
    for (phase, name), s in timer.stages.items():
        table.add_row(f"    {phase}: {name}", f"{s:.2f}")
    if not overlap:
        in_stages = sum(timer.stages.values())
        table.add_row(
            "    the rest: densify, history planes, compare, combine", f"{total - in_stages:.2f}"
        )
    table.add_row("[bold]whole nightly sweep total[/]", f"[bold]{total:.2f}[/]")
    written = {
        f"{rep.channel.label} {int(rep.resolution)}-min": rep.written for rep in swept.sweeps
    }
    table.add_row(
        "versions written by the day's sweep",
        ", ".join(f"{k} {v:,}" for k, v in written.items()),
    )
    if swept.differences is not None:
        table.add_row("S3 differences", swept.differences.summary())
    table.add_row("rows in the store after both sweeps", f"{sum(after.values()):,}")
    table.add_row(
        "peak memory of the process [GiB]: after load / cold sweep / day's sweep",
        f"{peak_load:.1f} / {peak_cold:.1f} / {peak_sweep:.1f}",
    )
    table.add_row("day planes the history keeps between sweeps [GiB]", f"{planes:.2f}")
    console.print(table)
    for rep in swept.sweeps:
        console.print(rep.summary())

    at_size = args.meters >= TARGET_METERS and args.days >= 28
    passes = ", ".join(
        f"{Channel(c).label} {int(r)}-min"
        for r in resolutions
        for c in (FWD, REV)
        if (r is not Resolution.MIN15 or args.send_15min)
    )
    figures = [
        Figure(
            f"whole nightly sweep (sweep_day: {passes}, then the S3 differences of {parents:,} "
            f"parents), {args.meters:,} meters, {args.days} days stored, DuckDB "
            f"{args.duckdb_memory}, {at_once} passes at once"
            + ("" if args.passes_at_once is None else " (set)"),
            f"{total:.1f} s",
            f"forward 30-min pass {timer.passes.get('active_forward 30-min', 0.0):.1f} s",
            target="≤ 60 s at 1,000,000 meters, 28 days",
            met=(total <= TARGET_S) if at_size else None,
        ),
        Figure(
            "  the first sweep after a start (cold: look-back read from the store)", f"{cold:.1f} s"
        ),
        Figure(
            "  readings stored (the day + history; 30-min both channels, 5-min sample, sub-meters)",
            f"{rows:,}",
        ),
        Figure("  peak memory of the process (loading included)", f"{peak_sweep:.1f} GiB"),
    ]
    console.print(figures_table(figures, "figures"))
    details = [
        f"loaded {rows:,} readings and {sum(register_counts.values()):,} register reads in "
        f"{loaded:.0f} s; DuckDB files {file_gb:.1f} GB",
        "not stored: 30-min reactive (HV) and 5-min reactive/voltage values (no sweep reads them)",
    ]
    record(args.json, figures, details=details)


if __name__ == "__main__":
    main()
