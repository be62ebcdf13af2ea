"""VEE rules and estimation on small hand-computed days (30-min slots unless said otherwise)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kenshin.core.quality import EstimationMethod, Quality, Rule
from kenshin.core.timeslots import Resolution
from kenshin.errors import InvalidInput
from kenshin.mdms.estimate import HistoryStats
from kenshin.mdms.vee import VeeConfig, VeeInput, VeeResult, run_vee

M = 10**8
V, E, S_, MISS = Quality.VALID, Quality.ESTIMATED, Quality.SUSPECT, Quality.MISSING
LIN, LIKE, SCALED = (
    EstimationMethod.LINEAR,
    EstimationMethod.LIKE_DAY,
    EstimationMethod.LIKE_DAY_SCALED,
)


def arr(*rows: list[Any], dtype: Any = np.int64) -> np.ndarray:
    return np.array(rows, dtype=dtype)


def one(
    values: list[int | None],
    registers: list[int | None],
    config: VeeConfig | None = None,
    **extra: Any,
) -> VeeResult:
    """One meter's day: ``None`` is not received."""
    return run_vee(
        VeeInput(
            values=arr([0 if v is None else v for v in values]),
            present=arr([v is not None for v in values], dtype=bool),
            registers=arr([0 if r is None else r for r in registers]),
            register_present=arr([r is not None for r in registers], dtype=bool),
            **extra,
        ),
        config,
    )


def stats(like_day: list[float], recent_max: int = -1, day_max: int = -1) -> HistoryStats:
    s = len(like_day)
    return HistoryStats(
        recent_max=np.full((1, s), recent_max, dtype=np.int64),
        like_day=arr(like_day, dtype=np.float64),
        like_days_used=np.array([4]),
        day_max=np.array([day_max]),
    )


def test_consistent_day_is_valid() -> None:
    res = one([10, 20, 5, 0], [100, 110, 130, 135, 135])
    assert res.quality.tolist() == [[V] * 4]
    assert res.failed_rule.tolist() == [[0] * 4]
    assert res.value.tolist() == [[10, 20, 5, 0]]
    assert res.gaps.shape == (0, 2)
    assert res.quality_counts[V] == 4


def test_rollover_is_a_small_step_not_a_negative_one() -> None:
    # SPEC M5: 99,999,985 → 5 is +20 counts
    res = one([5, 20, 5], [99_999_980, 99_999_985, 5, 10])
    assert res.quality.tolist() == [[V, V, V]]
    assert res.failed_rule.tolist() == [[0, Rule.ROLLOVER, 0]]
    assert res.rule_counts[Rule.ROLLOVER] == 1


def test_rollover_inside_a_gap_is_interpolated_modulo() -> None:
    res = one([5, None, None, 5], [99_999_990, 99_999_995, None, 3, 8])
    assert res.value.tolist() == [[5, 4, 4, 5]]  # 8 counts across the wrap, split 4 + 4
    assert res.method.tolist() == [[0, LIN, LIN, 0]]


def test_sum_check_mismatch_is_suspect_and_kept() -> None:
    res = one([10, 10, 10, 10], [0, None, None, None, 45])  # Σ 40 ≠ 45
    assert res.quality.tolist() == [[S_] * 4]
    assert res.value.tolist() == [[10, 10, 10, 10]]
    assert all(f & Rule.SUM_CHECK for f in res.failed_rule[0])


def test_negative_fails_and_is_estimated_from_registers() -> None:
    res = one([10, -5, 10], [0, 10, 20, 30])
    assert res.quality.tolist() == [[V, E, V]]
    assert res.value.tolist() == [[10, 10, 10]]
    assert res.failed_rule[0, 1] & Rule.NEGATIVE
    assert res.method[0, 1] == LIN


def test_negative_allowed_when_not_forward_only() -> None:
    res = one([10, -5], [0, 10, 5], VeeConfig(forward_only=False))
    assert not res.failed_rule[0, 1] & Rule.NEGATIVE


def test_failed_value_without_estimate_stays_suspect_not_a_gap() -> None:
    res = one([10, -5, 10], [None, None, None, None])
    assert res.quality.tolist() == [[V, S_, V]]
    assert res.value[0, 1] == -5
    assert res.gaps.shape == (0, 2)


def test_linear_interpolation_splits_the_difference_exactly() -> None:
    res = one([10, None, None, None, 10], [0, 10, None, None, 20, 30])
    assert res.value.tolist() == [[10, 3, 3, 4, 10]]
    assert res.quality.tolist() == [[V, E, E, E, V]]
    assert res.method.tolist() == [[0, LIN, LIN, LIN, 0]]
    assert res.failed_rule[0, 1] == Rule.MISSING


def test_read_lost_with_its_interval_is_carried_from_the_next_read() -> None:
    # slot 1 lost with the read at its end; slot 2's value carries the read at 3 back: 27 − 7
    res = one([10, None, 7], [0, 10, None, 27])
    assert res.value.tolist() == [[10, 10, 7]]
    assert res.method[0, 1] == LIN


