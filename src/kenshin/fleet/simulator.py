"""The simulated fleet: population, physics and meters, stepped 5 minutes at a time.

Memory stays O(meters): the simulation streams slot by slot and never holds a day of values.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from kenshin.aroute.messages import UplinkMessage
from kenshin.core.channels import Channel
from kenshin.core.ids import Area
from kenshin.core.schema import METERS_SCHEMA
from kenshin.core.timeslots import JST, Resolution, from_epoch_us, to_epoch_us
from kenshin.errors import InvalidSetting
from kenshin.fleet.load import LoadModel
from kenshin.fleet.meters import STEP_MINUTES, MeterFleet, snapshot_differences
from kenshin.fleet.population import Population, PopulationConfig, build_population
from kenshin.fleet.uplink import (
    UplinkPlan,
    build_slot_message,
    choose_samples,
    start_registers_message,
)
from kenshin.fleet.voltage import VoltageModel
from kenshin.grid.topology import TopologyConfig


@dataclass(frozen=True, slots=True)
class FleetConfig:
    n_meters: int
    start: dt.datetime = dt.datetime(2026, 4, 1, tzinfo=JST)
    seed: int = 1
    area: Area = Area.TOKYO
    gen2_share: float = 0.7
    sample_5min_share: float = 0.10  # SPEC A2: about 10 % or more
    realtime_5min_share: float = 0.03  # SPEC A3: about 3 % or more, drawn from the A2 sample
    send_15min: bool = True  # SPEC A5 soft switch, for the whole utility
    recorder_budget_mb: int = 256
    pv_share_detached: float = 0.08
    topology: TopologyConfig = field(default_factory=TopologyConfig)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise InvalidSetting("the fleet's start time needs a time zone")
        if to_epoch_us(self.start) % Resolution.MIN30.microseconds:
            raise InvalidSetting(f"the fleet must start on a 30-min boundary, got {self.start}")
        if not 0.0 <= self.sample_5min_share <= 1.0:
            raise InvalidSetting(
                f"5-min sample share must be within 0..1, got {self.sample_5min_share}"
            )
        if not 0.0 <= self.realtime_5min_share <= self.sample_5min_share:
            raise InvalidSetting(
                "the real-time (A3) share must be within 0 and the 5-min sample (A2) share, "
                f"got {self.realtime_5min_share}"
            )
        if self.recorder_budget_mb < 1:
            raise InvalidSetting("recorder budget must be at least 1 MB")

    def describe(self, **extra: object) -> str:
        """The settings a store keeps as metadata (JSON), so readers know the fleet."""
        return json.dumps(
            {
                "n_meters": self.n_meters,
                "seed": self.seed,
                "area": self.area.code,
                "start": self.start.isoformat(),
                "gen2_share": self.gen2_share,
                "sample_5min_share": self.sample_5min_share,
                **extra,
            }
        )


class Fleet:
    """Simulated meters of one area; :meth:`run_slot` advances 30 min and returns the delivery."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x504F50]))  # "POP"
        self.population: Population = build_population(
            PopulationConfig(
                n_meters=config.n_meters,
                area=config.area,
                gen2_share=config.gen2_share,
                pv_share_detached=config.pv_share_detached,
                topology=config.topology,
            ),
            rng,
        )
        self.sampled, self.realtime = choose_samples(
            self.population, config.sample_5min_share, config.realtime_5min_share, rng
        )
        self.plan = UplinkPlan.build(self.population, self.sampled, config.send_15min)
        self.meters = MeterFleet(
            self.population, config.seed, config.start, config.recorder_budget_mb * 2**20
        )
        self.load = LoadModel(self.population, config.seed)
        self.voltage = VoltageModel(self.population, config.seed)
        self.energy_kwh = np.zeros(2)  # forward, reverse delivered in 30-min values [kWh]
        self._kwh_per_count = self.population.kwh_per_count

    @property
    def now(self) -> dt.datetime:
        return from_epoch_us(self.meters.now_us)

    def step(self) -> None:
        """Advance every meter by one 5-minute step."""
        power = self.load.step(self.now, STEP_MINUTES)
        net_w = np.where(self.meters.switch_closed, power.load_w - power.pv_w, 0.0)
        volts = self.voltage.step(net_w)
        self.meters.advance(power.load_w, power.pv_w, power.reactive_var, volts, STEP_MINUTES)
        if self.meters.now_us % Resolution.MIN30.microseconds == 0:
            for i, channel in enumerate((Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE)):
                values = snapshot_differences(self.meters.ring30.last(channel, 2), channel)[0]
                self.energy_kwh[i] += float(values.astype(np.float64) @ self._kwh_per_count)

    def run_slot(self, collector: str = "fleet") -> UplinkMessage:
        """Advance to the next 30-min boundary and return what the meters send for that slot."""
        self.step()
        while self.meters.now_us % Resolution.MIN30.microseconds:
            self.step()
        return build_slot_message(self.meters, self.plan, collector, self.now)

    def start_message(self, collector: str = "fleet") -> UplinkMessage:
        """The register reads at the current time, with no interval values."""
        return start_registers_message(self.meters, self.plan, collector, self.now)

    def meters_table(self) -> pa.Table:
        pop = self.population
        topo = pop.topology
        n = len(pop)
        return pa.Table.from_arrays(
            [
                pa.array(pop.meter_key),
                pa.array(pop.supply_point_id.tolist(), pa.string()),
                pa.array(pop.device_id.astype(np.int64)),
                pa.array(np.full(n, int(pop.area), dtype=np.uint8)),
                pa.array(pop.customer_type),
                pa.array(pop.meter_class),
                pa.array(pop.generation),
                pa.array(pop.contract_a),
                pa.array(pop.contract_kw),
                pa.array(pop.pv_kw),
                pa.array(pop.unit_exponent),
                pa.array(pop.coefficient),
                pa.array(topo.substation),
                pa.array(topo.feeder),
                pa.array(topo.transformer),
                pa.array(self.sampled),
                pa.array(self.realtime),
            ],
            schema=METERS_SCHEMA,
        )
