import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenshin.core.registers import RegisterSpec, difference


def test_rollover_is_a_small_positive_step():
    # SPEC M5: 99,999,990 → 15 is 25 counts, not -99,999,975
    assert int(difference(np.array([99_999_990]), np.array([15]))[0]) == 25
    spec = RegisterSpec(unit_exponent=-2)
    assert spec.modulus == 100_000_000
    assert int(spec.difference(99_999_999, 0)) == 1


def test_energy_uses_unit_and_coefficient():
    lv = RegisterSpec(unit_exponent=-2)
    assert lv.to_kwh(123)[()] == pytest.approx(1.23)
    hv = RegisterSpec(unit_exponent=-2, coefficient=10)
    assert hv.to_kwh(123)[()] == pytest.approx(12.3)
    assert hv.wh_per_count == pytest.approx(100.0)


def test_wrap_shows_the_register_as_the_meter_does():
    spec = RegisterSpec()
    assert spec.wrap(np.array([100_000_005]))[0] == 5


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="coefficient"):
        RegisterSpec(coefficient=0)
    with pytest.raises(ValueError, match="unit exponent"):
        RegisterSpec(unit_exponent=-7)


@given(
    st.integers(min_value=0, max_value=10**8 - 1),
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=50),
)
def test_sum_of_differences_equals_total_advance(start, steps):
    # reads of a register that advances by `steps` and wraps at 10**8
    cumulative = start + np.cumsum([0, *steps])
    reads = cumulative % 10**8
    diffs = difference(reads[:-1], reads[1:])
    assert diffs.tolist() == steps
    assert int(diffs.sum()) == int(cumulative[-1] - cumulative[0])
