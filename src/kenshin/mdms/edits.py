"""Manual edits (the E of VEE): a new version with source MANUAL and quality EDITED, and an audit
row naming who changed what, from which value, and why (SPEC S2, X4: nothing is overwritten)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kenshin.core.batches import readings_table
from kenshin.core.channels import Channel
from kenshin.core.quality import EstimationMethod, Quality, Source
from kenshin.core.schema import TIMESTAMP
from kenshin.core.timeslots import Resolution
from kenshin.errors import InvalidInput
from kenshin.mdms import versions
from kenshin.mdms.store import EditStore, ReadingQuery


@dataclass(frozen=True, slots=True)
class Edit:
    interval_end_us: int
    value: int


def edit_readings(
    store: EditStore,
    meter_key: int,
    channel: Channel,
    resolution: Resolution,
    edits: Sequence[Edit],
    *,
    reason: str,
    editor: str,
    now_us: int,
) -> pa.Table:
    """Store manual values for one meter's channel; returns the audit rows written."""
    if not reason or not reason.strip():
        raise InvalidInput("a manual edit needs a reason")
    if not editor or not editor.strip():
        raise InvalidInput("a manual edit needs the editor's name")
    if not edits:
        raise InvalidInput("no values to edit")
    step = resolution.microseconds
    ends = np.array([e.interval_end_us for e in edits], np.int64)
    values = np.array([e.value for e in edits], np.int64)
    if np.any(ends % step != 0):
        raise InvalidInput(f"interval ends must lie on the {int(resolution)}-minute grid")
    if len(np.unique(ends)) != len(ends):
        raise InvalidInput("each interval may be edited once per request")
    if np.any(values < np.iinfo(np.int32).min) or np.any(values > np.iinfo(np.int32).max):
        raise InvalidInput("edited values must fit a 32-bit register count")
    current = store.read(
        ReadingQuery(meter_key, channel, resolution, int(ends.min()) - step, int(ends.max()))
    )
    old = dict(
        zip(
            current.column("interval_end").cast(pa.int64()).to_pylist(),
            current.column("value").to_pylist(),
            strict=True,
        )
    )
    readings = readings_table(
        np.full(len(ends), meter_key),
        int(channel),
        int(resolution),
        ends,
        values,
        None,
        int(Quality.EDITED),
        int(Source.MANUAL),
        int(EstimationMethod.NONE),
        0,
        now_us,
    )
    audit = pa.Table.from_arrays(
        [
            pa.array(np.full(len(ends), meter_key, np.int32)),
            pa.array(np.full(len(ends), int(channel), np.uint8)),
            pa.array(np.full(len(ends), int(resolution), np.uint8)),
            pa.array(ends).cast(TIMESTAMP),
            pa.array([old.get(int(e)) for e in ends], pa.int32()),
            pa.array(values.astype(np.int32)),
            pa.array([reason.strip()] * len(ends)),
            pa.array([editor.strip()] * len(ends)),
            pa.array(np.full(len(ends), now_us, np.int64)).cast(TIMESTAMP),
        ],
        schema=versions.EDITS_SCHEMA,
    )
    store.record_edits(readings, audit)
    return audit