def test_long_gap_uses_like_days_scaled_to_the_registers() -> None:
    like = [9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 9.0]
    res = one(
        [9, None, None, None, None, None, None, 9],
        [0, 9, None, None, None, None, None, 39, 48],
        stats=stats(like),
    )
    # weights 1,2,3,4,5,5 (Σ 20) scaled to 30: cumulative ⌊30·c/20⌋ = 1,4,9,15,22,30
    assert res.value[0, 1:7].tolist() == [1, 3, 5, 6, 7, 8]
    assert res.value[0, 1:7].sum() == 30
    assert res.method[0, 1:7].tolist() == [SCALED] * 6


def test_long_gap_with_one_end_unknown_uses_plain_like_days() -> None:
    like = [9.0, 1.4, 2.6, 3.0, 4.0, 5.0, 5.0, 9.0]
    res = one([9, None, None, None, None, None, None, None], [0, 9] + [None] * 7, stats=stats(like))
    assert res.value[0, 1:].tolist() == [1, 3, 3, 4, 5, 5, 9]
    assert res.method[0, 1:].tolist() == [LIKE] * 7
    assert res.gaps.shape == (0, 2)


def test_short_gap_with_one_end_unknown_uses_like_days() -> None:
    res = one([9, None, 9], [0, 9, None, None], stats=stats([9.0, 2.5, 9.0]))
    assert res.value.tolist() == [[9, 2, 9]]  # rounded half to even
    assert res.method[0, 1] == LIKE


def test_long_gap_without_like_days_is_spread_flat() -> None:
    res = one([1] + [None] * 6 + [1], [0, 1] + [None] * 5 + [13, 14])
    assert res.value[0, 1:7].tolist() == [2] * 6
    assert res.method[0, 1:7].tolist() == [LIN] * 6


def test_like_day_profile_of_zeros_is_spread_flat() -> None:
    res = one([1] + [None] * 6 + [1], [0, 1] + [None] * 5 + [7, 8], stats=stats([0.0] * 8))
    assert res.value[0, 1:7].tolist() == [1] * 6
    assert res.method[0, 1:7].tolist() == [LIN] * 6


def test_unfillable_slots_are_missing_and_on_the_reread_list() -> None:
    res = one([5, None, None, 5], [None] * 5)
    assert res.quality.tolist() == [[V, MISS, MISS, V]]
    assert res.value.tolist() == [[5, 0, 0, 5]]
    assert res.gaps.tolist() == [[0, 1], [0, 2]]
    assert res.failed_rule[0, 1] == Rule.MISSING
    assert res.quality_counts[MISS] == 2


def test_outage_is_labelled_not_missing_and_never_an_endpoint() -> None:
    outage = arr([False, True, True, False, False], dtype=bool)
    res = one([5, None, 0, None, 5], [0, 5, 5, 5, 10, 15], outage=outage)
    assert res.quality.tolist() == [[V, Quality.OUTAGE, Quality.OUTAGE, MISS, V]]
    assert res.value[0, :3].tolist() == [5, 0, 0]
    # slot 3 has reads at both of its ends, but its left neighbour is in the outage
    assert res.gaps.tolist() == [[0, 3]]
    assert res.failed_rule[0, 1] == Rule.OUTAGE
    assert res.rule_counts[Rule.MISSING] == 1


def test_disconnected_slots_are_labelled_disconnected() -> None:
    cut = arr([False, True, True], dtype=bool)
    res = one([5, None, None], [0, 5, None, None], disconnected=cut)
    assert res.quality.tolist() == [[V, Quality.DISCONNECTED, Quality.DISCONNECTED]]
    assert res.value.tolist() == [[5, 0, 0]]
    assert res.gaps.shape == (0, 2)
    assert res.failed_rule[0, 2] == Rule.DISCONNECT


def test_spike_is_estimated_from_the_registers() -> None:
    # recent max 30 per slot: limit max(5 × 30, 100) = 150; 400 is a spike, the reads say 40
    res = one([30, 400, 30], [0, 30, 70, 100], stats=stats([30.0] * 3, recent_max=30))
    assert res.failed_rule[0, 1] & Rule.SPIKE
    assert res.value.tolist() == [[30, 40, 30]]
    assert res.quality[0, 1] == E


def test_spike_without_registers_uses_like_days() -> None:
    res = one([30, 400, 30], [None] * 4, stats=stats([30.0] * 3, recent_max=30))
    assert res.value.tolist() == [[30, 30, 30]]
    assert res.method[0, 1] == LIKE


def test_spike_floor_keeps_small_histories_from_flagging_everything() -> None:
    res = one([1, 99, 1], [None] * 4, stats=stats([1.0] * 3, recent_max=1))
    assert res.quality.tolist() == [[V, V, V]]
    res = one([1, 101, 1], [None] * 4, stats=stats([1.0] * 3, recent_max=1))
    assert res.failed_rule[0, 1] & Rule.SPIKE


