"""roster_index: the row of each meter key in a sorted roster, by whichever path fits the keys
(a block of consecutive keys, a lookup table, a search) — all equal to a plain search."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.mdms.cells import roster_index


def _oracle(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = np.searchsorted(keys, wanted)
    known = index < len(keys)
    known[known] = keys[index[known]] == wanted[known]
    return index, known


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["block", "dense", "sparse"]),
    st.integers(0, 1_000),
    st.integers(1, 60),
    st.lists(st.integers(-5, 3_000), max_size=80),
    st.randoms(use_true_random=False),
)
def test_every_path_finds_the_rows_a_search_finds(kind, first, n, wanted, rnd) -> None:
    if kind == "block":
        keys = np.arange(first, first + n, dtype=np.int64)
    else:
        spread = 3 if kind == "dense" else 100
        keys = np.unique(np.array([first + rnd.randrange(n * spread) for _ in range(n)]))
    wanted_a = np.array(wanted + [int(k) for k in keys[:3]], dtype=np.int64)
    rows, known = roster_index(keys, wanted_a)
    index, oracle_known = _oracle(keys, wanted_a)
    np.testing.assert_array_equal(known, oracle_known)
    np.testing.assert_array_equal(rows[known], index[oracle_known])
    assert known[-min(3, len(keys)) :].all()  # the roster's own keys are found


def test_an_empty_roster_knows_no_meter() -> None:
    rows, known = roster_index(np.zeros(0, np.int64), np.array([0, 5]))
    assert not known.any() and len(rows) == 2
