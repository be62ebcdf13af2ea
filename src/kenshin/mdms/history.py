"""A channel's own history for the VEE sweep (spike maxima, like-day means), kept day by day.

Aggregating four weeks of every meter's values for each daily sweep would read ~1.3 billion rows
at 1 M meters. Instead each swept day leaves a *day plane*: the current value of every cell and
whether the meter-day is usable. The statistics are folded from the planes of the look-back.

A plane is made again from the store when something was written to its day after it was made
(late data, a re-read, a manual edit): the store says which days of the look-back received rows
since the last sweep (``written_days``), which reads only recent rows. Planes that are missing,
e.g. on the first sweep after a start, are read from the store (cold start).

A meter-day is *usable* when the current version of every slot holds a value that is valid or
edited: days that were estimated, had an outage or still have a gap count neither as like days
nor for the maxima (vee.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.core.channels import Channel
from kenshin.core.quality import Quality
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.mdms import versions
from kenshin.mdms.cells import dense_cells
from kenshin.mdms.daytypes import day_class
from kenshin.mdms.estimate import HistoryStats
from kenshin.mdms.store import SweepSource

log = logging.getLogger(__name__)

_DAY_US = 86_400_000_000
# rows committed a little before the last check may not have been visible to it (another
# writer's transaction in flight): look that far further back
_CHECK_MARGIN_US = 600_000_000
# cold start: read at most about this many rows per query
_ROWS_PER_READ = 8_000_000

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _day_start(day: dt.date) -> int:
    return to_epoch_us(dt.datetime.combine(day, dt.time(), tzinfo=JST))


def _smallest_int(lo: int, hi: int) -> type[np.signedinteger[Any]]:
    for kind in (np.int16, np.int32):
        info = np.iinfo(kind)
        if info.min <= lo and hi <= info.max:
            return kind
    return np.int64


@dataclass(frozen=True, slots=True)
class DayPlane:
    """One day of one channel and resolution, for every meter of a roster.

    ``values`` is -1 for meters whose day is not usable, so folding maxima needs no mask; it is
    held in the smallest integer type that fits (a residential 30-min day fits in int16).
    """

    keys: Int64Array  # the sorted roster the rows follow
    values: npt.NDArray[np.signedinteger[Any]]  # [N, S]
    usable: BoolArray  # [N]
    totals: Int64Array  # [N] the day's total; -1 where not usable
    built_us: int  # what was written up to this instant is in the plane

    @classmethod
    def of(
        cls,
        keys: Int64Array,
        values: npt.NDArray[np.integer[Any]],
        present: BoolArray,
        quality: npt.NDArray[np.integer[Any]],
        built_us: int,
    ) -> DayPlane:
        """A plane from the current state of every cell ``[N, S]``."""
        good = present & ((quality == Quality.VALID) | (quality == Quality.EDITED))
        usable = good.all(axis=1)
        kept = np.where(usable[:, None], values, -1)
        totals = np.where(usable, kept.sum(axis=1, dtype=np.int64), -1)
        lo, hi = (int(kept.min()), int(kept.max())) if kept.size else (0, 0)
        return cls(keys, kept.astype(_smallest_int(lo, hi)), usable, totals, built_us)

    @classmethod
    def empty(cls, keys: Int64Array, slots: int, built_us: int) -> DayPlane:
        """A day with no rows at all (before the fleet began, or lost whole): no meter usable,
        held as broadcast views, so weeks of them cost no memory and folding skips them."""
        n = len(keys)
        return cls(
            keys,
            np.broadcast_to(np.int8(-1), (n, slots)),
            np.broadcast_to(np.False_, (n,)),
            np.broadcast_to(np.int64(-1), (n,)),
            built_us,
        )

    @property
    def any_usable(self) -> bool:
        return bool(self.usable.any())

    def rows(self, part: slice) -> DayPlane:
        """The plane of a block of the roster (views, no copy)."""
        return DayPlane(
            self.keys[part], self.values[part], self.usable[part], self.totals[part], self.built_us
        )

    @classmethod
    def concat(cls, parts: list[DayPlane]) -> DayPlane:
        """One plane of consecutive blocks of a roster (the widest value type of the parts)."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.keys for p in parts]),
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.usable for p in parts]),
            np.concatenate([p.totals for p in parts]),
            min(p.built_us for p in parts),
        )


def fold(
    planes: list[DayPlane], classes: npt.NDArray[np.integer[Any]], target: int, like_count: int
) -> HistoryStats:
    """Statistics of the planes (oldest first; ``classes`` their day classes) for a day of
    class ``target``: per-slot maxima and the largest total over usable days, and the mean of
    the ``like_count`` most recent usable days of the same class.

    Equal to :func:`kenshin.mdms.estimate.history_stats` of the same days where values are not
    negative; a maximum below zero reads as -1 (no usable history), which the rules treat alike.
    """
    n, s = planes[0].values.shape
    recent_max = np.full((n, s), -1, np.int64)
    day_max = np.full(n, -1, np.int64)
    planes_with_data = [p for p in planes if p.any_usable]  # empty days change nothing
    for plane in planes_with_data:
        np.maximum(recent_max, plane.values, out=recent_max)
        np.maximum(day_max, plane.totals, out=day_max)
    like_sum = np.zeros((n, s), np.int64)
    used = np.zeros(n, np.int64)
    for plane, cls in zip(reversed(planes), reversed(list(classes)), strict=True):
        if cls != target:
            continue
        take = plane.usable & (used < like_count)
        if take.all():
            like_sum += plane.values
        elif take.any():
            like_sum[take] += plane.values[take]
        else:
            continue
        used += take
        if (used >= like_count).all():
            break
    like_day = like_sum / np.maximum(used, 1)[:, None]
    return HistoryStats(recent_max, like_day, used, day_max)


