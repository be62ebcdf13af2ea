"""Build a seeded, vectorized distribution topology for a population of customers.

Low-voltage customers hang off pole transformers (柱上変圧器), a handful to about 20 each, through
their own service drop (引込線). Transformers sit on 6.6 kV feeders, feeders on distribution
substations. High-voltage customers take 6.6 kV straight from a feeder (no pole transformer).
Each feeder gets a "PV propensity" so rooftop PV clusters on some feeders as it does on new housing
estates; the voltage model turns that clustering into over-voltage excursions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kenshin.errors import InvalidSetting

IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TopologyConfig:
    mean_customers_per_transformer: float = 8.0
    max_customers_per_transformer: int = 20
    customers_per_feeder: int = 1200
    feeders_per_substation: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.mean_customers_per_transformer <= self.max_customers_per_transformer:
            raise InvalidSetting("mean customers per transformer must be within 1..max")
        if self.customers_per_feeder < 1 or self.feeders_per_substation < 1:
            raise InvalidSetting("feeder and substation sizes must be positive")


@dataclass(frozen=True, slots=True)
class Topology:
    """Per-meter placement (arrays of length n_meters) and per-element tables."""

    substation: IntArray  # per meter
    feeder: IntArray  # per meter
    transformer: IntArray  # per meter, -1 for HV/EHV customers
    service_drop: IntArray  # per meter, -1 for HV/EHV customers
    transformer_feeder: IntArray  # per transformer
    transformer_kva: FloatArray  # per transformer [kVA]
    transformer_position: FloatArray  # per transformer, 0 at the substation … 1 at the feeder end
    feeder_substation: IntArray  # per feeder
    feeder_pv_propensity: FloatArray  # per feeder, mean 1

    @property
    def n_transformers(self) -> int:
        return len(self.transformer_feeder)

    @property
    def n_feeders(self) -> int:
        return len(self.feeder_substation)


def build_topology(
    is_low_voltage: npt.NDArray[np.bool_],
    rng: np.random.Generator,
    config: TopologyConfig | None = None,
) -> Topology:
    config = config or TopologyConfig()
    n = len(is_low_voltage)
    lv_index = np.flatnonzero(is_low_voltage)
    n_lv = len(lv_index)

    # Pole transformer sizes: 1 + Poisson, capped; enough transformers to hold every LV customer.
    draws = max(16, int(n_lv / config.mean_customers_per_transformer * 1.3) + 16)
    sizes = np.minimum(
        1 + rng.poisson(config.mean_customers_per_transformer - 1, draws),
        config.max_customers_per_transformer,
    )
    cumulative = np.cumsum(sizes)
    n_tx = int(np.searchsorted(cumulative, n_lv) + 1) if n_lv else 0
    transformer = np.full(n, -1, dtype=np.int32)
    if n_lv:
        # neighbours are neighbours: a random order of LV customers fills transformers in turn
        order = lv_index[rng.permutation(n_lv)]
        tx_of_slot = np.repeat(np.arange(n_tx, dtype=np.int32), sizes[:n_tx])[:n_lv]
        transformer[order] = tx_of_slot

    n_feeders = max(1, round(n / config.customers_per_feeder))
    # transformers fill feeders in order; the remainder of the last feeder stays short
    tx_feeder = (np.arange(n_tx) * n_feeders // max(n_tx, 1)).astype(np.int32)
    tx_position = np.empty(n_tx)
    for_each = np.bincount(tx_feeder, minlength=n_feeders)
    starts = np.concatenate([[0], np.cumsum(for_each)[:-1]])
    tx_position[:] = (np.arange(n_tx) - starts[tx_feeder] + 0.5) / np.maximum(
        for_each[tx_feeder], 1
    )
    tx_kva = np.choose(np.clip(sizes[:n_tx] // 6, 0, 3), [10.0, 20.0, 30.0, 50.0]).astype(
        np.float64
    )

    feeder = np.empty(n, dtype=np.int32)
    if n_lv:
        feeder[lv_index] = tx_feeder[transformer[lv_index]]
    hv_index = np.flatnonzero(~is_low_voltage)
    feeder[hv_index] = rng.integers(0, n_feeders, len(hv_index), dtype=np.int32)

    n_substations = max(1, -(-n_feeders // config.feeders_per_substation))
    feeder_substation = (np.arange(n_feeders) // config.feeders_per_substation).astype(np.int32)
    feeder_substation = np.minimum(feeder_substation, n_substations - 1)
    # Lognormal propensity with mean 1: a few feeders carry several times the average PV.
    propensity = rng.lognormal(-0.5 * 0.8**2, 0.8, n_feeders)

    service_drop = np.full(n, -1, dtype=np.int32)
    service_drop[lv_index] = np.arange(n_lv, dtype=np.int32)
    return Topology(
        substation=feeder_substation[feeder],
        feeder=feeder,
        transformer=transformer,
        service_drop=service_drop,
        transformer_feeder=tx_feeder,
        transformer_kva=tx_kva,
        transformer_position=tx_position,
        feeder_substation=feeder_substation,
        feeder_pv_propensity=propensity,
    )
