"""The simulated fleet: population, physics and meters, stepped 5 minutes at a time.

Memory stays O(meters): the simulation streams slot by slot and never holds a day of values.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.aroute.messages import IntervalBlock, UplinkMessage
from kenshin.core.channels import Channel
from kenshin.core.ids import Area
from kenshin.core.meterspec import DEFAULT_RETENTION_5, DEFAULT_RETENTION_30_15
from kenshin.core.schema import METERS_SCHEMA
from kenshin.core.specified import SPECIFIED_SCHEMA
from kenshin.core.timeslots import JST, Resolution, from_epoch_us, to_epoch_us
from kenshin.errors import InvalidSetting
from kenshin.fleet.faults import Fault, FaultSchedule
from kenshin.fleet.limiter import Limiter, SwitchEvents, limiter_settings
from kenshin.fleet.load import LoadModel
from kenshin.fleet.meters import MODULUS, STEP_MINUTES, MeterFleet, snapshot_differences
from kenshin.fleet.population import Population, PopulationConfig, build_population
from kenshin.fleet.specified import SpecifiedMeters, choose_specified
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
    # SPEC A2: 5-min history from about 10 % or more of the LV meters and, drawn separately,
    # of the HV/EHV meters (each a per-utility setting); next-generation meters only
    sample_5min_share_lv: float = 0.10
    sample_5min_share_hv: float = 0.10
    # SPEC A3: real-time 5-min values from about 3 % or more of the LV meters, drawn from the LV
    # A2 sample (HV real-time voltage comes from IT switches, not meters)
    realtime_5min_share: float = 0.03
    # SPEC A5 soft switch for the whole utility: off, as the report specifies for now ("30分値
    # (15分値は計量器に記録のみ)"): next-generation meters record 15-min values and send 30-min
    # ones; the 15-min values stay in the meters' recorders for re-reads. On: they send both.
    # A start-up setting (docs/architecture.md); single meters switch with SET_SOFT_SWITCH.
    send_15min: bool = False
    # SPEC M4: how long next-generation meters keep their values (the utility's recording
    # periods; gen-1 meters keep 30-min values 45 days, M3). A re-read of older values is refused
    # by the meter (REJECTED_NOT_HELD). The rings are also capped by recorder_budget_mb.
    recording_period_30_15: dt.timedelta = DEFAULT_RETENTION_30_15
    recording_period_5: dt.timedelta = DEFAULT_RETENTION_5
    recorder_budget_mb: int = 256
    pv_share_detached: float = 0.08
    # SPEC S3: EV chargers with a specified meter on this share of detached households, and
    # specified PV inverters on this share of the PV households (fleet/specified.py)
    specified_share: float = 0.01
    specified_pv_share: float = 0.1
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    # outages, breaker trips and collector failures in simulated time (fleet/faults.py; the
    # wire A-route only: the direct path has no radios to fall silent)
    faults: tuple[Fault, ...] = ()
    # random communication loss: this share of uplink frames is lost on the way, on top of the
    # network model's own loss (issue 15 drills: "0 % and 2 % random loss")
    comm_loss: float = 0.0
    # deprecated: one share for both samples (what `kenshin simulate --sample-5min` gives); it
    # sets sample_5min_share_lv and _hv and is then None
    sample_5min_share: float | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise InvalidSetting("the fleet's start time needs a time zone")
        if to_epoch_us(self.start) % Resolution.MIN30.microseconds:
            raise InvalidSetting(f"the fleet must start on a 30-min boundary, got {self.start}")
        both = self.sample_5min_share
        if both is not None:
            if (self.sample_5min_share_lv, self.sample_5min_share_hv) != (0.10, 0.10):
                raise InvalidSetting(
                    "give sample_5min_share_lv and sample_5min_share_hv, "
                    "or the deprecated sample_5min_share, not both"
                )
            object.__setattr__(self, "sample_5min_share_lv", both)
            object.__setattr__(self, "sample_5min_share_hv", both)
            object.__setattr__(self, "sample_5min_share", None)
        for name in ("sample_5min_share_lv", "sample_5min_share_hv"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidSetting(f"{name} must be within 0..1, got {getattr(self, name)}")
        if not 0.0 <= self.realtime_5min_share <= self.sample_5min_share_lv:
            raise InvalidSetting(
                "the real-time (A3) share must be within 0 and the LV 5-min sample (A2) share, "
                f"got {self.realtime_5min_share}"
            )
        for name in ("specified_share", "specified_pv_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidSetting(f"{name} must be within 0..1, got {getattr(self, name)}")
        if not 0.0 <= self.comm_loss < 1.0:
            raise InvalidSetting(f"comm_loss must be within 0..1, got {self.comm_loss}")
        if self.recorder_budget_mb < 1:
            raise InvalidSetting("recorder budget must be at least 1 MB")
        # a day of values must survive until it has been sent: 30/15-min values are re-read
        # for a day (A1); a day's 5-min values are pushed the next night (A2)
        for name, least in (
            ("recording_period_30_15", dt.timedelta(days=1)),
            ("recording_period_5", dt.timedelta(days=2)),
        ):
            if getattr(self, name) < least:
                raise InvalidSetting(f"{name} must be at least {least}, got {getattr(self, name)}")

    def describe(self, **extra: object) -> str:
        """The settings a store keeps as metadata (JSON), so readers know the fleet."""
        return json.dumps(
            {
                "n_meters": self.n_meters,
                "seed": self.seed,
                "area": self.area.code,
                "start": self.start.isoformat(),
                "gen2_share": self.gen2_share,
                "sample_5min_share_lv": self.sample_5min_share_lv,
                "sample_5min_share_hv": self.sample_5min_share_hv,
                "realtime_5min_share": self.realtime_5min_share,
                "recording_period_30_15_days": self.recording_period_30_15 / dt.timedelta(days=1),
                "recording_period_5_days": self.recording_period_5 / dt.timedelta(days=1),
                "send_15min": self.send_15min,
                "specified_share": self.specified_share,
                "specified_pv_share": self.specified_pv_share,
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
            self.population,
            config.sample_5min_share_lv,
            config.sample_5min_share_hv,
            config.realtime_5min_share,
            rng,
        )
        self.plan = UplinkPlan.build(self.population, self.sampled, config.send_15min)
        self.meters = MeterFleet(
            self.population,
            config.seed,
            config.start,
            config.recorder_budget_mb * 2**20,
            recording_period_30_15=config.recording_period_30_15,
            recording_period_5=config.recording_period_5,
        )
        self.faults = FaultSchedule(config.faults, self.population.topology)
        self.dark = np.zeros(len(self.population), dtype=bool)  # of the last step
        self.load = LoadModel(self.population, config.seed)
        # the switch's limiter and how households live with a limit below their contract
        self.limiter = Limiter(
            self.meters.has_switch,
            self.meters.switch_state,
            self.population.contract_a.astype(np.int16),
            limiter_settings(config.area),
            config.seed,
        )
        self.switch_events = SwitchEvents.none()  # of the last step
        self.voltage = VoltageModel(self.population, config.seed)
        self.energy_kwh = np.zeros(2)  # forward, reverse delivered in 30-min values [kWh]
        self._kwh_per_count = self.population.kwh_per_count
        roster = choose_specified(
            self.population, config.specified_share, config.specified_pv_share, config.seed
        )
        self.specified: SpecifiedMeters | None = None
        if len(roster):
            self.specified = SpecifiedMeters(
                roster, self.meters.mwh_per_count, config.seed, config.start
            )

    @property
    def now(self) -> dt.datetime:
        return from_epoch_us(self.meters.now_us)

    def dark_at(self, at_us: int) -> npt.NDArray[np.bool_]:
        """Meters without grid power at ``at_us`` (issue 15: scheduled outages)."""
        if not self.faults.any:
            return np.zeros(len(self.population), dtype=bool)
        return self.faults.dark(at_us)

    def step(self) -> None:
        """Advance every meter by one 5-minute step."""
        self.dark = self.dark_at(self.meters.now_us)
        power = self.load.step(self.now, STEP_MINUTES)
        sub = self.specified
        load_w = power.load_w if sub is None else sub.add_charging(power.load_w)  # SPEC S3
        pv_w, reactive_var = power.pv_w, power.reactive_var
        if self.faults.any:  # no grid, or the customer's breaker open: nothing flows
            off = self.dark | self.faults.breaker_open(self.meters.now_us)
            load_w, pv_w = np.where(off, 0.0, load_w), np.where(off, 0.0, pv_w)
            reactive_var = np.where(off, 0.0, reactive_var)
        powered = ~self.dark
        load_w, closed_share, self.switch_events = self.limiter.step(
            self.meters.now_us,
            load_w,
            pv_w,
            self.meters.limit_in_force(self.meters.now_us),
            powered,
        )
        pv_w, reactive_var = pv_w * closed_share, reactive_var * closed_share
        flowing = closed_share > 0
        net_w = np.where(flowing, load_w - pv_w, 0.0)
        volts = self.voltage.step(net_w)
        before = None if sub is None else self.meters.energy_registers(sub.parent)
        self.meters.advance(
            load_w,
            pv_w,
            reactive_var,
            volts,
            STEP_MINUTES,
            powered=None if not self.faults.any else powered,
            flowing=flowing,
        )
        if sub is not None and before is not None:
            moved = (self.meters.energy_registers(sub.parent) - before) % MODULUS
            sub.advance(pv_w, flowing, moved, STEP_MINUTES)
        if self.meters.now_us % Resolution.MIN30.microseconds == 0:
            for i, channel in enumerate((Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE)):
                values = snapshot_differences(self.meters.ring30.last(channel, 2), channel)[0]
                # not `@`: a BLAS dot starts OpenBLAS's threads, which then spin for a while
                # after every call on the cores the store's writer and the sweep need
                self.energy_kwh[i] += float(np.multiply(values, self._kwh_per_count).sum())

    def run_slot(self, collector: str = "fleet") -> UplinkMessage:
        """Advance to the next 30-min boundary and return what the meters send for that slot."""
        self.step()
        while self.meters.now_us % Resolution.MIN30.microseconds:
            self.step()
        return build_slot_message(self.meters, self.plan, collector, self.now)

    def specified_message(self, collector: str = "iot") -> UplinkMessage | None:
        """The specified sub-meters' 30-min values of the slot that just ended (SPEC S3), on
        ACTIVE_FORWARD under their own keys; None without sub-meters. The IoT route comes in a
        later issue: the direct mode hands this to the head-end next to the A-route message."""
        sub = self.specified
        if sub is None:
            return None
        if self.meters.now_us % Resolution.MIN30.microseconds:
            raise ValueError("specified-meter values are sent at 30-min boundaries")
        block = IntervalBlock(
            Resolution.MIN30,
            Channel.ACTIVE_FORWARD,
            sub.roster.meter_key,
            np.array([self.meters.now_us], dtype=np.int64),
            sub.last_values[None, :],
        )
        return UplinkMessage(
            collector=collector, sent_at=self.now, intervals=(block,), registers=()
        )

    def specified_table(self) -> pa.Table:
        """The roster of specified sub-meters (``SPECIFIED_SCHEMA``), empty without any."""
        if self.specified is None:
            return SPECIFIED_SCHEMA.empty_table()
        return self.specified.roster.table()

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
