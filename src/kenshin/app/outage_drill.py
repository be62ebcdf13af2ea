"""The outage drill (issue 15 item 5): a fleet with injected faults from a scenario file, the wire
A-route, the head-end and the outage engine, scored against the simulated truth.

A scenario (``kenshin/outage/scenarios/NAME.toml``) lists faults by level and *pick*: the n-th
device of that level in a seeded order, so one file fits any fleet size. Smaller devices are
picked outside the larger outages of the same scenario (so each fault has one right answer),
except a service drop ``on_feeder_of`` another fault, which is the nested case.

Scores, per level: precision, recall and F1 of the events the engine reported (those folded into
a bigger event excluded) against the faults; detection latency (confirmed − fault start) and
restoration latency (marked restored − fault end), p50 and p95; false outages on meters whose only
trouble was a breaker trip or a dead collector; pings per event.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from kenshin.app.system import build_system
from kenshin.aroute.network import NetworkConfig
from kenshin.core.timeslots import JST, to_epoch_us
from kenshin.errors import InvalidInput
from kenshin.fleet.faults import OUTAGE_LEVELS, Fault, Level
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.grid.topology import Topology, TopologyConfig
from kenshin.outage.engine import State

START = dt.datetime(2026, 6, 1, tzinfo=JST)
MIN_US = 60_000_000


def scenario_names() -> list[str]:
    root = resources.files("kenshin.outage") / "scenarios"
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def load_scenario(name: str) -> dict[str, Any]:
    if name not in scenario_names():
        raise InvalidInput(f"no scenario {name!r}; scenarios: {', '.join(scenario_names())}")
    text = (resources.files("kenshin.outage") / "scenarios" / f"{name}.toml").read_text("utf-8")
    return tomllib.loads(text)


def drill_topology(meters: int) -> TopologyConfig:
    """Feeders and substations small enough that a drill of a few hundred meters has several
    of each (a utility's are ~1,200 customers and 8 feeders)."""
    per_feeder = max(40, min(1200, meters // 6))
    return TopologyConfig(customers_per_feeder=per_feeder, feeders_per_substation=2)


@dataclass
class Truth:
    level: Level
    device: int
    start_us: int
    end_us: int
    meters: np.ndarray


@dataclass
class LevelScore:
    truth: int = 0
    reported: int = 0
    matched: int = 0
    detect_s: list[float] = field(default_factory=list)
    restore_s: list[float] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.matched / self.reported if self.reported else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.truth if self.truth else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class DrillResult:
    scenario: str
    meters: int
    loss: float
    hours: float
    levels: dict[str, LevelScore]
    false_from_breakers_or_collectors: int
    pings: int
    events: int
    nested_found: int
    nested_truth: int
    # nested drops: found (confirmed) how long after their parent's power came back
    nested_after_s: list[float] = field(default_factory=list)

    @property
    def pings_per_event(self) -> float:
        return self.pings / self.events if self.events else 0.0


def _hhmm(text: str) -> dt.datetime:
    hours, minutes = (int(x) for x in text.split(":"))
    return START + dt.timedelta(hours=hours, minutes=minutes)


def _faults(
    spec: dict[str, Any], topology: Topology, collector_of: np.ndarray, seed: int
) -> tuple[list[Fault], list[Truth]]:
    rng = np.random.default_rng(seed)
    n = len(topology.feeder)
    covered = np.zeros(n, dtype=bool)
    faults: list[Fault] = []
    truths: list[Truth] = []
    order = ("substation", "feeder", "transformer", "collector", "service_drop", "breaker")
    specs = sorted(enumerate(spec.get("fault", [])), key=lambda f: order.index(f[1]["level"]))
    by_index: dict[int, Truth] = {}
    for index, item in specs:
        level = Level(item["level"])
        group: npt.NDArray[np.int64]
        if level is Level.SUBSTATION:
            group = topology.substation.astype(np.int64)
            ok = np.bincount(topology.feeder_substation) >= 2
        elif level is Level.FEEDER:
            group = topology.feeder.astype(np.int64)
            ok = np.bincount(topology.transformer_feeder, minlength=topology.n_feeders) >= 2
        elif level is Level.TRANSFORMER:
            group = topology.transformer.astype(np.int64)
            ok = np.bincount(group[group >= 0], minlength=topology.n_transformers) >= 3
        elif level is Level.COLLECTOR:
            group = collector_of.astype(np.int64)
            ok = np.bincount(group) >= 3
        else:
            group = np.arange(n, dtype=np.int64)
            ok = topology.transformer >= 0
        free = np.array([not covered[group == d].any() for d in range(len(ok))]) & ok
        if "on_feeder_of" in item:
            parent = by_index[int(item["on_feeder_of"])]
            free = ok & np.isin(np.arange(len(ok)), parent.meters)
        choices = rng.permutation(np.flatnonzero(free))
        pick = int(item.get("pick", 0))
        if pick >= len(choices):
            raise InvalidInput(f"{level} pick {pick}: the fleet has {len(choices)} to pick from")
        device = int(choices[pick])
        start, end = _hhmm(item["start"]), _hhmm(item["end"])
        faults.append(Fault(level, device, start, end))
        members = np.flatnonzero(group == device)
        truth = Truth(level, device, to_epoch_us(start), to_epoch_us(end), members)
        by_index[index] = truth
        if "on_feeder_of" not in item:
            covered[members] = True
        truths.append(truth)
    return faults, truths


def run_outage_drill(
    name: str, meters: int, seed: int, loss: float = 0.0, *, hours: float | None = None
) -> DrillResult:
    """``hours``: how long to simulate (default: the scenario's)."""
    spec = load_scenario(name)
    hours = float(spec.get("hours", 4)) if hours is None else hours
    last_end = max((_hhmm(f["end"]) for f in spec.get("fault", []) if "end" in f), default=START)
    if START + dt.timedelta(hours=hours) <= last_end:
        raise InvalidInput(
            f"{hours:g} h end before the scenario's last fault ends ({last_end:%H:%M})"
        )
    topology_config = drill_topology(meters)
    base = FleetConfig(n_meters=meters, start=START, seed=seed, topology=topology_config)
    lossless = NetworkConfig()
    from kenshin.aroute.network import Method

    for method in Method:  # the loss under test is the scenario's, not the radio model's
        lossless = lossless.with_params(method, hop_loss=0.0)
    probe = build_system(base, aroute="wire", network=lossless)
    assert probe.field is not None
    collector_of = probe.field.network.collector_of.copy()
    probe.close()
    topology = Fleet(base).population.topology
    faults, truths = _faults(spec, topology, collector_of, seed)
    config = dataclasses.replace(base, faults=tuple(faults), comm_loss=loss)
    system = build_system(
        config, aroute="wire", network=lossless, background_writer=False, outages=True
    )
    system.run(START + dt.timedelta(hours=hours))
    monitor = system.outages
    assert monitor is not None
    # what the engine reported: confirmed events, those folded into a bigger one excluded
    reported = [
        e for e in monitor.engine.events if e.merged_into is None and e.confirmed_us is not None
    ]
    system.close()

    outages = [t for t in truths if t.level in OUTAGE_LEVELS]
    innocent = np.zeros(meters, dtype=bool)  # meters whose only trouble was not a grid outage
    for t in truths:
        if t.level in (Level.BREAKER, Level.COLLECTOR):
            innocent[t.meters] = True
    for t in outages:
        innocent[t.meters] = False
    levels: dict[str, LevelScore] = {lv.value: LevelScore() for lv in OUTAGE_LEVELS}
    for t in outages:
        levels[t.level.value].truth += 1
    matched: set[int] = set()
    for event in reported:
        score = levels[event.level]
        score.reported += 1
        hit = next(
            (
                t
                for t in outages
                if t.level.value == event.level
                and t.device == event.device
                and id(t) not in matched
            ),
            None,
        )
        if hit is None:
            continue
        matched.add(id(hit))
        score.matched += 1
        if event.confirmed_us is not None:
            score.detect_s.append((event.confirmed_us - hit.start_us) / 1e6)
        restored_at = next(
            (at for at, what in event.timeline if what.startswith(State.RESTORED.value)), None
        )
        if restored_at is not None:
            score.restore_s.append((restored_at - hit.end_us) / 1e6)
    false_innocent = sum(1 for e in reported if innocent[e.meters].all())
    nested_truth = (
        [t for t in outages if t.level is Level.SERVICE_DROP]
        if any("on_feeder_of" in f for f in spec.get("fault", []))
        else []
    )
    nested_found, nested_after_s = 0, []
    parent_back = {t.device: t.end_us for t in outages if t.level is not Level.SERVICE_DROP}
    for e in reported:
        if e.nested_in is None or not any(e.device == t.device for t in nested_truth):
            continue
        nested_found += 1
        parent = next(p for p in monitor.engine.events if p.event_id == e.nested_in)
        back = parent_back.get(parent.device)
        if back is not None and e.confirmed_us is not None:
            nested_after_s.append((e.confirmed_us - back) / 1e6)
    return DrillResult(
        name,
        meters,
        loss,
        hours,
        levels,
        false_innocent,
        monitor.pings_sent,
        len(reported),
        nested_found,
        len(nested_truth),
        nested_after_s,
    )


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None
