"""A small simulated fleet for the B-route node tests, and request helpers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cache

import numpy as np

from kenshin.broute.echonet import CONTROLLER, EOJ, ESV, Frame, Property, decode, encode
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.timeslots import JST
from kenshin.fleet.simulator import Fleet, FleetConfig

START = dt.datetime(2026, 4, 1, tzinfo=JST)
STEPS = 288 + 42  # one day and 3.5 hours: the data time is 2026-04-02 03:30 JST


def build_fleet(steps: int = STEPS, n_meters: int = 400) -> Fleet:
    fleet = Fleet(FleetConfig(n_meters=n_meters, start=START, seed=3))
    for _ in range(steps):
        fleet.step()
    return fleet


@cache
def shared_fleet() -> Fleet:
    """One fleet for tests that only read (never step it)."""
    return build_fleet()


def first_key(fleet: Fleet, meter_class: MeterClass, generation: Generation) -> int:
    pop = fleet.population
    found = np.flatnonzero((pop.meter_class == meter_class) & (pop.generation == generation))
    assert len(found), f"no {meter_class.name} {generation.name} meter in the test fleet"
    return int(found[0])


def request(
    deoj: EOJ,
    esv: ESV,
    props: Sequence[tuple[int, bytes] | int],
    set_props: Sequence[tuple[int, bytes]] = (),
    tid: int = 0x1234,
) -> bytes:
    items = tuple(Property(p) if isinstance(p, int) else Property(p[0], p[1]) for p in props)
    sets = tuple(Property(e, d) for e, d in set_props)
    return encode(Frame(tid, CONTROLLER, deoj, esv, items, sets))


def only_reply(replies: list[bytes]) -> Frame:
    assert len(replies) == 1, replies
    return decode(replies[0])


def values(frame: Frame) -> dict[int, bytes]:
    return {p.epc: p.edt for p in frame.properties}
