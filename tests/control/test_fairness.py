"""HV curtailment requests and the fairness report (issue 16 item 3; SPEC R5), by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kenshin.control.campaign import Campaign, CampaignSpec, CampaignState, Check
from kenshin.control.fairness import curtailment_requests, fairness_report


def _campaign(planned_kw: float) -> Campaign:
    spec = CampaignSpec("shortfall", 100.0, 0, 3_600_000_000)
    campaign = Campaign(1, "op", spec, CampaignState.RUNNING, 0)
    campaign.planned_kw = planned_kw
    return campaign


def test_hv_customers_are_asked_the_households_share() -> None:
    basis = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 50.0])  # four households, two HV [kW]
    campaign = _campaign(planned_kw=1.0)  # a tenth of the households' 10 kW
    share = curtailment_requests(campaign, np.array([4, 5]), np.arange(4), basis, listed=1)
    assert share == pytest.approx(0.1)
    assert campaign.curtailment == [{"meter_key": 4, "requested_kw": 10.0}]  # the largest only
    assert campaign.fairness["hv"] == {"customers": 2, "asked_share": 0.1, "requested_kw": 15.0}
    greedy = _campaign(planned_kw=9.0)  # never more than half of an HV customer's demand
    assert curtailment_requests(greedy, np.array([4]), np.arange(4), basis, 5) == 0.5


def test_the_report_says_who_gave_what() -> None:
    campaign = _campaign(planned_kw=1.0)
    campaign.checks = [Check(1, 1.5, 1.0, 1.0), Check(2, 0.5, 1.0, 1.0)]  # 1 kW on average
    basis = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    observed = np.array([0.0, 0.0, 0.0, 0.0, 92.0])
    half_hours = np.array([2, 0, 1, 3, 0], np.int32)
    fairness_report(campaign, np.arange(4), half_hours, np.array([4]), basis, observed)
    assert campaign.fairness["households"] == {
        "candidates": 4,
        "limited": 3,
        "limited_share": 0.75,
        "half_hours_limited_max": 3,
        "half_hours_limited_mean": 2.0,
        "gave_share": 0.1,
    }
    assert campaign.fairness["hv"]["gave_share"] == 0.08 and campaign.touched == 3
