"""What comes back during a campaign (issue 16; the household model's rebound): a household
held under a cap uses part of what it shed later (``DEFERRED_SHARE``: the laundry, the
dishwasher, water heating), at most ``REBOUND_MAX`` of its demand a 5-min step, and only while
its cap leaves room. Over a 2 h campaign that eats into the reduction more each half hour (in
the drill 0, 4, 9 and 14 % of it in its four half hours, when the planner did not expect it),
and most of all in households a re-plan eases or lets go: their cap no longer holds it back.

The campaign desk keeps each household's expected deferred energy, half hour by half hour,
from the limits it sent and the forecast it sent them by, and plans each half hour for the
target plus what is expected to come back in it (``kenshin.control.desk``). Everything here is
in expectation over the forecast's uncertainty, like ``planner.expected_reduction_kw``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from kenshin.core.household_response import DEFERRED_SHARE, REBOUND_MAX, SAFE_MARGIN, VOLTS

F64 = npt.NDArray[np.float64]

STEPS = 6  # 5-min steps of a half hour (the meters' limiter works in them)
STEP_H = 5 / 60


def rebound_room_kw(demand_kw: F64, cap_a: F64, contract_a: F64, uncertainty: float) -> F64:
    """How much deferred load each household can bring back in a step [kW], in expectation:
    ``REBOUND_MAX`` of its demand D, under a cap no more than its comfortable level
    c = cap / 1.3 leaves (none while D is over c: it is shedding). A cap at or above the
    contract holds nothing back. D is lognormal of mean ``demand_kw`` and log-sd
    ``uncertainty``, as in ``planner.expected_reduction_kw``."""
    return brought_back_kw(demand_kw, cap_a, contract_a, uncertainty, np.inf)


def brought_back_kw(
    demand_kw: F64, cap_a: F64, contract_a: F64, uncertainty: float, deferred_kw: F64 | float
) -> F64:
    """E[min(R, s)]: what comes back in a step [kW] of a household with ``deferred_kw`` (its
    deferred energy over a step, s) and room R (``rebound_room_kw``) — the expectation of the
    lesser, not the lesser of the expectations, which would count a household whose room and
    deferred energy come at different steps twice. R = a D below k = c / (1 + a), c − D from
    k to c, 0 above (a = ``REBOUND_MAX``); without a cap R = a D."""
    mean = np.maximum(np.asarray(demand_kw, np.float64), 1e-12)
    cap_a = np.asarray(cap_a, np.float64)
    most = np.broadcast_to(np.asarray(deferred_kw, np.float64), mean.shape)
    free = (cap_a <= 0) | (cap_a >= np.asarray(contract_a, np.float64))
    c = np.where(free, np.inf, cap_a * VOLTS / 1000 / SAFE_MARGIN)
    a = REBOUND_MAX
    if uncertainty <= 0:
        return np.asarray(np.minimum(np.minimum(a * mean, np.maximum(c - mean, 0.0)), most))
    sigma = uncertainty

    def below(x: F64) -> F64:  # P(D < x)
        return _below(mean, x, sigma)

    def part(x: F64) -> F64:  # E[D; D < x]
        return _partial(mean, x, sigma)

    infinite = np.isinf(most)
    capped = np.where(infinite, 0.0, most)  # (0: any value; those have all their room)
    low = capped / a  # a D reaches s here
    unlimited = np.where(infinite, a * mean, a * part(low) + capped * (1 - below(low)))
    finite_c = np.where(free, 1.0, c)  # (1.0: any level; those use ``unlimited``)
    k = finite_c / (1 + a)
    room = a * part(k) + finite_c * (below(finite_c) - below(k)) - (part(finite_c) - part(k))
    # E[(R − s)⁺]: R over s for D from s / a up to c − s (none when s ≥ a k, R's peak)
    reaches = ~infinite & (capped < a * k)
    lo = np.where(reaches, capped / a, k)
    hi = np.where(reaches, finite_c - capped, k)
    excess = (
        a * (part(k) - part(lo))
        - capped * (below(k) - below(lo))
        + (finite_c - capped) * (below(hi) - below(k))
        - (part(hi) - part(k))
    )
    limited = np.maximum(room - np.where(reaches, excess, 0.0), 0.0)
    return np.asarray(np.where(free, unlimited, limited), np.float64)


def _below(mean: F64, level: F64, sigma: float) -> F64:
    """P(D < level), D lognormal of mean ``mean`` and log-sd ``sigma``."""
    level = np.maximum(level, 1e-300)
    return np.asarray(ndtr((np.log(level / mean) + sigma * sigma / 2) / sigma), np.float64)


def _partial(mean: F64, level: F64, sigma: float) -> F64:
    """E[D; D < level] (the part of D's mean below ``level``)."""
    level = np.maximum(level, 1e-300)
    return np.asarray(mean * ndtr((np.log(level / mean) - sigma * sigma / 2) / sigma), np.float64)


def half_hour(
    deferred_kwh: F64,
    reduction_kw: F64,
    demand_kw: F64,
    cap_a: F64,
    contract_a: F64,
    uncertainty: float,
) -> tuple[F64, F64]:
    """One half hour of the limiter's bookkeeping, in expectation over each step's demand
    (log-sd ``uncertainty`` around ``demand_kw``): each step a household brings back what its
    room and its deferred energy allow (``brought_back_kw``), and what it sheds
    (``reduction_kw``, the planner's expected reduction) adds ``DEFERRED_SHARE`` of it (a
    step that sheds brings nothing back, so the order within a step does not matter). Returns
    (the deferred energy at the half hour's end [kWh], the mean load that came back [kW])."""
    stock = np.asarray(deferred_kwh, np.float64).copy()
    back = np.zeros_like(stock)
    for _ in range(STEPS):
        now = brought_back_kw(demand_kw, cap_a, contract_a, uncertainty, stock / STEP_H)
        stock += DEFERRED_SHARE * reduction_kw * STEP_H - now * STEP_H
        back += now
    return np.maximum(stock, 0.0), back / STEPS


__all__ = ["STEPS", "brought_back_kw", "half_hour", "rebound_room_kw"]