def test_no_history_means_no_spike_check() -> None:
    res = one([1, 10_000, 1], [None] * 4)
    assert res.quality.tolist() == [[V, V, V]]


def test_high_day_total_is_suspect() -> None:
    cfg = VeeConfig(high_low_factor=3.0, high_low_floor=0)
    res = one([100, 100, 101], [None] * 4, cfg, stats=stats([1.0] * 3, day_max=100))
    assert res.quality.tolist() == [[S_] * 3]
    assert res.failed_rule[0, 0] == Rule.HIGH_LOW
    res = one([100, 100, 100], [None] * 4, cfg, stats=stats([1.0] * 3, day_max=100))
    assert res.quality.tolist() == [[V] * 3]


def test_zero_run_while_connected_is_suspect_not_replaced() -> None:
    cfg = VeeConfig(zero_run_minutes=120)  # 4 slots of 30 min
    res = one([0, 0, 0, 0, 5, 0, 0, 0], [None] * 9, cfg)
    assert res.quality.tolist() == [[S_] * 4 + [V] * 4]
    assert res.value[0].tolist() == [0, 0, 0, 0, 5, 0, 0, 0]
    assert res.failed_rule[0, 0] == Rule.ZERO_RUN
    outage = arr([True, False, False, False, False, False, False, False], dtype=bool)
    res = one([0, 0, 0, 0, 5, 0, 0, 0], [None] * 9, cfg, outage=outage)
    assert not (res.failed_rule & Rule.ZERO_RUN).any()


def test_clock_offset_beyond_tolerance_is_suspect() -> None:
    res = run_vee(
        VeeInput(
            values=np.ones((2, 2), dtype=np.int64),
            present=np.ones((2, 2), dtype=bool),
            registers=np.zeros((2, 3), dtype=np.int64),
            register_present=np.zeros((2, 3), dtype=bool),
            clock_offset_s=np.array([-60.0, 61.0]),
        )
    )
    assert res.quality.tolist() == [[V, V], [S_, S_]]
    assert res.failed_rule[1, 0] == Rule.TIME_TOLERANCE
    per_slot = one([1, 1], [None] * 3, clock_offset_s=arr([0.0, -90.0], dtype=np.float64))
    assert per_slot.quality.tolist() == [[V, S_]]


def test_interpolation_limit_follows_the_resolution() -> None:
    # 2 h is 8 slots of 15 min: an 8-slot gap interpolates, a 9-slot one scales like days
    for gap, method in ((8, LIN), (9, SCALED)):
        n_slots = gap + 2
        values: list[int | None] = [1] + [None] * gap + [1]
        registers: list[int | None] = [0, 1] + [None] * (gap - 1) + [1 + gap, 2 + gap]
        res = one(values, registers, resolution=Resolution.MIN15, stats=stats([1.0] * n_slots))
        assert res.method[0, 1 : 1 + gap].tolist() == [method] * gap
        assert res.value[0, 1 : 1 + gap].sum() == gap


def test_several_meters_at_once() -> None:
    res = run_vee(
        VeeInput(
            values=arr([10, 0, 10], [0, 0, 7]),
            present=arr([True, False, True], [False, False, True], dtype=bool),
            registers=arr([0, 10, 20, 30], [0, 0, 0, 0]),
            register_present=arr([True, True, False, True], [False] * 4, dtype=bool),
        )
    )
    assert res.value.tolist() == [[10, 10, 10], [0, 0, 7]]
    assert res.gaps.tolist() == [[1, 0], [1, 1]]


def test_wrong_shapes_are_refused() -> None:
    with pytest.raises(InvalidInput, match="registers"):
        run_vee(
            VeeInput(
                values=np.zeros((1, 3), dtype=np.int64),
                present=np.ones((1, 3), dtype=bool),
                registers=np.zeros((1, 3), dtype=np.int64),
                register_present=np.ones((1, 3), dtype=bool),
            )
        )


def test_result_dtypes() -> None:
    res = one([1, None], [0, 1, 2])
    assert res.value.dtype == np.int64
    assert res.quality.dtype == np.uint8
    assert res.method.dtype == np.uint8
    assert res.failed_rule.dtype == np.uint16
    assert res.gaps.dtype == np.int64


def test_several_gaps_between_two_reads_share_what_the_reads_leave() -> None:
    # two lost values between the same two reads: neither gap has a read at both ends
    res = one([5, None, 7, None, 5], [0, None, None, None, None, 26])
    assert res.quality.tolist() == [[V, E, V, E, V]]
    assert res.method[0, [1, 3]].tolist() == [EstimationMethod.LINEAR] * 2
    assert res.value[0, [1, 3]].tolist() == [4, 5]  # 26 − 17 = 9, split evenly in counts
    assert int(res.value.sum()) == 26
    assert res.gaps.shape == (0, 2)


def test_segment_fill_refuses_when_the_known_values_exceed_the_reads() -> None:
    res = one([20, None, 20, None, 5], [0, None, None, None, None, 26])
    assert res.gaps.tolist() == [[0, 1], [0, 3]]
