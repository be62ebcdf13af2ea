"""Which meter sends under which A-route device id: device id ↔ meter key, vectorized.

A frame names its meter by ``device_id`` (the A-route address); storage uses ``meter_key``. The
registry maps a whole batch of device ids at once with one ``searchsorted`` on a sorted array,
so a million meters cost 16 bytes each and a lookup costs O(log n) per frame in C.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.errors import InvalidSetting, UnknownMeter

UNKNOWN = -1


def _as_u64(device_ids: npt.ArrayLike, what: str) -> npt.NDArray[np.uint64]:
    arr = np.asarray(device_ids)
    if arr.dtype == np.uint64:
        return arr.reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidSetting(f"{what} must be integers, got {arr.dtype}")
    if arr.size and int(arr.min()) < 0:
        raise InvalidSetting(f"{what} must not be negative")
    return arr.astype(np.uint64).reshape(-1)


class MeterRegistry:
    """Device ids (u64) ↔ meter keys (int32) of every meter the head-end serves."""

    def __init__(
        self,
        device_ids: npt.NDArray[np.uint64] | npt.NDArray[np.int64],
        meter_keys: npt.NDArray[np.int32],
    ) -> None:
        dev = _as_u64(device_ids, "device ids")
        keys = np.asarray(meter_keys).reshape(-1)
        if len(dev) != len(keys):
            raise InvalidSetting(f"{len(dev)} device ids but {len(keys)} meter keys")
        if keys.size and (int(keys.min()) < 0 or int(keys.max()) > np.iinfo(np.int32).max):
            raise InvalidSetting("meter keys must be within 0 … 2**31 - 1")
        keys = keys.astype(np.int32)
        order = np.argsort(dev, kind="stable")
        self._dev = dev[order]
        self._key = keys[order]
        if len(dev) > 1 and bool((self._dev[1:] == self._dev[:-1]).any()):
            dup = int(self._dev[1:][self._dev[1:] == self._dev[:-1]][0])
            raise InvalidSetting(f"device id {dup} is registered twice")
        by_key = np.argsort(keys, kind="stable")
        self._keys_sorted = keys[by_key]
        if len(keys) > 1 and bool((self._keys_sorted[1:] == self._keys_sorted[:-1]).any()):
            raise InvalidSetting("a meter key is registered twice")
        self._dev_by_key = dev[by_key]

    @classmethod
    def from_meters_table(cls, table: pa.Table) -> MeterRegistry:
        """From a table with ``device_id`` and ``meter_key`` columns (``METERS_SCHEMA``)."""
        missing = {"device_id", "meter_key"} - set(table.column_names)
        if missing:
            raise InvalidSetting(f"meters table lacks column(s) {sorted(missing)}")
        dev = table.column("device_id").to_numpy()
        keys = table.column("meter_key").to_numpy()
        return cls(dev, keys)

    def __len__(self) -> int:
        return len(self._dev)

    @property
    def max_meter_key(self) -> int:
        return int(self._keys_sorted[-1]) if len(self._keys_sorted) else -1

    def lookup(self, device_ids: npt.ArrayLike) -> npt.NDArray[np.int32]:
        """Meter keys of ``device_ids``; −1 where the device id is not registered."""
        dev = np.asarray(device_ids).reshape(-1)
        if dev.dtype != np.uint64:
            if dev.size and not np.issubdtype(dev.dtype, np.integer):
                raise InvalidSetting(f"device ids must be integers, got {dev.dtype}")
            negative = dev < 0
            dev = dev.astype(np.uint64)
        else:
            negative = None
        out = np.full(len(dev), UNKNOWN, dtype=np.int32)
        if not len(self._dev) or not len(dev):
            return out
        pos = np.searchsorted(self._dev, dev)
        pos_c = np.minimum(pos, len(self._dev) - 1)
        hit = self._dev[pos_c] == dev
        if negative is not None:
            hit &= ~negative
        out[hit] = self._key[pos_c[hit]]
        return out

    def device_ids_of(self, meter_keys: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """Device ids of ``meter_keys``; raises :class:`UnknownMeter` for an unknown key."""
        keys = np.asarray(meter_keys).reshape(-1).astype(np.int64)
        if not len(keys):
            return np.empty(0, dtype=np.uint64)
        if not len(self._keys_sorted):
            raise UnknownMeter(f"meter key {int(keys[0])} is not registered")
        pos = np.minimum(np.searchsorted(self._keys_sorted, keys), len(self._keys_sorted) - 1)
        miss = self._keys_sorted[pos] != keys
        if bool(miss.any()):
            raise UnknownMeter(f"meter key {int(keys[miss][0])} is not registered")
        return self._dev_by_key[pos]
