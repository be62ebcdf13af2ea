"""A sweep in meter blocks (how a million-meter fleet fits in memory) writes exactly what a sweep
of the whole roster at once writes: the same versions, gaps, reports and day planes."""

from __future__ import annotations

import datetime as dt

import numpy as np

from kenshin.app.system import build_system
from kenshin.core.channels import Channel
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.fleet.simulator import FleetConfig
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.history import HistoryCache
from kenshin.mdms.sweep import run_sweep

START = dt.datetime(2026, 4, 6, tzinfo=JST)


def _store(path: str) -> DuckDBStore:
    """Two days of 120 meters with 5 % of the values lost on the way, not yet swept."""
    config = FleetConfig(n_meters=120, start=START, seed=9)
    system = build_system(
        config, store=DuckDBStore(path), loss=0.05, sweep=False, background_writer=False
    )
    system.run(START + dt.timedelta(days=2))
    system.commit()
    system.mdms.close()
    return system.store  # type: ignore[return-value]


def _dump(store: DuckDBStore) -> list[tuple[object, ...]]:
    return store._cursor().execute("SELECT * FROM readings ORDER BY ALL").fetchall()


def test_a_sweep_in_blocks_writes_what_a_whole_sweep_writes(tmp_path) -> None:
    whole, blocks = _store(str(tmp_path / "a.duckdb")), _store(str(tmp_path / "b.duckdb"))
    assert _dump(whole) == _dump(blocks)
    caches = {"whole": HistoryCache(), "blocks": HistoryCache()}
    for offset in range(2):
        day = START.date() + dt.timedelta(days=offset)
        now = to_epoch_us(START + dt.timedelta(days=offset + 1, hours=2))
        for channel in (Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE):
            a = run_sweep(whole, day, channel=channel, now_us=now, history=caches["whole"])
            b = run_sweep(
                blocks,
                day,
                channel=channel,
                now_us=now,
                history=caches["blocks"],
                block_meters=7,  # 120 meters in 18 blocks, the last one short
            )
            assert (a.written, a.gaps, a.quality, a.rules) == (
                b.written,
                b.gaps,
                b.quality,
                b.rules,
            )
    assert sum(1 for row in _dump(whole) if row[6] == 3) > 0  # estimates were written
    assert _dump(whole) == _dump(blocks)
    assert whole.read_gaps().equals(blocks.read_gaps())
    for channel in (Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE):
        for day in caches["whole"].days(channel, Resolution.MIN30):
            key = (int(channel), int(Resolution.MIN30), day)
            p, q = caches["whole"]._planes[key], caches["blocks"]._planes[key]
            np.testing.assert_array_equal(p.keys, q.keys)
            np.testing.assert_array_equal(p.values, q.values)
            np.testing.assert_array_equal(p.usable, q.usable)
            np.testing.assert_array_equal(p.totals, q.totals)
