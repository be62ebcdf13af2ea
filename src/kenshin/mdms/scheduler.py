"""What the MDMS does on its own as simulated time passes: the daily VEE sweep and the monthly
housekeeping (compaction, archive, retention), at fixed delays after the day or month closes.

The sweep waits ``sweep_delay`` after midnight so that late deliveries and the head-end's first
re-reads are in (SPEC A1 allows 60 minutes for 30-min values); housekeeping runs one day into a
new month.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kenshin.core.channels import Channel
from kenshin.core.timeslots import JST, Resolution, from_epoch_us
from kenshin.mdms.archive import ParquetArchive
from kenshin.mdms.differences import DifferenceReport, run_differences
from kenshin.mdms.history import HistoryCache
from kenshin.mdms.housekeeping import HousekeepingReport, RetentionPolicy, run_housekeeping
from kenshin.mdms.months import month_of, month_start_us
from kenshin.mdms.store import OutageLog, ScheduledStore
from kenshin.mdms.sweep import (
    SWEEP_BLOCK_CELLS,
    SupplyWindow,
    SweepReport,
    day_window,
    expected_meters,
    run_sweep,
)
from kenshin.mdms.vee import VeeConfig

log = logging.getLogger(__name__)

# both energy channels; at 15 and 5 min only the meters expected to send them are swept
# (kenshin.mdms.sweep.expected_meters). Voltage and reactive values are stored as received.
SWEPT_CHANNELS = (Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE)
_NEVER = 10**9


def channel_config(base: VeeConfig | None, channel: Channel) -> VeeConfig:
    """The utility's VEE settings as applied to one energy channel."""
    config = base or VeeConfig()
    if channel is Channel.ACTIVE_REVERSE:
        # most meters never export: a day at zero on the reverse channel is normal
        return dataclasses.replace(config, zero_run_minutes=_NEVER)
    return config


# passes of a day's sweep run side by side: numpy and the store's reads release the GIL, so
# two use both cores of a small server (measured: benchmarks/simulate.py, nightly_sweep.py).
# Each runs in blocks half the size, so their arrays take what one pass's did; what two passes
# in two threads took more (4.6 against 3.7 GiB for `kenshin simulate` of 1,000,000 meters) was
# glibc's per-thread malloc arenas, which the kenshin command caps (kenshin.app.allocator)
PASSES_AT_ONCE = 2

OUTAGE_LOOKBACK_US = 7 * 86_400_000_000  # an outage that started a week before still counts


def outage_windows(store: OutageLog, day: dt.date) -> list[SupplyWindow]:
    """Each customer's time in an outage the engine recorded (issue 15: SPEC R1) that overlaps
    ``day``: from the event's start to its restoration (or the day's end while open). Events
    folded into a bigger one are the bigger one's."""
    start, end = day_window(day)
    windows: list[SupplyWindow] = []
    for row in store.read_outages(start - OUTAGE_LOOKBACK_US, end).to_pylist():
        if row["merged_into"] is not None:
            continue
        began = int(row["started"].timestamp() * 1_000_000)
        restored = row["restored"]
        until = end if restored is None else int(restored.timestamp() * 1_000_000)
        if until <= start or began >= end:
            continue
        meters = json.loads(row["detail"])["meters"]
        windows.extend(SupplyWindow(int(m), began, until) for m in meters)
    return windows


@dataclass
class DaySweep:
    sweeps: list[SweepReport]
    differences: DifferenceReport | None  # None: not both energy channels were swept
    passes_at_once: int = 1  # how many of the passes ran side by side


