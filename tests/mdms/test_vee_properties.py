"""VEE properties on random days: exact register sums (SPEC M5), shapes, labels, no exceptions."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.core.quality import EstimationMethod, Quality, Rule
from kenshin.core.timeslots import Resolution
from kenshin.mdms.estimate import HistoryStats
from kenshin.mdms.vee import VeeConfig, VeeInput, VeeResult, densify, run_vee

M = 10**8
ANCHORED = (EstimationMethod.NONE, EstimationMethod.LINEAR, EstimationMethod.LIKE_DAY_SCALED)


@st.composite
def days(draw: st.DrawFn) -> VeeInput:
    """A random window: true consumption, then losses, corruption, outages and noisy history."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, s = draw(st.integers(1, 4)), draw(st.integers(1, 14))
    p_lost, p_read_lost = draw(st.floats(0, 1)), draw(st.floats(0, 1))
    truth = rng.integers(0, 60, size=(n, s))
    registers = rng.integers(M - 500, M + 500, size=(n, 1)) + np.c_[np.zeros(n), truth.cumsum(1)]
    registers = registers.astype(np.int64) % M
    values = truth.copy()
    corrupt = rng.random((n, s)) < draw(st.floats(0, 0.3))
    values[corrupt] = rng.integers(-50, 2000, size=int(corrupt.sum()))
    with_stats = draw(st.booleans())
    stats = None
    if with_stats:
        stats = HistoryStats(
            recent_max=rng.integers(-1, 80, size=(n, s)),
            like_day=rng.uniform(0, 60, size=(n, s)) * (rng.random((n, 1)) < 0.8),
            like_days_used=rng.integers(0, 5, size=n),
            day_max=rng.integers(-1, 3000, size=n),
        )
    return VeeInput(
        values=values,
        present=rng.random((n, s)) >= p_lost,
        registers=registers,
        register_present=rng.random((n, s + 1)) >= p_read_lost,
        resolution=draw(st.sampled_from([Resolution.MIN30, Resolution.MIN15, Resolution.MIN5])),
        outage=rng.random((n, s)) < draw(st.floats(0, 0.3)),
        disconnected=rng.random((n, s)) < draw(st.floats(0, 0.1)),
        clock_offset_s=rng.normal(0, 60, size=n) if draw(st.booleans()) else None,
        stats=stats,
    )


def consecutive_reads(day: VeeInput) -> list[tuple[int, int, int]]:
    out = []
    for row in range(day.values.shape[0]):
        reads = np.flatnonzero(day.register_present[row])
        out += [(row, int(a), int(b)) for a, b in itertools.pairwise(reads)]
    return out


@settings(max_examples=300, deadline=None)
@given(days(), st.integers(0, 240))
def test_register_anchored_values_sum_exactly_to_the_register_difference(
    day: VeeInput, max_gap_minutes: int
) -> None:
    res = run_vee(day, VeeConfig(max_interpolation_minutes=max_gap_minutes))
    for row, a, b in consecutive_reads(day):
        q, m = res.quality[row, a:b], res.method[row, a:b]
        delta = int((day.registers[row, b] - day.registers[row, a]) % M)
        if (
            delta <= M // 2
            and np.isin(q, [Quality.VALID, Quality.ESTIMATED]).all()
            and np.isin(m, ANCHORED).all()
        ):
            assert int(res.value[row, a:b].sum()) % M == delta


@settings(max_examples=300, deadline=None)
@given(days())
def test_every_gap_between_known_reads_is_filled_and_sums_exactly(day: VeeInput) -> None:
    res = run_vee(day)
    assert day.outage is not None and day.disconnected is not None
    blocked = np.pad(day.outage | day.disconnected, ((0, 0), (1, 1)))  # one slot either side
    for row, a, b in consecutive_reads(day):
        delta = int((day.registers[row, b] - day.registers[row, a]) % M)
        if day.present[row, a:b].any() or blocked[row, a : b + 2].any() or delta > M // 2:
            continue  # received values, an outage in or next to the gap, a backward step
        assert (res.quality[row, a:b] == Quality.ESTIMATED).all()
        assert int(res.value[row, a:b].sum()) == delta


