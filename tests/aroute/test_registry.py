"""The meter registry: device id → meter key, vectorized."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from kenshin.aroute.registry import MeterRegistry
from kenshin.core.schema import METERS_SCHEMA
from kenshin.errors import InvalidSetting, UnknownMeter
from tests.aroute.codec_support import (
    DEVICES,
    METER_KEYS,
    UNREGISTERED,
)


def test_registry_lookup_is_vectorized_with_minus_one_for_unknown() -> None:
    registry = MeterRegistry(DEVICES, METER_KEYS)
    assert len(registry) == 5
    query = np.array([DEVICES[3], UNREGISTERED, DEVICES[0], 0], dtype=np.uint64)
    assert registry.lookup(query).tolist() == [13, -1, 10, -1]
    assert registry.lookup(np.array([-5, int(DEVICES[1])], dtype=np.int64)).tolist() == [-1, 11]
    assert registry.lookup(np.empty(0, np.uint64)).tolist() == []
    assert registry.device_ids_of(np.array([14, 10])).tolist() == [int(DEVICES[4]), int(DEVICES[0])]
    with pytest.raises(UnknownMeter):
        registry.device_ids_of(np.array([99]))
    assert (
        MeterRegistry(np.empty(0, np.uint64), np.empty(0, np.int32)).lookup(DEVICES).tolist()
        == [-1] * 5
    )


def test_registry_from_the_meters_table() -> None:
    columns = {
        name: pa.nulls(3, type=METERS_SCHEMA.field(name).type) for name in METERS_SCHEMA.names
    }
    columns["meter_key"] = pa.array([0, 1, 2], pa.int32())
    columns["device_id"] = pa.array([30, 10, 20], pa.int64())
    table = pa.table(columns, schema=METERS_SCHEMA)
    registry = MeterRegistry.from_meters_table(table)
    assert registry.lookup(np.array([10, 20, 30, 40], np.uint64)).tolist() == [1, 2, 0, -1]


def test_registry_refuses_duplicates_and_mismatches() -> None:
    with pytest.raises(InvalidSetting):
        MeterRegistry(np.array([1, 1], np.uint64), np.array([0, 1], np.int32))
    with pytest.raises(InvalidSetting):
        MeterRegistry(np.array([1, 2], np.uint64), np.array([0, 0], np.int32))
    with pytest.raises(InvalidSetting):
        MeterRegistry(np.array([1, 2], np.uint64), np.array([0], np.int32))
    with pytest.raises(InvalidSetting):
        MeterRegistry(np.array([-1, 2], np.int64), np.array([0, 1], np.int32))
    with pytest.raises(InvalidSetting):
        MeterRegistry.from_meters_table(pa.table({"meter_key": pa.array([0], pa.int32())}))
