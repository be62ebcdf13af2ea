"""Names for the MDMS's codes, vectorized: quality, source, estimation method and the VEE rules
a value failed, as reports and exports show them (one lookup table per code, no loop over
rows: an export names millions of values)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kenshin.core.events import EventCode
from kenshin.core.quality import EstimationMethod, Quality, Rule, Source


def code_names(enum: type[IntEnum]) -> pa.Array:
    """The label of each code 0 … max (a code no member has is shown as its number)."""
    size = max(int(m) for m in enum) + 1
    members = {int(m): m for m in enum}
    return pa.array(
        [getattr(members[i], "label") if i in members else str(i) for i in range(size)],  # noqa: B009
        pa.string(),
    )


QUALITY_NAMES = code_names(Quality)
SOURCE_NAMES = code_names(Source)
METHOD_NAMES = code_names(EstimationMethod)
EVENT_NAMES = code_names(EventCode)
_RULES = [r for r in Rule if r is not Rule.NONE]


def method_codes(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Estimation method codes with "none" (and missing) as null: no method to name."""
    codes = pc.fill_null(column, 0)
    return pc.if_else(pc.equal(codes, int(EstimationMethod.NONE)), None, codes)


def named(codes: pa.ChunkedArray | pa.Array, names: pa.Array) -> pa.Array:
    """Each code's name (null stays null), as a dictionary-encoded column."""
    indices = pc.cast(codes, pa.int8())
    if isinstance(indices, pa.ChunkedArray):
        indices = indices.combine_chunks()
    return pa.DictionaryArray.from_arrays(indices, names)


def rule_text(flags: npt.NDArray[np.int64]) -> pa.Array:
    """Space-separated rule names of each row's flags, null where none: one text per distinct
    combination (a day has a handful), dictionary-encoded."""
    flagged = np.flatnonzero(flags)
    distinct, inverse = np.unique(flags[flagged], return_inverse=True)
    index = np.zeros(len(flags), np.int16)
    index[flagged] = inverse
    dictionary = pa.array([" ".join(r.label for r in _RULES if int(f) & r) for f in distinct])
    return pa.DictionaryArray.from_arrays(
        pa.array(index, pa.int16(), mask=flags == 0), dictionary.cast(pa.string())
    )
