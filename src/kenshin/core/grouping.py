"""Small vectorized helpers over group labels (no loop over elements)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def rank_within(groups: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Each element's place among the earlier elements of its group (0, 1, 2 …): one stable
    sort."""
    order = np.argsort(groups, kind="stable")
    ordered = groups[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    place = np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    rank = np.empty(len(groups), np.int64)
    rank[order] = place
    return rank
