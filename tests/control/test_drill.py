"""The control drill at a small size (issue 16 item 4): an evening campaign runs end to end —
planned, gated under a declared emergency, signed, carried, limited by the meters, verified and
re-planned — and what must hold at any size holds: every limited meter back to its contract
within ten minutes of the period's end (the meters revert by themselves), no household of the
priority register limited, every command acknowledged, households shed rather than lock out, a
reduction achieved in every half hour. (The ±5 % figure is the README's, from the 10,000 and
100,000-meter runs: not met yet.)"""

from __future__ import annotations

import pytest

from kenshin.app.control_drill import run_control_drill
from kenshin.errors import InvalidInput
from tests.test_cli import run


@pytest.fixture(scope="module")
def drill():  # type: ignore[no-untyped-def]
    return run_control_drill(0.08, 1_500, 3)


def test_a_campaign_runs_end_to_end(drill) -> None:  # type: ignore[no-untyped-def]
    assert drill.restored_after_s is not None and drill.restored_after_s <= 600
    assert drill.priority_touched == 0
    assert drill.commands > 0 and drill.failed <= 0.01 * drill.commands
    assert drill.touched > 0 and drill.trips > 0
    assert drill.lockouts <= 0.05 * drill.touched  # the household floor keeps essentials on
    halves = [sum(drill.achieved_kw[i : i + 6]) / 6 for i in range(0, 24, 6)]
    assert len(drill.achieved_kw) == 24 and all(h > 0 for h in halves)
    assert 0.5 * drill.target_kw <= drill.mean_kw <= 1.5 * drill.target_kw
    assert len(drill.verified) == 4 and all(m > 0 for m, _ in drill.verified)
    campaign = drill.campaign
    assert campaign.state.value == "completed" and len(campaign.progress) == 24
    assert campaign.fairness["households"]["limited"] == drill.touched
    # X2: every request quarantined over the operator's threshold was released by the
    # director; no switching command reached the head-end without passing the gate
    assert drill.verdicts.get("released", 0) > 0 and drill.sent_without_passing == 0
    assert set(drill.verdicts) <= {"accepted", "released"}


def test_the_command_prints_the_scores_and_refuses_bad_input(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(
        capsys, "drill", "control", "--target-mw", "0.05", "--meters", "600", "--seed", "2"
    )
    assert code == 0, err
    assert "achieved" in out and "households limited" in out and "trips, lockouts" in out
    code, _, err = run(capsys, "drill", "control", "--target-mw", "-1")
    assert code == 2 and err.count("\n") <= 3
    with pytest.raises(InvalidInput, match="must be positive"):
        run_control_drill(0.0, 100, 1)
