"""Reliability indices from the outage events (issue 15 item 3): customers interrupted,
customer-minutes, SAIFI, SAIDI and CAIDI per day and per area (IEEE 1366 style).

- An **interruption** is a customer darkened by a reported event: confirmed (a suspicion never
  confirmed, or withdrawn, is none), not folded into a bigger event (``merged_into``: its
  customers are the bigger one's). A customer still dark after its device came back is counted
  by its nested event, from the parent's start to its own end, and not by the parent: never
  twice.
- **Sustained** when it lasted longer than 5 minutes; shorter ones are *momentary* and counted
  apart (MAIFI), not in SAIFI or SAIDI.
- An event belongs to the day it started (JST), all its minutes with it; an open event counts up
  to ``now``.
- SAIFI = customers interrupted / customers served; SAIDI = customer-minutes / customers served
  (minutes per customer); CAIDI = SAIDI / SAIFI (minutes per interruption).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kenshin.core.timeslots import US_PER_MINUTE, to_epoch_us

SUSTAINED_US = 5 * US_PER_MINUTE  # IEEE 1366: an interruption longer than 5 min is sustained
COUNTED = ("confirmed", "restoring", "restored")


@dataclass(frozen=True, slots=True)
class Interruptions:
    """One row per customer per interruption."""

    meter_keys: npt.NDArray[np.int64]
    start_us: npt.NDArray[np.int64]
    end_us: npt.NDArray[np.int64]
    event_ids: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class AreaIndices:
    group: int  # the area (or substation, feeder) code
    customers_served: int
    customers_interrupted: int  # sustained interruptions (CI)
    customer_minutes: float  # CMI, sustained interruptions
    momentary: int  # interruptions of 5 minutes or less
    events: int  # events with at least one customer in the group

    @property
    def saifi(self) -> float:
        return self.customers_interrupted / self.customers_served if self.customers_served else 0.0

    @property
    def saidi(self) -> float:
        return self.customer_minutes / self.customers_served if self.customers_served else 0.0

    @property
    def caidi(self) -> float | None:
        return self.saidi / self.saifi if self.saifi else None

    def view(self) -> dict[str, Any]:
        return {
            "customers_served": self.customers_served,
            "customers_interrupted": self.customers_interrupted,
            "customer_minutes": round(self.customer_minutes, 1),
            "momentary_interruptions": self.momentary,
            "events": self.events,
            "saifi": round(self.saifi, 6),
            "saidi_minutes": round(self.saidi, 4),
            "caidi_minutes": None if self.caidi is None else round(self.caidi, 2),
        }


def _us(value: dt.datetime | int | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return to_epoch_us(value)


def interruptions(rows: Iterable[dict[str, Any]], now_us: int) -> Interruptions:
    """Who was interrupted, when, by which event (rows as the store keeps them:
    ``OUTAGES_SCHEMA``)."""
    rows = [r for r in rows if r["merged_into"] is None and r["state"] in COUNTED]
    details = {r["event_id"]: json.loads(r["detail"]) for r in rows}
    nested_meters: dict[int, set[int]] = {}
    for detail in details.values():
        parent = detail.get("nested_in")
        if parent is not None:
            nested_meters.setdefault(parent, set()).update(detail["meters"])
    keys: list[npt.NDArray[np.int64]] = []
    starts: list[int] = []
    ends: list[int] = []
    ids: list[int] = []
    for row in rows:
        meters = np.array(details[row["event_id"]]["meters"], np.int64)
        taken = nested_meters.get(row["event_id"])
        if taken:
            meters = meters[~np.isin(meters, list(taken))]
        start = _us(row["started"])
        end = _us(row["restored"])
        assert start is not None
        keys.append(meters)
        starts += [start] * len(meters)
        ends += [now_us if end is None else end] * len(meters)
        ids += [row["event_id"]] * len(meters)
    return Interruptions(
        np.concatenate(keys) if keys else np.empty(0, np.int64),
        np.array(starts, np.int64),
        np.array(ends, np.int64),
        np.array(ids, np.int64),
    )


def reliability(
    found: Interruptions,
    group_of: npt.NDArray[np.int64],
    day_start_us: int,
    day_end_us: int,
) -> list[AreaIndices]:
    """Indices per group (``group_of[meter_key]``: an area, substation or feeder code; -1 for
    keys not served) for the interruptions that started in ``[day_start, day_end)``."""
    served_groups, served = np.unique(group_of[group_of >= 0], return_counts=True)
    in_day = (found.start_us >= day_start_us) & (found.start_us < day_end_us)
    keys = found.meter_keys[in_day]
    groups = group_of[keys]
    minutes = (found.end_us[in_day] - found.start_us[in_day]) / US_PER_MINUTE
    sustained = minutes * US_PER_MINUTE > SUSTAINED_US
    events = found.event_ids[in_day]
    out = []
    for group, count in zip(served_groups.tolist(), served.tolist(), strict=True):
        mine = groups == group
        out.append(
            AreaIndices(
                int(group),
                int(count),
                int((mine & sustained).sum()),
                float(minutes[mine & sustained].sum()),
                int((mine & ~sustained).sum()),
                len(np.unique(events[mine])),
            )
        )
    return out
