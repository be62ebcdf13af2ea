"""The switching gate (issue 16 item 2; SPEC X1, X2): per-actor thresholds quarantine a request
for a second person, the requester cannot release their own, X1's hour and ten-minute budgets
hold across actors, an emergency declared by two approvers lifts them, and every decision keeps
its reason. Meters of 4 kW contracts (40 A), so each figure is worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kenshin.aroute.frames import CommandKind
from kenshin.control.gate import ControlGate, ControlLimits, Verdict
from kenshin.errors import Forbidden, InvalidInput, InvalidSetting, NotFound

OPEN, CLOSE, LIMIT = CommandKind.SWITCH_OPEN, CommandKind.SWITCH_CLOSE, CommandKind.SET_AMPERE_LIMIT
MIN = 60_000_000
T0 = 1_780_000_000_000_000
LIMITS = ControlLimits(
    meters_per_actor=10,
    kw_per_actor=30.0,
    window_s=3600,
    x1_hour_kw=100.0,
    x1_ten_minutes_kw=200.0,
)


def _gate() -> ControlGate:
    return ControlGate(np.full(1000, 4.0), LIMITS)


def test_at_risk_is_what_a_command_could_interrupt() -> None:
    gate = _gate()
    keys = np.arange(5)
    assert gate.at_risk_kw(OPEN, keys, ()) == 20.0  # the whole contract
    assert gate.at_risk_kw(LIMIT, keys, (10,)) == pytest.approx(15.0)  # 4 kW − 1 kW each
    assert gate.at_risk_kw(LIMIT, keys, (60,)) == 0.0  # over the contract: nothing
    assert gate.at_risk_kw(CLOSE, keys, ()) == 0.0


def test_within_the_limits_it_passes_and_counts() -> None:
    gate = _gate()
    first = gate.submit("ops-1", "arrears", OPEN, [1, 2], (), T0)
    assert first.verdict is Verdict.ACCEPTED and first.passes and first.at_risk_kw == 8.0
    # the same actor's next request counts what passed before in the window
    second = gate.submit("ops-1", "arrears", OPEN, range(3, 9), (), T0 + MIN)  # 8 + 24 kW
    assert second.verdict is Verdict.QUARANTINED and not second.passes
    assert "32 kW at risk in 60 min by ops-1 (over 30)" in second.why
    # another actor has their own allowance; an hour later the first one has theirs again
    assert gate.submit("ops-2", "arrears", OPEN, range(3, 9), (), T0 + MIN).passes
    assert gate.submit("ops-1", "arrears", OPEN, range(10, 16), (), T0 + 61 * MIN).passes


def test_too_many_meters_is_quarantined_and_released_by_another_person() -> None:
    gate = _gate()
    held = gate.submit("ops-1", "campaign test", CLOSE, range(11), (), T0)
    assert held.verdict is Verdict.QUARANTINED and "11 meters" in held.why
    with pytest.raises(Forbidden, match="person who asked"):
        gate.release(held.request_id, "ops-1", T0 + MIN)
    released = gate.release(held.request_id, "boss", T0 + MIN)
    assert released.verdict is Verdict.RELEASED and released.passes
    assert released.decided_by == "boss" and released.decided_us == T0 + MIN
    with pytest.raises(InvalidInput, match="released, not held"):
        gate.release(held.request_id, "boss", T0 + 2 * MIN)
    other = gate.submit("ops-1", "campaign test", CLOSE, range(20, 40), (), T0)
    rejected = gate.reject(other.request_id, "boss", T0 + MIN, "wrong feeder")
    assert rejected.verdict is Verdict.REJECTED and "wrong feeder" in rejected.why
    assert [what.split(":")[0] for _, what in released.timeline] == ["quarantined", "released"]


def test_x1_the_hour_needs_a_release_and_ten_minutes_a_declared_emergency() -> None:
    gate = _gate()
    for n, actor in enumerate(("a", "b", "c")):  # 3 × 28 kW = 84 kW in the hour
        assert gate.submit(actor, "work", OPEN, range(7 * n, 7 * n + 7), (), T0).passes
    over_hour = gate.submit("d", "work", OPEN, range(100, 105), (), T0 + MIN)  # +20 kW
    assert over_hour.verdict is Verdict.QUARANTINED and "X1: 104 kW" in over_hour.why
    assert gate.release(over_hour.request_id, "boss", T0 + MIN).passes  # released: 104 ≤ 200
    big = gate.submit("e", "work", OPEN, range(200, 230), (), T0 + 2 * MIN)  # +120 kW
    assert big.verdict is Verdict.REFUSED and "X1: 224 kW at risk in 10 min" in big.why
    # a declared emergency (R4): two different approvers, for a period
    with pytest.raises(Forbidden, match="two different"):
        gate.declare_emergency(("boss", "boss"), "shortfall", T0, T0 + 60 * MIN)
    gate.declare_emergency(("boss", "chief"), "shortfall", T0 + 2 * MIN, T0 + 60 * MIN)
    again = gate.submit("e", "work", OPEN, range(200, 230), (), T0 + 3 * MIN)
    assert again.verdict is Verdict.QUARANTINED  # still over e's own allowance …
    assert gate.release(again.request_id, "boss", T0 + 3 * MIN).passes  # … but X1 is lifted
    after = gate.submit("f", "work", OPEN, range(300, 306), (), T0 + 61 * MIN)
    assert after.verdict is Verdict.QUARANTINED and "X1" in after.why  # the period is over


def test_bad_requests_are_one_clear_line() -> None:
    gate = _gate()
    with pytest.raises(InvalidInput, match="needs a reason"):
        gate.submit("ops", "  ", OPEN, [1], (), T0)
    with pytest.raises(InvalidInput, match="at least one meter"):
        gate.submit("ops", "x", OPEN, [], (), T0)
    with pytest.raises(NotFound, match="no meter with key 5000"):
        gate.submit("ops", "x", OPEN, [5000], (), T0)
    with pytest.raises(NotFound, match="no control request 99"):
        gate.release(99, "boss", T0)
    with pytest.raises(InvalidSetting):
        ControlLimits(x1_hour_kw=80_000.0)
    assert gate.requests == {}  # nothing was created by any of them


def test_requests_are_kept_in_the_store_and_outlive_the_gate(tmp_path) -> None:
    """Every decision is written as it is made; a gate opened again goes on numbering after the
    last request and closes one an earlier run held (its meters are not all kept)."""
    import json

    from kenshin.mdms.duckdb_store import DuckDBStore

    store = DuckDBStore(tmp_path / "gate.duckdb")
    gate = ControlGate(np.full(500, 6.0), LIMITS, store)
    small = gate.submit("op", "arrears", OPEN, [1], (), T0)
    held = gate.submit("op", "arrears", OPEN, np.arange(10, 40), (), T0)
    assert (small.verdict, held.verdict) == (Verdict.ACCEPTED, Verdict.QUARANTINED)
    kept = {i: json.loads(d) for i, d in store.read_control_records("request")}
    assert (
        kept[held.request_id]["verdict"] == "quarantined" and kept[held.request_id]["meters"] == 30
    )
    again = ControlGate(np.full(500, 6.0), LIMITS, store)
    kept = {i: json.loads(d) for i, d in store.read_control_records("request")}
    assert kept[held.request_id]["verdict"] == "rejected"
    assert kept[held.request_id]["why"] == "the system restarted"
    assert again.submit("op", "arrears", OPEN, [2], (), T0).request_id == held.request_id + 1
    store.close()