@settings(max_examples=200, deadline=None)
@given(days())
def test_shapes_labels_and_gap_list(day: VeeInput) -> None:
    res: VeeResult = run_vee(day)
    n, s = day.values.shape
    for array, dtype in (
        (res.value, np.int64),
        (res.quality, np.uint8),
        (res.method, np.uint8),
        (res.failed_rule, np.uint16),
    ):
        assert array.shape == (n, s)
        assert array.dtype == dtype
    assert set(np.unique(res.quality)) <= {
        Quality.VALID,
        Quality.ESTIMATED,
        Quality.SUSPECT,
        Quality.MISSING,
        Quality.OUTAGE,
        Quality.DISCONNECTED,
    }
    missing = res.quality == Quality.MISSING
    assert sorted(map(tuple, res.gaps.tolist())) == sorted(map(tuple, np.argwhere(missing)))
    assert (res.value[missing] == 0).all()
    assert ((res.method != 0) == (res.quality == Quality.ESTIMATED)).all()
    assert (res.failed_rule[missing] & Rule.MISSING).all()
    # received valid values are never changed
    valid = res.quality == Quality.VALID
    assert (res.value[valid] == day.values[valid]).all()
    assert sum(res.quality_counts.values()) == n * s
    assert res.rule_counts[Rule.MISSING] == int((res.failed_rule & Rule.MISSING != 0).sum())


@settings(max_examples=100, deadline=None)
@given(days(), st.integers(1, 3))
def test_blocks_of_meters_give_the_same_result(day: VeeInput, block: int) -> None:
    whole, blocked = run_vee(day), run_vee(day, block_meters=block)
    for name in ("value", "quality", "method", "failed_rule", "gaps"):
        assert np.array_equal(getattr(whole, name), getattr(blocked, name)), name
    assert whole.rule_counts == blocked.rule_counts
    assert whole.quality_counts == blocked.quality_counts


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5))
def test_densify_by_blocks_matches_a_reference(seed: int, block: int) -> None:
    rng = np.random.default_rng(seed)
    n_meters, n_slots, step = 3, 4, Resolution.MIN30.microseconds
    n_rows = int(rng.integers(0, 30))
    meter = rng.integers(-1, n_meters + 1, size=n_rows)
    end = rng.integers(-1, n_slots + 2, size=n_rows) * step
    end[rng.random(n_rows) < 0.1] += 60_000_000  # off the grid
    value = rng.integers(0, 3, size=n_rows)
    tx = rng.integers(0, 3, size=n_rows)
    got = densify(
        meter,
        end,
        value,
        tx,
        window_start_us=0,
        resolution=Resolution.MIN30,
        n_meters=n_meters,
        n_slots=n_slots,
        block_rows=block,
    )
    # reference, one row at a time: the latest tx wins, then the latest arrival
    rows: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for i in range(n_rows):
        slot = int(end[i]) // step - 1
        if end[i] % step == 0 and 0 <= slot < n_slots and 0 <= meter[i] < n_meters:
            rows.setdefault((int(meter[i]), slot), []).append((int(tx[i]), i, int(value[i])))
    assert got.received == len(rows)
    for cell, versions in rows.items():
        assert got.present[cell]
        assert got.values[cell] == max(versions)[2]
        flag = int(got.flags[cell]) & (Rule.DUPLICATE_EQUAL | Rule.DUPLICATE_CONFLICT)
        if len(versions) == 1:
            assert flag == 0
        elif len({v for _, _, v in versions}) == 1:
            assert flag == Rule.DUPLICATE_EQUAL
        else:
            assert flag == Rule.DUPLICATE_CONFLICT
