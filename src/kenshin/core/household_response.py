"""How households live with an ampere limit below their contract (issue 16): the stated
assumptions the simulated meters act on (``kenshin.fleet.limiter``) and the campaign planner
expects (``kenshin.control.planner``). Sources and calibration: docs/control.md."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

F64 = npt.NDArray[np.float64]

VOLTS = 100.0  # an ampere contract is A × 100 V (a 30 A contract is 3 kVA)
SAFE_MARGIN = 1.3  # a household used to its cap keeps its mean this far under it
ESSENTIAL_SHARE = 0.35  # of the household's usual demand, never shed
USUAL_HOURS = 2.0  # the usual demand: a moving average over about this long
ESSENTIAL_MIN_W = 150.0
ESSENTIAL_PEAK = 1.2  # fridge compressors starting: the essential load's peak / its mean
DEFERRED_SHARE = 0.5  # of the energy shed, used later (laundry, a dishwasher, water heating)
REBOUND_MAX = 0.3  # of the demand, per 5-min step, when the deferred energy comes back


def essential_load(demand: F64, usual: F64, minimum: float) -> F64:
    """What a household never sheds: a share of its usual demand, at least ``minimum``, never
    more than it draws (any one unit: W or kW, ``minimum`` in the same)."""
    return np.minimum(demand, np.maximum(ESSENTIAL_SHARE * usual, minimum))


def kept_load(demand: F64, usual: F64, cap: F64, minimum: float) -> F64:
    """What a household used to ``cap`` still draws: its mean under cap / SAFE_MARGIN, never
    under its essential load (the same unit throughout)."""
    return np.maximum(np.minimum(demand, cap / SAFE_MARGIN), essential_load(demand, usual, minimum))


def contract_kw_by_key(meters: pa.Table) -> F64:
    """Each meter key's contract, the most it can draw [kW] (``METERS_SCHEMA``): an ampere
    contract × 100 V, else its kW contract."""
    keys = meters.column("meter_key").to_numpy().astype(np.int64)
    amperes = meters.column("contract_a").to_numpy().astype(np.float64)
    kw = meters.column("contract_kw").to_numpy(zero_copy_only=False).astype(np.float64)
    contract = np.zeros(int(keys.max(initial=-1)) + 1)
    contract[keys] = np.where(amperes > 0, amperes * VOLTS / 1000, np.nan_to_num(kw))
    return contract
