"""The head-end's collection duties and deadlines (SPEC A1–A3, A5): one settings object per utility.

The deadlines come from the report; shares, windows and re-read timings are per-utility settings
with the defaults a demanding utility would pick. The network planner (``kenshin plan-network``) and
the head-end's re-read scheduler read the same object, so the plan and the running system agree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import IntEnum

from kenshin.core.meterspec import (
    DEFAULT_RETENTION_5,
    DEFAULT_RETENTION_30_15,
    SPEC_TABLE,
    Generation,
    MeterClass,
    MeterSpec,
    meter_spec,
)
from kenshin.errors import InvalidSetting


class Duty(IntEnum):
    A1 = 1  # every 30-min value of every meter (LV ≤ 60 min, HV ≤ 30 min after the slot end)
    A2 = 2  # 5-min historical values of a sample, within days, sent off-peak
    A3 = 3  # 5-min real-time values of a smaller sample, within 10 min

    @property
    def label(self) -> str:
        return self.name


def _minutes(*values: int) -> tuple[dt.timedelta, ...]:
    return tuple(dt.timedelta(minutes=v) for v in values)


@dataclass(frozen=True, slots=True)
class CollectionPolicy:
    a1_deadline_lv: dt.timedelta = dt.timedelta(minutes=60)  # A1
    a1_deadline_hv: dt.timedelta = dt.timedelta(minutes=30)  # A1
    a3_deadline: dt.timedelta = dt.timedelta(minutes=10)  # A3
    a2_deadline: dt.timedelta = dt.timedelta(days=3)  # A2: "within a few days"
    # A2: about 10 % or more of the LV meters and, separately, of the HV/EHV meters
    sample_5min_share_lv: float = 0.10
    sample_5min_share_hv: float = 0.10
    # A3: about 3 % or more of the LV meters, from the LV A2 sample
    realtime_5min_share: float = 0.03
    # A5 soft switch for the whole utility: off (15-min values recorded on the meters, not sent)
    # until the market moves to 15-min settlement; fixed for a run (docs/architecture.md)
    send_15min: bool = False
    # A2 batches are sent once a day inside this window (JST), spread to fit network capacity
    offpeak_start: dt.time = dt.time(1, 0)
    offpeak_end: dt.time = dt.time(5, 0)
    # Missing values are re-requested from meter memory at these delays after the slot end.
    # LV rounds all fit inside the 60-min deadline; HV uses those inside its 30 min first.
    a1_rereads: tuple[dt.timedelta, ...] = field(default_factory=lambda: _minutes(10, 20, 35, 50))
    a3_rereads: tuple[dt.timedelta, ...] = field(default_factory=lambda: _minutes(4, 7))
    # A2 gaps are re-requested the next off-peak nights, while the meter still holds them
    a2_reread_after: dt.timedelta = dt.timedelta(hours=2)
    # keep asking for older gaps (after the deadline) until the meter's memory runs out
    late_reread_every: dt.timedelta = dt.timedelta(hours=6)
    # M4: how long next-generation meters keep 30/15-min and 5-min values (the utility's
    # recording periods; gen-1 meters keep 45 days, M3): re-reads ask only for what they keep
    recording_period_30_15: dt.timedelta = DEFAULT_RETENTION_30_15
    recording_period_5: dt.timedelta = DEFAULT_RETENTION_5

    def __post_init__(self) -> None:
        for name in ("sample_5min_share_lv", "sample_5min_share_hv", "realtime_5min_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise InvalidSetting(f"{name} must be within 0..1, got {share}")
        if self.realtime_5min_share > self.sample_5min_share_lv:
            raise InvalidSetting(
                "the A3 real-time sample is drawn from the LV A2 sample: "
                "realtime_5min_share ≤ sample_5min_share_lv"
            )
        for name in ("a1_rereads", "a3_rereads"):
            delays = getattr(self, name)
            if list(delays) != sorted(delays) or any(d <= dt.timedelta(0) for d in delays):
                raise InvalidSetting(f"{name} must be positive and increasing")
        if self.offpeak_start == self.offpeak_end:
            raise InvalidSetting("the off-peak window must not be empty")
        if min(self.recording_period_30_15, self.recording_period_5) <= dt.timedelta(0):
            raise InvalidSetting("the meters' recording periods must be positive")

    def meter_specs(self) -> dict[tuple[Generation, MeterClass], MeterSpec]:
        """Every generation × class of meter with this utility's recording periods (M4)."""
        return {
            (g, c): meter_spec(
                g,
                c,
                retention_30_15=self.recording_period_30_15,
                retention_5=self.recording_period_5,
            )
            for g, c in SPEC_TABLE
        }

    def a1_deadline(self, high_voltage: bool) -> dt.timedelta:
        return self.a1_deadline_hv if high_voltage else self.a1_deadline_lv

    def deadline(self, duty: Duty, high_voltage: bool = False) -> dt.timedelta:
        if duty is Duty.A1:
            return self.a1_deadline(high_voltage)
        return self.a3_deadline if duty is Duty.A3 else self.a2_deadline
