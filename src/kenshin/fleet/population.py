"""The meter population: who the customers are, which meter each has and where it hangs.

Everything is a numpy array indexed by ``meter_key`` (0 … n-1) so the simulator can work on the
whole fleet at once (ARCHITECTURE principle 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kenshin.core.customers import AMPERE_STEPS_A, CustomerType
from kenshin.core.ids import Area, make_supply_point_ids
from kenshin.core.meterspec import Generation, MeterClass, meter_spec
from kenshin.errors import InvalidSetting
from kenshin.fleet.customers import (
    DEFAULT_MIX,
    HOUSEHOLD_AMPERE_WEIGHTS,
    METER_CLASS_CHOICES,
    SHOP_AMPERE_WEIGHTS,
)
from kenshin.grid.topology import Topology, TopologyConfig, build_topology

# Areas whose households mostly have minimum-charge contracts with no ampere breaker (SPEC Facts)
NO_AMPERE_CONTRACT_AREAS = frozenset({Area.KANSAI, Area.CHUGOKU, Area.SHIKOKU, Area.OKINAWA})


@dataclass(frozen=True, slots=True)
class PopulationConfig:
    n_meters: int
    area: Area = Area.TOKYO
    gen2_share: float = 0.7  # migration state (M3): share of next-generation meters
    pv_share_detached: float = 0.08  # SPEC Facts: ~8 % of detached houses
    pv_mean_kw: float = 4.5
    mix: dict[CustomerType, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    topology: TopologyConfig = field(default_factory=TopologyConfig)

    def __post_init__(self) -> None:
        if self.n_meters < 1:
            raise InvalidSetting(f"a fleet needs at least one meter, got {self.n_meters}")
        if not 0.0 <= self.gen2_share <= 1.0:
            raise InvalidSetting(f"gen2 share must be within 0..1, got {self.gen2_share}")
        if not 0.0 <= self.pv_share_detached <= 1.0:
            raise InvalidSetting(f"PV share must be within 0..1, got {self.pv_share_detached}")
        if any(v < 0 for v in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise InvalidSetting("customer mix shares must be non-negative and not all zero")


@dataclass(frozen=True, slots=True)
class Population:
    area: Area
    meter_key: npt.NDArray[np.int32]
    supply_point_id: npt.NDArray[np.str_]
    device_id: npt.NDArray[np.uint64]  # the meter's A-route address: area × 10**14 + serial
    customer_type: npt.NDArray[np.uint8]
    meter_class: npt.NDArray[np.uint8]
    generation: npt.NDArray[np.uint8]
    contract_a: npt.NDArray[np.int16]  # ampere contract, 0 where none (minimum-charge, HV) [A]
    contract_kw: npt.NDArray[np.float32]  # contracted demand for LV power and HV [kW]
    pv_kw: npt.NDArray[np.float32]  # rooftop PV capacity, 0 without PV [kW]
    unit_exponent: npt.NDArray[np.int8]  # register unit 10**x kWh
    coefficient: npt.NDArray[np.int32]  # register multiplier
    topology: Topology

    def keys_of(self, supply_point_ids: list[str]) -> list[int | None]:
        """The meter key of each supply point id (None where the fleet has no such meter):
        one vectorized search, no index of a million strings kept."""
        wanted = np.asarray(supply_point_ids, dtype=self.supply_point_id.dtype)
        order = np.argsort(self.supply_point_id)
        at = np.searchsorted(self.supply_point_id, wanted, sorter=order)
        at = np.minimum(at, len(order) - 1)
        found = self.supply_point_id[order[at]] == wanted
        return [int(order[a]) if ok else None for a, ok in zip(at, found, strict=True)]

    def __len__(self) -> int:
        return len(self.meter_key)

    @property
    def kwh_per_count(self) -> npt.NDArray[np.float64]:
        return np.power(10.0, self.unit_exponent.astype(np.float64)) * self.coefficient

    @property
    def is_low_voltage(self) -> npt.NDArray[np.bool_]:
        return self.meter_class <= MeterClass.LV_3P3W


def _choose(
    rng: np.random.Generator, n: int, values: list[int], weights: list[float]
) -> npt.NDArray[np.int64]:
    p = np.asarray(weights, dtype=np.float64)
    return np.asarray(values, dtype=np.int64)[rng.choice(len(values), size=n, p=p / p.sum())]


def build_population(config: PopulationConfig, rng: np.random.Generator) -> Population:
    n = config.n_meters
    types = list(config.mix)
    ctype = _choose(rng, n, [int(t) for t in types], list(config.mix.values())).astype(np.uint8)

    meter_class = np.empty(n, dtype=np.uint8)
    for t in CustomerType:
        idx = np.flatnonzero(ctype == t)
        if len(idx):
            choices = METER_CLASS_CHOICES[t]
            meter_class[idx] = _choose(
                rng, len(idx), [int(c) for c, _ in choices], [p for _, p in choices]
            )
    generation = np.where(rng.random(n) < config.gen2_share, Generation.GEN2, Generation.GEN1)
    generation = generation.astype(np.uint8)

    contract_a = np.zeros(n, dtype=np.int16)
    steps = list(AMPERE_STEPS_A)
    for kind, weights in (
        (
            (CustomerType.HOUSEHOLD_DETACHED, CustomerType.HOUSEHOLD_APARTMENT),
            HOUSEHOLD_AMPERE_WEIGHTS,
        ),
        ((CustomerType.SHOP_OFFICE,), SHOP_AMPERE_WEIGHTS),
    ):
        idx = np.flatnonzero(np.isin(ctype, [int(k) for k in kind]))
        contract_a[idx] = _choose(rng, len(idx), steps, list(weights))
    # gen-1 switches stop at 60 A (M3); larger contracts are on gen-2 meters
    big = contract_a > 60
    generation[big] = Generation.GEN2
    if config.area in NO_AMPERE_CONTRACT_AREAS:
        contract_a[
            np.isin(ctype, [CustomerType.HOUSEHOLD_DETACHED, CustomerType.HOUSEHOLD_APARTMENT])
        ] = 0

    # Contracted demand [kW]: lognormal (median, sigma) clipped to the class's range. With the
    # load model's load factors this gives ~55 kW mean power per HV customer and ~3 MW per EHV
    # one, close to Japanese sales per customer of those classes.
    contract_kw = np.zeros(n, dtype=np.float32)
    for t, (median, sigma, low, high) in {
        CustomerType.LV_POWER: (12.0, 0.7, 3.0, 49.0),
        CustomerType.HV_BUILDING: (70.0, 0.8, 50.0, 2000.0),
        CustomerType.HV_FACTORY: (100.0, 0.9, 50.0, 2000.0),
        CustomerType.EHV_FACTORY: (3000.0, 0.8, 2000.0, 50000.0),
    }.items():
        idx = np.flatnonzero(ctype == t)
        contract_kw[idx] = np.clip(
            rng.lognormal(np.log(median), sigma, len(idx)), low, high
        ).round()

    is_lv = meter_class <= MeterClass.LV_3P3W
    topology = build_topology(is_lv, rng, config.topology)

    # Rooftop PV on detached houses, clustered by feeder propensity, overall share as configured.
    detached = np.flatnonzero(ctype == CustomerType.HOUSEHOLD_DETACHED)
    propensity = topology.feeder_pv_propensity[topology.feeder[detached]]
    p = np.clip(config.pv_share_detached * propensity / max(propensity.mean(), 1e-9), 0.0, 1.0)
    has_pv = rng.random(len(detached)) < p
    pv_kw = np.zeros(n, dtype=np.float32)
    pv_kw[detached[has_pv]] = np.clip(
        rng.normal(config.pv_mean_kw, 1.2, int(has_pv.sum())), 2.0, 10.0
    ).round(1)

    unit_exponent = np.empty(n, dtype=np.int8)
    coefficient = np.empty(n, dtype=np.int32)
    for g in Generation:
        for c in MeterClass:
            idx = np.flatnonzero((generation == g) & (meter_class == c))
            if len(idx):
                register = meter_spec(g, c).register
                unit_exponent[idx] = register.unit_exponent
                coefficient[idx] = register.coefficient

    prefix = 100_000 + int(rng.integers(0, 900_000))
    serials = np.arange(1, n + 1, dtype=np.int64) * 37 + 10**12
    ids = make_supply_point_ids(config.area, serials, prefix)
    return Population(
        area=config.area,
        meter_key=np.arange(n, dtype=np.int32),
        supply_point_id=np.asarray(ids),
        device_id=(serials + int(config.area) * 10**14).astype(np.uint64),
        customer_type=ctype,
        meter_class=meter_class,
        generation=generation,
        contract_a=contract_a,
        contract_kw=contract_kw,
        pv_kw=pv_kw,
        unit_exponent=unit_exponent,
        coefficient=coefficient,
        topology=topology,
    )
