"""``kenshin simulate --loss``: whole meter messages (a slot's values and the register reads at
its end) are lost on the way, and the daily VEE sweep estimates them, so every stored day (30-,
15- and 5-min values of both energy channels) has a current row in every expected slot,
estimates are labelled with their method, and where the registers at both ends of the day
arrived, the day's values add up exactly to their difference (SPEC M5, S2)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from kenshin.app.system import build_system
from kenshin.core.channels import Channel
from kenshin.core.quality import EstimationMethod, Quality, Source
from kenshin.core.timeslots import JST, Resolution
from kenshin.fleet.simulator import FleetConfig
from kenshin.mdms.sweep import day_window, expected_meters

DAYS = 2


def test_lost_values_are_estimated_and_days_add_up_to_register_differences() -> None:
    # the soft switch on (SPEC A5): 15-min values are sent, lost and estimated too
    config = FleetConfig(
        n_meters=300, start=dt.datetime(2026, 4, 6, tzinfo=JST), seed=5, send_15min=True
    )
    system = build_system(config, loss=0.05, background_writer=False)
    system.run(config.start + dt.timedelta(days=DAYS))
    assert system.link is not None and system.link.lost > 0
    store = system.store
    n = config.n_meters
    roster = store.read_meters()
    for offset in range(DAYS):
        day = config.start.date() + dt.timedelta(days=offset)
        start, end = day_window(day)
        for resolution in (Resolution.MIN30, Resolution.MIN15, Resolution.MIN5):
            for channel in (Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE):
                expected = expected_meters(roster, channel, resolution, send_15min=True)
                assert len(expected) > 0
                check_day(store, channel, resolution, expected, start, end, n)
    system.close()


def check_day(
    store: object,
    channel: Channel,
    resolution: Resolution,
    expected: np.ndarray,
    start: int,
    end: int,
    n: int,
) -> None:
    current = store.read_window(channel, resolution, start, end)  # type: ignore[attr-defined]
    keys = current.column("meter_key").to_numpy()
    # the expected meters only: specified sub-meters (SPEC S3) are not swept
    current = current.filter(pa.array(np.isin(keys, expected)))
    slots = resolution.slots_per_day
    assert current.num_rows == len(expected) * slots, "every expected slot has a current row"
    quality = current.column("quality").to_numpy()
    estimated = quality == Quality.ESTIMATED
    missing = quality == Quality.MISSING  # nothing to estimate from: left for re-reads
    if channel is Channel.ACTIVE_FORWARD:
        assert 0.02 < estimated.mean() < 0.08  # about the 5 % lost
    assert missing.mean() < 0.005
    assert current.column("value").null_count == missing.sum()
    assert set(np.unique(quality)) <= {Quality.VALID, Quality.ESTIMATED, Quality.MISSING}
    methods = current.column("method").to_numpy()[estimated]
    assert set(np.unique(methods)) <= {
        EstimationMethod.LINEAR,
        EstimationMethod.LIKE_DAY,
        EstimationMethod.LIKE_DAY_SCALED,
    }
    assert np.all(current.column("source").to_numpy()[estimated] == Source.ESTIMATE)
    keys = current.column("meter_key").to_numpy()
    values = current.column("value").fill_null(0).to_numpy().astype(np.int64)
    totals = np.bincount(keys, weights=values, minlength=n).astype(np.int64)[expected]
    registers = store.read_register_window(channel, start, end)  # type: ignore[attr-defined]
    at = registers.column("read_at").cast(pa.int64()).to_numpy()
    r_keys = registers.column("meter_key").to_numpy()
    reg = registers.column("register").to_numpy().astype(np.int64)
    first = np.full(n, -1, np.int64)
    last = np.full(n, -1, np.int64)
    first[r_keys[at == start]] = reg[at == start]
    last[r_keys[at == end]] = reg[at == end]
    # the registers at both ends arrived and nothing is left missing: the day adds up exactly
    gapless = np.ones(n, bool)
    gapless[keys[missing]] = False
    held = ((first >= 0) & (last >= 0) & gapless)[expected]
    assert held.mean() > 0.8
    assert np.array_equal(totals[held], ((last - first) % 10**8)[expected][held])
