"""VEE of a day that arrives at once (validate_day_batch): the received rows are kept and
labelled, estimates come as new versions, and reads then show the estimate as current."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from kenshin.core.batches import readings_table
from kenshin.core.channels import Channel
from kenshin.core.quality import EstimationMethod, Quality, Rule, Source
from kenshin.core.schema import REGISTER_READS_SCHEMA, TIMESTAMP
from kenshin.core.timeslots import Resolution
from kenshin.mdms.store import ReadingQuery
from kenshin.mdms.sweep import day_window, validate_day_batch

DAY = dt.date(2026, 4, 8)
US30 = Resolution.MIN30.microseconds


def test_a_day_batch_is_labelled_and_estimated(store) -> None:
    start, end = day_window(DAY)
    keys = np.array([0, 1], np.int64)
    meters, slots, values = [], [], []
    for meter in (0, 1):
        for slot in range(1, 49):
            if meter == 0 and slot == 10:
                continue  # lost
            meters.append(meter)
            slots.append(slot)
            values.append(-30 if (meter == 1 and slot == 5) else 100)
    ends = start + np.array(slots) * US30
    received_at = end + 600_000_000
    readings = readings_table(
        np.array(meters),
        1,
        30,
        ends,
        np.array(values),
        None,
        int(Quality.RAW),
        1,
        0,
        0,
        received_at,
    )
    boundaries = np.arange(49)
    registers = pa.Table.from_arrays(
        [
            pa.array(np.repeat(keys, 49).astype(np.int32)),
            pa.array(np.full(98, 1, np.uint8)),
            pa.array(np.tile(start + boundaries * US30, 2)).cast(TIMESTAMP),
            pa.array(np.tile(1000 + boundaries * 100, 2).astype(np.int32)),
            pa.array(np.full(98, int(Source.METER_PUSH), np.uint8)),
            pa.array(np.full(98, received_at)).cast(TIMESTAMP),
        ],
        schema=REGISTER_READS_SCHEMA,
    )
    batch = validate_day_batch(readings, registers, keys, DAY, now_us=received_at + 1)
    assert batch.received == 95
    # every received row is kept, plus one estimate for the lost slot and one for the negative
    assert batch.readings.num_rows == 95 + 2
    labelled = batch.readings.slice(0, 95).to_pylist()
    negative = next(r for r in labelled if r["value"] == -30)
    assert negative["quality"] == Quality.SUSPECT
    assert negative["failed_rule"] & Rule.NEGATIVE
    assert {r["quality"] for r in labelled if r["value"] == 100} == {Quality.VALID}
    store.append(batch.readings, registers)
    for meter, slot in ((0, 10), (1, 5)):
        query = ReadingQuery(meter, Channel.ACTIVE_FORWARD, Resolution.MIN30, start, end)
        row = store.read(query).to_pylist()[slot - 1]
        assert (row["value"], row["quality"], row["method"]) == (
            100,
            Quality.ESTIMATED,
            EstimationMethod.LINEAR,
        )
        assert row["version"] == (1 if meter == 0 else 2)