def sweep_day(
    store: ScheduledStore,
    day: dt.date,
    *,
    now_us: int,
    vee: VeeConfig | None = None,
    channels: tuple[Channel, ...] = SWEPT_CHANNELS,
    resolutions: tuple[Resolution, ...] = (Resolution.MIN30,),
    history_days: int | None = None,
    history: HistoryCache | None = None,
    send_15min: bool = False,
    passes_at_once: int | None = None,
) -> DaySweep:
    """Everything the MDMS does with a closed day: the VEE sweep of each channel and resolution
    (``expected_meters``; 15-min values only when the utility's soft switch ``send_15min`` sends
    them, SPEC A5), then, when both energy channels were swept, the differences of parent and
    specified meters from the swept values (SPEC S3).

    The passes are independent (each its own channel and resolution, its own cells and gaps):
    ``passes_at_once`` of them (default ``PASSES_AT_ONCE``) run side by side, each in blocks
    that many times smaller; the differences start once the 30-min passes are done."""
    windows = outage_windows(store, day)  # values in an outage are not estimated (R1)
    roster = store.read_meters()
    passes = {
        (channel, resolution): expected_meters(roster, channel, resolution, send_15min=send_15min)
        for resolution in resolutions
        for channel in channels
    }
    wanted = PASSES_AT_ONCE if passes_at_once is None else passes_at_once
    at_once = max(1, min(wanted, len(passes)))

    def sweep(channel: Channel, resolution: Resolution) -> SweepReport:
        return run_sweep(
            store,
            day,
            channel=channel,
            resolution=resolution,
            config=channel_config(vee, channel),
            now_us=now_us,
            history_days=history_days,
            history=history,
            supply_windows=windows,
            meters=passes[(channel, resolution)],  # the soft switch already applied
            block_meters=max(1, SWEEP_BLOCK_CELLS // at_once // resolution.slots_per_day),
        )

    # the differences read both energy channels' swept 30-min values (their estimates too)
    both = set(SWEPT_CHANNELS) <= set(channels) and Resolution.MIN30 in resolutions
    if at_once == 1:
        reports = [sweep(*one) for one in passes]
        return DaySweep(reports, run_differences(store, day, now_us=now_us) if both else None)
    with ThreadPoolExecutor(at_once, thread_name_prefix="sweep") as pool:
        jobs = {one: pool.submit(sweep, *one) for one in passes}
        differences = None
        if both:  # alongside the passes at other resolutions, once the 30-min ones are done
            for (_, resolution), job in jobs.items():
                if resolution is Resolution.MIN30:
                    job.result()
            differences = run_differences(store, day, now_us=now_us)
        return DaySweep([job.result() for job in jobs.values()], differences, at_once)


@dataclass
class MdmsSchedule:
    store: ScheduledStore
    flush: Callable[[], None]  # store what is buffered before a sweep reads it
    vee: VeeConfig | None = None
    sweep_delay: dt.timedelta = dt.timedelta(hours=2)
    history_days: int | None = None
    archive: ParquetArchive | None = None
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    # passes of a day's sweep side by side (None: ``PASSES_AT_ONCE``)
    passes_at_once: int | None = None
    sweeps: list[SweepReport] = field(default_factory=list)  # forward channel
    # the other channel and resolutions: reverse 30-min, and 15/5-min where they are collected
    other_sweeps: list[SweepReport] = field(default_factory=list)
    resolutions: tuple[Resolution, ...] = (Resolution.MIN30,)
    send_15min: bool = False  # the utility's soft switch (SPEC A5): 15-min values are sent
    housekeeping: list[HousekeepingReport] = field(default_factory=list)
    differences: list[DifferenceReport] = field(default_factory=list)
    # day planes of the look-back, kept between sweeps so that a sweep reads one day, not weeks
    history: HistoryCache = field(default_factory=HistoryCache)
    _next_day: dt.date | None = None
    _next_month: int | None = None

    def start(self, first: dt.datetime) -> None:
        """Sweeps begin with the first whole day: before ``first`` the meters sent nothing, so a
        partial first day would be all gaps."""
        local = first.astimezone(JST)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        self._next_day = local.date() + (
            dt.timedelta(days=1) if local != midnight else dt.timedelta()
        )
        self._next_month = month_of(int(first.timestamp() * 1_000_000)) + 1

    def tick(self, now_us: int, *, final: bool = False) -> None:
        """Run what is due at ``now_us``; ``final``: sweep every day that has closed."""
        if self._next_day is None:
            self.start(from_epoch_us(now_us))
        assert self._next_day is not None and self._next_month is not None
        delay = 0 if final else int(self.sweep_delay.total_seconds() * 1_000_000)
        while day_window(self._next_day)[1] + delay <= now_us:
            self.flush()
            day = sweep_day(
                self.store,
                self._next_day,
                now_us=now_us,
                vee=self.vee,
                resolutions=self.resolutions,
                history_days=self.history_days,
                history=self.history,
                send_15min=self.send_15min,
                passes_at_once=self.passes_at_once,
            )
            for report in day.sweeps:
                if (
                    report.channel is Channel.ACTIVE_FORWARD
                    and report.resolution is Resolution.MIN30
                ):
                    self.sweeps.append(report)
                else:
                    self.other_sweeps.append(report)
            if day.differences is not None:
                self.differences.append(day.differences)
            self._next_day += dt.timedelta(days=1)
        while month_start_us(self._next_month) + 86_400_000_000 <= now_us:
            self.flush()
            self.housekeeping.append(
                run_housekeeping(self.store, self.archive, now_us, self.retention)
            )
            self._next_month += 1