class HistoryCache:
    """Day planes of the recent past, per channel and resolution, kept between daily sweeps.

    One cache serves one store. Without it (``run_sweep(history=None)``) each sweep reads its
    look-back from the store: the same statistics, at the cost of reading weeks of rows.
    """

    def __init__(self) -> None:
        self._planes: dict[tuple[int, int, dt.date], DayPlane] = {}
        self._checked: dict[tuple[int, int], int] = {}
        self.planes_read = 0  # made from the store (cold start or after a late write)
        self._counting = threading.Lock()  # passes of one day's sweep run side by side

    def __len__(self) -> int:
        return len(self._planes)

    def days(self, channel: Channel, resolution: Resolution) -> list[dt.date]:
        held = list(self._planes)  # one copy: another pass may add its own planes meanwhile
        return sorted(d for c, r, d in held if (c, r) == (int(channel), int(resolution)))

    def put(self, channel: Channel, resolution: Resolution, day: dt.date, plane: DayPlane) -> None:
        self._planes[(int(channel), int(resolution), day)] = plane

    def stats(
        self,
        store: SweepSource,
        keys: Int64Array,
        day: dt.date,
        channel: Channel,
        resolution: Resolution,
        *,
        lookback_days: int,
        like_count: int,
        now_us: int,
        rows: slice | None = None,
    ) -> HistoryStats:
        """History statistics for sweeping ``day``: planes of the ``lookback_days`` before it,
        brought up to date with the store first; of the block ``rows`` of the roster ``keys``
        when given (a sweep in blocks: the planes stay whole)."""
        n, s = len(keys), resolution.slots_per_day
        if lookback_days <= 0 or n == 0:
            return HistoryStats.empty(len(keys[rows]) if rows is not None else n, s)
        days = [day - dt.timedelta(days=i) for i in range(lookback_days, 0, -1)]
        ch, res = int(channel), int(resolution)
        self._evict(ch, res, days[0])
        self._forget_written(store, channel, resolution, days, now_us)
        missing = [
            d
            for d in days
            if (plane := self._planes.get((ch, res, d))) is None
            or not (plane.keys is keys or np.array_equal(plane.keys, keys))
        ]
        if missing:
            self._read(store, keys, channel, resolution, missing, now_us)
        planes = [self._planes[(ch, res, d)] for d in days]
        if rows is not None:
            planes = [plane.rows(rows) for plane in planes]
        return fold(planes, day_class(days), int(day_class([day])[0]), like_count)

    def _evict(self, channel: int, resolution: int, first: dt.date) -> None:
        held = list(self._planes)  # passes of other channels and resolutions run alongside
        for key in [k for k in held if k[:2] == (channel, resolution) and k[2] < first]:
            del self._planes[key]

    def _forget_written(
        self,
        store: SweepSource,
        channel: Channel,
        resolution: Resolution,
        days: list[dt.date],
        now_us: int,
    ) -> None:
        """Drop the planes of days that received rows after the plane was made."""
        ch, res = int(channel), int(resolution)
        held = [d for d in days if (ch, res, d) in self._planes]
        since = self._checked.get((ch, res))
        self._checked[(ch, res)] = now_us
        if not held:
            return
        if since is None:  # planes put before any check: trust nothing older than the oldest
            since = min(self._planes[(ch, res, d)].built_us for d in held)
        start = _day_start(days[0])
        written = store.written_days(
            channel, resolution, start, _day_start(days[-1]) + _DAY_US, since - _CHECK_MARGIN_US
        )
        for offset, last_tx in written.items():
            d = days[0] + dt.timedelta(days=int(offset))
            plane = self._planes.get((ch, res, d))
            if plane is not None and last_tx > plane.built_us:
                log.info("history: %s was written after its plane was made; reading it again", d)
                del self._planes[(ch, res, d)]

    def _read(
        self,
        store: SweepSource,
        keys: Int64Array,
        channel: Channel,
        resolution: Resolution,
        days: list[dt.date],
        now_us: int,
    ) -> None:
        """Make planes of ``days`` from the store's current versions, a few days per query."""
        n, s = len(keys), resolution.slots_per_day
        per_read = max(1, _ROWS_PER_READ // max(1, n * s))
        runs: list[list[dt.date]] = []
        for d in days:  # consecutive days share a query
            if runs and d - runs[-1][-1] == dt.timedelta(days=1) and len(runs[-1]) < per_read:
                runs[-1].append(d)
            else:
                runs.append([d])
        for run in runs:
            start = _day_start(run[0])
            window = versions.current_cells(
                store.read_window_versions(channel, resolution, start, start + len(run) * _DAY_US),
                resolution.microseconds,
            )
            ends = np.asarray(window.column("interval_end").cast(pa.int64()).to_numpy(), np.int64)
            rows_per_day = np.bincount((ends - start - 1) // _DAY_US, minlength=len(run))
            for i, d in enumerate(run):
                day_start = start + i * _DAY_US
                plane = (
                    _plane_from_rows(window, keys, day_start, resolution, now_us)
                    if rows_per_day[i]
                    else DayPlane.empty(keys, s, now_us)
                )
                self.put(channel, resolution, d, plane)
                with self._counting:
                    self.planes_read += 1


def _plane_from_rows(
    window: pa.Table, keys: Int64Array, day_start: int, resolution: Resolution, built_us: int
) -> DayPlane:
    present, cells = dense_cells(window, keys, day_start, resolution, ("value", "quality"))
    shape = (len(keys), resolution.slots_per_day)
    return DayPlane.of(
        keys,
        cells["value"].reshape(shape),
        present.reshape(shape),
        cells["quality"].reshape(shape),
        built_us,
    )


__all__ = ["DayPlane", "HistoryCache", "fold"]
