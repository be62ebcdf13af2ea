"""The passes of a day's sweep run side by side (``sweep_day(passes_at_once=2)``, the default):
they write exactly what the same passes one after another write — versions, gaps, reports, the
differences and the day planes kept for the next days — on both backends."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from kenshin.app.system import build_system
from kenshin.core.quality import Source
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.fleet.simulator import FleetConfig
from kenshin.mdms import scheduler
from kenshin.mdms.history import HistoryCache
from kenshin.mdms.scheduler import SWEPT_CHANNELS, sweep_day
from tests.mdms.conftest import BACKENDS, Backend

START = dt.datetime(2026, 4, 6, tzinfo=JST)
RESOLUTIONS = (Resolution.MIN30, Resolution.MIN15, Resolution.MIN5)
# (channel, resolution, meter_key, interval_end, value, quality, source, …)
SOURCE = 6


def _filled(backend: Backend) -> object:
    """Two days of 200 meters (15-min values sent, a 5-min sample), 5 % of the values lost on
    the way, not yet swept."""
    config = FleetConfig(n_meters=200, start=START, seed=4, send_15min=True)
    system = build_system(
        config, store=backend.open(), loss=0.05, sweep=False, background_writer=False
    )
    system.run(START + dt.timedelta(days=2))
    system.commit()
    system.mdms.close()
    return system.store


def _rows(store: object) -> list[tuple[object, ...]]:
    start, end = to_epoch_us(START), to_epoch_us(START + dt.timedelta(days=2))
    rows: list[tuple[object, ...]] = []
    for channel in SWEPT_CHANNELS:
        for resolution in RESOLUTIONS:
            table = store.read_window_versions(channel, resolution, start, end)  # type: ignore[attr-defined]
            rows += sorted(
                (int(channel), int(resolution), *row.values()) for row in table.to_pylist()
            )
    return rows


@pytest.mark.parametrize("name", BACKENDS)
def test_passes_side_by_side_write_what_passes_in_turn_write(name: str, tmp_path: Path) -> None:
    backends = [Backend(name, tmp_path / "one"), Backend(name, tmp_path / "two")]
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    try:
        stores = [_filled(b) for b in backends]
        assert _rows(stores[0]) == _rows(stores[1])
        caches = [HistoryCache(), HistoryCache()]
        for offset in range(2):
            day = START.date() + dt.timedelta(days=offset)
            now = to_epoch_us(START + dt.timedelta(days=offset + 1, hours=2))
            in_turn, side_by_side = (
                sweep_day(
                    store,  # type: ignore[arg-type]
                    day,
                    now_us=now,
                    resolutions=RESOLUTIONS,
                    history=cache,
                    send_15min=True,
                    passes_at_once=at_once,
                )
                for store, cache, at_once in zip(stores, caches, (1, 2), strict=True)
            )
            assert len(in_turn.sweeps) == len(side_by_side.sweeps) == 6
            for a, b in zip(in_turn.sweeps, side_by_side.sweeps, strict=True):
                assert (a.channel, a.resolution, a.written, a.gaps, a.quality, a.rules) == (
                    b.channel,
                    b.resolution,
                    b.written,
                    b.gaps,
                    b.quality,
                    b.rules,
                )
            assert in_turn.differences is not None and side_by_side.differences is not None
            assert in_turn.differences.cells == side_by_side.differences.cells
        swept = _rows(stores[0])
        assert any(row[SOURCE] == Source.ESTIMATE for row in swept)  # estimates were written
        assert swept == _rows(stores[1])
        assert stores[0].read_gaps().equals(stores[1].read_gaps())  # type: ignore[attr-defined]
        for channel in SWEPT_CHANNELS:
            for resolution in RESOLUTIONS:
                days = caches[0].days(channel, resolution)
                assert days and days == caches[1].days(channel, resolution)
                for day in days:
                    key = (int(channel), int(resolution), day)
                    p, q = caches[0]._planes[key], caches[1]._planes[key]
                    np.testing.assert_array_equal(p.values, q.values)
                    np.testing.assert_array_equal(p.usable, q.usable)
    finally:
        for backend in backends:
            backend.cleanup()


def test_passes_run_two_at_once_unless_told(tmp_path: Path) -> None:
    """Two passes side by side by default, at any size (the arenas the kenshin command caps were
    what made a million meters' day take more memory); one at a time when asked."""
    backend = Backend("duckdb", tmp_path)
    try:
        store = _filled(backend)
        day, now = START.date(), to_epoch_us(START + dt.timedelta(days=1, hours=2))
        default = sweep_day(store, day, now_us=now, resolutions=RESOLUTIONS, send_15min=True)  # type: ignore[arg-type]
        assert default.passes_at_once == scheduler.PASSES_AT_ONCE == 2
        in_turn = sweep_day(  # type: ignore[arg-type]
            store, day, now_us=now, resolutions=RESOLUTIONS, send_15min=True, passes_at_once=1
        )
        assert in_turn.passes_at_once == 1
        assert [r.cells for r in in_turn.sweeps] == [r.cells for r in default.sweeps]
        assert sum(r.written for r in in_turn.sweeps) == 0  # the day was swept: nothing new
    finally:
        backend.cleanup()
