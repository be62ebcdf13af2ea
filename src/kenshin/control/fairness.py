"""Fairness between those a campaign limits and those it cannot (issue 16 item 3; SPEC R5):
HV and EHV customers have no switch, so they get curtailment requests for the same share of
their demand the households are asked to give, and the report compares what each group gave."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kenshin.control.campaign import Campaign

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MAX_SHARE = 0.5  # never ask an HV customer for more than half its demand


def curtailment_requests(
    campaign: Campaign, hv: I64, candidates: I64, basis: F64, listed: int
) -> float:
    """Request of each HV customer (``hv``, by meter key) the share of its ``basis`` demand the
    plan asks of the households (``candidates``); the largest ``listed`` are kept by name, all
    are counted. Returns the share asked."""
    asked = float(basis[candidates].sum())
    share = min(campaign.planned_kw / asked, MAX_SHARE) if asked > 0 else 0.0
    requested = basis[hv] * share
    order = np.argsort(-requested)[:listed]
    campaign.curtailment = [
        {"meter_key": int(hv[i]), "requested_kw": round(float(requested[i]), 1)} for i in order
    ]
    campaign.fairness["hv"] = {
        "customers": len(hv),
        "asked_share": round(share, 4),
        "requested_kw": round(float(requested.sum()), 1),
    }
    return share


def fairness_report(
    campaign: Campaign,
    candidates: I64,
    half_hours: npt.NDArray[np.int32],
    hv: I64,
    basis: F64,
    observed: F64 | None,
) -> None:
    """What the households gave (how many were limited, for how many half hours, the share of
    their forecast the checks measured) and what the HV customers gave (their ``observed``
    demand over the period so far against their ``basis`` forecast), in ``campaign.fairness``."""
    touched = np.flatnonzero(half_hours > 0)
    campaign.touched = max(campaign.touched, len(touched))
    households: dict[str, object] = {
        "candidates": len(candidates),
        "limited": len(touched),
        "limited_share": round(len(touched) / len(candidates), 4) if len(candidates) else 0.0,
        "half_hours_limited_max": int(half_hours.max(initial=0)),
        "half_hours_limited_mean": round(float(half_hours[touched].mean()), 2)
        if len(touched)
        else 0.0,
    }
    if campaign.checks:
        given = sum(c.measured_kw for c in campaign.checks) / len(campaign.checks)
        total = float(basis[candidates].sum())
        households["gave_share"] = round(given / total, 4) if total > 0 else 0.0
    if observed is not None and len(hv):
        hv_basis = float(basis[hv].sum())
        gave = hv_basis - float(observed[hv].sum())
        campaign.fairness.setdefault("hv", {})["gave_share"] = (
            round(gave / hv_basis, 4) if hv_basis > 0 else 0.0
        )
    campaign.fairness["households"] = households


__all__ = ["curtailment_requests", "fairness_report"]
