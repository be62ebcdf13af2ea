"""Specified sub-meters in the fleet (SPEC S3): consistent with their parents on every slot,
deterministic, and invisible to the rest of the fleet when the shares are 0."""

from __future__ import annotations

import datetime as dt

import numpy as np
import numpy.typing as npt
import pytest

from kenshin.core.channels import Channel
from kenshin.core.customers import CustomerType
from kenshin.core.specified import SpecifiedKind
from kenshin.core.timeslots import JST
from kenshin.errors import InvalidSetting
from kenshin.fleet.simulator import Fleet, FleetConfig

START = dt.datetime(2026, 5, 2, tzinfo=JST)  # sunny spring days: PV export at noon


def run_day(config: FleetConfig) -> tuple[Fleet, dict[str, npt.NDArray[np.int64]]]:
    """48 slots: forward and reverse of every smart meter, and the sub-meters' values."""
    fleet = Fleet(config)
    out: dict[str, list[npt.NDArray[np.int64]]] = {"fwd": [], "rev": [], "sub": []}
    for _ in range(48):
        message = fleet.run_slot()
        blocks = {(int(b.resolution), b.channel): b for b in message.intervals}
        out["fwd"].append(blocks[(30, Channel.ACTIVE_FORWARD)].values[0])
        out["rev"].append(blocks[(30, Channel.ACTIVE_REVERSE)].values[0])
        specified = fleet.specified_message()
        if specified is not None:
            [block] = specified.intervals
            assert block.channel is Channel.ACTIVE_FORWARD and int(block.resolution) == 30
            assert block.interval_ends_us.tolist() == [fleet.meters.now_us]
            out["sub"].append(block.values[0])
    return fleet, {k: np.array(v, dtype=np.int64) for k, v in out.items()}


@pytest.fixture(scope="module")
def day() -> tuple[Fleet, dict[str, npt.NDArray[np.int64]]]:
    config = FleetConfig(
        n_meters=3000, start=START, seed=5, specified_share=0.2, specified_pv_share=0.5
    )
    return run_day(config)


def test_sub_meters_have_their_own_keys_after_the_smart_meters(day: tuple) -> None:
    fleet, _ = day
    roster = fleet.specified_table()
    keys = roster.column("meter_key").to_numpy()
    assert keys.tolist() == list(range(3000, 3000 + roster.num_rows))
    assert len(set(roster.column("device_id").to_pylist())) == roster.num_rows
    assert not set(roster.column("device_id").to_pylist()) & set(
        fleet.population.device_id.astype(np.int64).tolist()
    )
    parent = roster.column("parent_key").to_numpy()
    kind = roster.column("kind").to_numpy()
    pop = fleet.population
    ev, pv = kind == SpecifiedKind.EV_CHARGER, kind == SpecifiedKind.PV_INVERTER
    assert ev.sum() > 50 and pv.sum() > 10
    assert (pop.customer_type[parent[ev]] == CustomerType.HOUSEHOLD_DETACHED).all()
    assert (pop.pv_kw[parent[pv]] > 0).all()


def test_main_minus_ev_charger_is_never_negative(day: tuple) -> None:
    fleet, v = day
    sub = fleet.specified
    parents = sub.parent[sub.ev]
    charger = v["sub"][:, sub.ev]
    assert (v["fwd"][:, parents] - charger >= 0).all()  # every slot of every charger
    # chargers do charge: about 4 kWh a day each on average (0.01 kWh per count)
    per_charger_kwh = charger.sum() * 0.01 / len(sub.ev)
    assert 1.5 < per_charger_kwh < 8.0
    assert (charger > 0).any(axis=0).mean() > 0.2


def test_pv_inverter_counts_the_parent_generation(day: tuple) -> None:
    fleet, v = day
    sub = fleet.specified
    parents = sub.parent[sub.pv]
    generation = v["sub"][:, sub.pv]
    export = v["rev"][:, parents]
    assert (generation >= export).all()  # export = generation − self-consumption
    own = v["fwd"][:, parents] - export + generation
    assert (own >= 0).all()
    assert generation[:10].sum() == 0  # no sun before 05:00
    kwh_per_kw = generation.sum(axis=0) * 0.01 / fleet.population.pv_kw[parents]
    assert 1.0 < np.median(kwh_per_kw) < 8.0  # a spring day's yield [kWh/kW]


def test_specified_values_are_deterministic_from_the_seed(day: tuple) -> None:
    _, v = day
    config = FleetConfig(
        n_meters=3000, start=START, seed=5, specified_share=0.2, specified_pv_share=0.5
    )
    _, again = run_day(config)
    assert np.array_equal(again["sub"], v["sub"])


def test_without_sub_meters_the_fleet_is_unchanged(day: tuple) -> None:
    fleet, v = day
    config = FleetConfig(
        n_meters=3000, start=START, seed=5, specified_share=0.0, specified_pv_share=0.0
    )
    plain_fleet, plain = run_day(config)
    assert plain_fleet.specified is None and plain_fleet.specified_message() is None
    assert plain_fleet.specified_table().num_rows == 0
    # only the EV houses draw more; every other meter measures exactly the same
    ev_houses = fleet.specified.parent[fleet.specified.ev]
    others = np.setdiff1d(np.arange(3000), ev_houses)
    assert np.array_equal(plain["fwd"][:, others], v["fwd"][:, others])
    assert np.array_equal(plain["rev"], v["rev"])
    assert (v["fwd"][:, ev_houses] - plain["fwd"][:, ev_houses] >= -1).all()
    assert v["fwd"][:, ev_houses].sum() > plain["fwd"][:, ev_houses].sum()


def test_shares_are_checked() -> None:
    with pytest.raises(InvalidSetting, match="specified_share"):
        FleetConfig(n_meters=10, specified_share=1.5)
