"""The 5-min samples (SPEC A2, A3): LV and HV/EHV drawn separately, each its own share, and what
the sampled meters send on the direct path (HV: active and reactive, no voltage)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from kenshin.core.channels import Channel
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.timeslots import JST, Resolution
from kenshin.errors import InvalidSetting
from kenshin.fleet.simulator import Fleet, FleetConfig

CONFIG = FleetConfig(n_meters=2000, start=dt.datetime(2026, 4, 1, tzinfo=JST), seed=3)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet(CONFIG)


def _classes(fleet: Fleet) -> tuple[np.ndarray, np.ndarray]:
    hv = fleet.population.meter_class >= MeterClass.HV
    return ~hv, hv


def test_lv_and_hv_samples_are_about_their_own_share(fleet: Fleet) -> None:
    lv, hv = _classes(fleet)
    assert CONFIG.sample_5min_share_lv == CONFIG.sample_5min_share_hv == 0.10
    assert (fleet.sampled & lv).sum() == round(0.10 * lv.sum())
    assert (fleet.sampled & hv).sum() == round(0.10 * hv.sum()) > 0
    assert np.all(fleet.population.generation[fleet.sampled] == Generation.GEN2)


def test_the_lv_sample_spreads_over_pole_transformers(fleet: Fleet) -> None:
    lv, _ = _classes(fleet)
    tx = fleet.population.topology.transformer
    sampled_tx = tx[fleet.sampled & lv]
    assert len(np.unique(sampled_tx)) == len(sampled_tx)  # fewer samples than transformers here


def test_the_shares_are_drawn_separately() -> None:
    config = dataclasses.replace(CONFIG, sample_5min_share_lv=0.05, sample_5min_share_hv=0.5)
    fleet = Fleet(config)
    lv, hv = _classes(fleet)
    assert (fleet.sampled & lv).sum() == round(0.05 * lv.sum())
    gen2_hv = hv & (fleet.population.generation == Generation.GEN2)
    assert (fleet.sampled & hv).sum() == min(round(0.5 * hv.sum()), gen2_hv.sum())
    none = Fleet(dataclasses.replace(config, sample_5min_share_hv=0.0))
    assert not (none.sampled & hv).any()
    assert np.array_equal(none.sampled & lv, fleet.sampled & lv)  # the LV draw is its own


def test_the_realtime_sample_is_low_voltage_and_inside_the_a2_sample(fleet: Fleet) -> None:
    lv, hv = _classes(fleet)
    assert fleet.realtime.sum() == round(CONFIG.realtime_5min_share * lv.sum())
    assert not (fleet.realtime & ~fleet.sampled).any()
    assert not (fleet.realtime & hv).any()


def test_the_old_single_share_sets_both_and_does_not_mix_with_them() -> None:
    config = FleetConfig(n_meters=10, sample_5min_share=0.2)
    assert (config.sample_5min_share_lv, config.sample_5min_share_hv) == (0.2, 0.2)
    assert config.sample_5min_share is None
    assert dataclasses.replace(config, sample_5min_share_hv=0.3).sample_5min_share_lv == 0.2
    with pytest.raises(InvalidSetting, match="not both"):
        FleetConfig(n_meters=10, sample_5min_share=0.2, sample_5min_share_hv=0.3)
    with pytest.raises(InvalidSetting, match="sample_5min_share_hv"):
        FleetConfig(n_meters=10, sample_5min_share_hv=1.5)
    with pytest.raises(InvalidSetting, match="real-time"):
        FleetConfig(n_meters=10, sample_5min_share_lv=0.02, realtime_5min_share=0.03)


def test_sampled_hv_meters_send_active_and_reactive_5min_values_but_no_voltage(
    fleet: Fleet,
) -> None:
    """SPEC A2, M2 on the direct path: HV 5-min values are active (both directions) and
    reactive; voltage comes from the LV sampled meters only."""
    message = Fleet(CONFIG).run_slot()
    lv, hv = _classes(fleet)
    five = {b.channel: b for b in message.intervals if b.resolution is Resolution.MIN5}
    assert set(five) == {
        Channel.ACTIVE_FORWARD,
        Channel.ACTIVE_REVERSE,
        Channel.REACTIVE,
        Channel.VOLTAGE,
    }
    sampled_hv = set(np.flatnonzero(fleet.sampled & hv).tolist())
    sampled_lv = set(np.flatnonzero(fleet.sampled & lv).tolist())
    for channel in (Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE, Channel.REACTIVE):
        assert set(five[channel].meter_keys.tolist()) == sampled_lv | sampled_hv
    assert set(five[Channel.VOLTAGE].meter_keys.tolist()) == sampled_lv
    reactive = five[Channel.REACTIVE]
    rows = np.isin(reactive.meter_keys, list(sampled_hv))
    assert reactive.values.shape[0] == 6 and reactive.values[:, rows].sum() > 0
