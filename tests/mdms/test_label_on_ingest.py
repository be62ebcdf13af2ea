"""The labels a reading gets on its way into the store, against a row-by-row oracle."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.core.batches import readings_table
from kenshin.core.channels import Channel
from kenshin.core.quality import Quality, Rule, Source
from kenshin.mdms.sweep import label_on_ingest

CHANNELS = [int(c) for c in Channel]
QUALITIES = [int(Quality.RAW), int(Quality.VALID), int(Quality.ESTIMATED), int(Quality.SUSPECT)]
ENERGY = {int(Channel.ACTIVE_FORWARD), int(Channel.ACTIVE_REVERSE)}

row = st.tuples(
    st.sampled_from(CHANNELS),
    st.one_of(st.none(), st.integers(-5, 5)),  # NULL, negative, zero, positive
    st.sampled_from(QUALITIES),
    st.sampled_from([0, int(Rule.NEGATIVE), 1 << 3]),
)


def oracle(channel: int, value: int | None, quality: int, rule: int) -> tuple[int, int]:
    """SPEC V-rules that need one row only: RAW becomes VALID, or SUSPECT with NEGATIVE when a
    forward-only energy channel holds a negative value; other labels are kept."""
    if quality != Quality.RAW:
        return quality, rule
    if channel in ENERGY and value is not None and value < 0:
        return int(Quality.SUSPECT), rule | int(Rule.NEGATIVE)
    return int(Quality.VALID), rule


@settings(max_examples=200, deadline=None)
@given(st.lists(row, min_size=1, max_size=40))
def test_labels_match_the_row_by_row_rule(rows: list[tuple[int, int | None, int, int]]) -> None:
    n = len(rows)
    table = readings_table(
        np.arange(n),
        np.array([r[0] for r in rows]),
        1,
        np.arange(n) * 1_800_000_000,
        np.array([r[1] or 0 for r in rows]),
        np.array([r[1] is not None for r in rows]),
        np.array([r[2] for r in rows]),
        int(Source.METER_PUSH),
        0,
        np.array([r[3] for r in rows]),
        0,
    )
    labelled = label_on_ingest(table)
    assert labelled.schema == table.schema
    quality, rule = labelled["quality"].to_pylist(), labelled["failed_rule"].to_pylist()
    got = list(zip(quality, rule, strict=True))
    assert got == [oracle(*r) for r in rows]
    # everything but the two labels is as it came
    for name in table.column_names:
        if name not in ("quality", "failed_rule"):
            assert labelled[name].equals(table[name]), name


def test_an_empty_batch_is_returned_as_it_is() -> None:
    empty = readings_table([], 1, 1, [], [], None, 0, 0, 0, 0, 0)
    assert label_on_ingest(empty).num_rows == 0
