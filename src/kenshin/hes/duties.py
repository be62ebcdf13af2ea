"""Deadline accounting and re-read scheduling for the collection duties (SPEC A1–A3).

For each duty the head-end keeps, for the last ``window`` slots, when each expected meter's value
first arrived (seconds after the slot end). From that it derives, vectorized over all meters:

- the **on-time share** per JST day: a slot is judged once its deadline has passed;
- the **delay distribution** of first arrivals (fixed buckets, so days can be added up);
- the **re-reads** that are due: missing values are re-requested from meter memory at the policy's
  delays after the slot end, then every ``late_reread_every`` while the slot is in the window.

The trackers are pure: times are epoch µs passed in; no clock, no I/O (ARCHITECTURE principle 1).
Older gaps beyond the window are the MDMS's gap list's business.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kenshin.core.timeslots import JST_OFFSET_US, US_PER_DAY, from_epoch_us
from kenshin.hes.policy import CollectionPolicy, Duty

MISSING = np.uint32(0xFFFFFFFF)
# upper edges of the delay buckets [s]; the last bucket is "longer"
DELAY_EDGES_S = np.array(
    [10, 30, 60, 120, 300, 600, 1200, 1800, 2700, 3600, 7200, 21600, 86400, 259200], dtype=np.int64
)


def _delay_s(arrival_us: int, ends_us: npt.NDArray[np.int64]) -> npt.NDArray[np.uint32]:
    """Seconds from each slot end to an arrival, as the trackers keep them (MISSING excluded)."""
    return np.clip((arrival_us - ends_us) // 1_000_000, 0, int(MISSING) - 1).astype(np.uint32)


def jst_day_of_slot(end_us: int) -> dt.date:
    """The JST day a slot belongs to: the slot ending at 24:00 is the day's last (SPEC facts)."""
    return from_epoch_us(end_us - 1).date()


@dataclass
class DutyDay:
    """One duty's figures for one JST day (slots judged so far)."""

    expected: int = 0
    on_time: int = 0
    received_late: int = 0  # arrived after the deadline, before the slot left the window
    never_received: int = 0  # still missing when the slot left the window
    delay_counts: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(len(DELAY_EDGES_S) + 1, dtype=np.int64)
    )

    @property
    def on_time_share(self) -> float | None:
        return self.on_time / self.expected if self.expected else None

    def delay_quantile(self, q: float) -> float | None:
        """Upper edge [s] of the bucket holding quantile ``q`` of first arrivals (inf if beyond)."""
        total = int(self.delay_counts.sum())
        if not total:
            return None
        idx = int(np.searchsorted(np.cumsum(self.delay_counts), q * total))
        return float(DELAY_EDGES_S[idx]) if idx < len(DELAY_EDGES_S) else float("inf")


class SlotTracker:
    """First-arrival delays of one duty, shape (window slots, meters)."""

    def __init__(
        self,
        duty: Duty,
        n_meters: int,
        step_us: int,
        window: int,
        first_end_us: int,
        deadline_s: npt.NDArray[np.int64],
        expected: npt.NDArray[np.bool_],
        phase_us: int = 0,
        memory_us: int = 0,
    ) -> None:
        if window < 2:
            raise ValueError("a tracker window needs at least two slots")
        self.duty = duty
        self.step_us = step_us
        self.phase_us = phase_us  # slot ends are phase + k·step (JST midnights need 15 h)
        self.window = window
        self.deadline_s = deadline_s  # (n,) per meter
        self.expected = expected  # (n,) which meters owe this duty; may change (commands)
        self.delay_s = np.full((window, n_meters), MISSING, dtype=np.uint32)
        self.asked = np.zeros((window, n_meters), dtype=np.uint8)
        self.row_expected = np.zeros((window, n_meters), dtype=bool)
        self.slot_end_us = np.full(window, -1, dtype=np.int64)
        self.judged = np.zeros(window, dtype=bool)
        # earliest time a row can have a re-read due: rows are skipped until then
        self.next_check_us = np.zeros(window, dtype=np.int64)
        self.next_end_us = first_end_us  # the next slot end to open
        self.open_until_us: int | None = None  # no slot ends after this are owed (a run's end)
        self.days: dict[dt.date, DutyDay] = {}
        self.max_deadline_us = int(deadline_s.max(initial=0)) * 1_000_000
        # gaps older than the window, kept (sparse) while the meters still hold the values:
        # (meter, slot end) → when to ask next
        self.memory_us = memory_us
        self.old_gaps: dict[tuple[int, int], int] = {}
        self.gaps_abandoned = 0  # the meter's memory ran out before the value came

    def _row(self, end_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return ((end_us - self.phase_us) // self.step_us) % self.window

    def _place(
        self, end_us: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(row of each slot end, whether it is a slot end of this duty at all, whether its
        slot is in the window now)."""
        rows = self._row(end_us)
        on_grid = np.asarray((end_us - self.phase_us) % self.step_us == 0)
        return rows, on_grid, on_grid & (self.slot_end_us[rows] == end_us)

    def advance(self, now_us: int) -> None:
        """Open slots that have ended by ``now_us`` (and by :attr:`open_until_us`); judge
        those past their deadline."""
        limit = now_us if self.open_until_us is None else min(now_us, self.open_until_us)
        while self.next_end_us <= limit:
            row = int(self._row(np.array([self.next_end_us]))[0])
            if self.slot_end_us[row] >= 0:
                self._evict(row)
            self.slot_end_us[row] = self.next_end_us
            self.delay_s[row] = MISSING
            self.asked[row] = 0
            self.row_expected[row] = self.expected
            self.judged[row] = False
            self.next_check_us[row] = 0
            self.next_end_us += self.step_us
        due = (~self.judged) & (self.slot_end_us >= 0)
        due &= self.slot_end_us + self.max_deadline_us <= now_us
        for judged_row in np.flatnonzero(due):
            self._judge(int(judged_row))

    def record(
        self,
        meter_keys: npt.NDArray[np.int32],
        interval_end_us: npt.NDArray[np.int64],
        arrival_us: int,
    ) -> None:
        """Values of these (meter, slot end) pairs arrived at ``arrival_us``."""
        ends = np.asarray(interval_end_us, dtype=np.int64)
        keys = np.asarray(meter_keys, dtype=np.int64)
        rows, _, held = self._place(ends)
        if self.old_gaps and not held.all():
            for key, end in zip(keys[~held].tolist(), ends[~held].tolist(), strict=True):
                self.old_gaps.pop((key, end), None)
        rows, keys, ends = rows[held], keys[held], ends[held]
        np.minimum.at(self.delay_s, (rows, keys), _delay_s(arrival_us, ends))

    def retract(
        self,
        meter_keys: npt.NDArray[np.int32],
        interval_end_us: npt.NDArray[np.int64],
        arrival_us: int,
    ) -> int:
        """Values :meth:`record` counted at ``arrival_us`` turned out never stored
        (:mod:`kenshin.hes.confirm`): each cell that this arrival made count is missing again,
        re-read at the next look, and the figures of a day already judged are corrected.
        Returns the cells taken back."""
        ends = np.asarray(interval_end_us, dtype=np.int64)
        keys = np.asarray(meter_keys, dtype=np.int64)
        if not len(keys):
            return 0
        delay = _delay_s(arrival_us, ends)
        rows, on_grid, held = self._place(ends)
        # in the window: taken back where this arrival is what counted (not an earlier one)
        r, k = rows[held], keys[held]
        mine = self.delay_s[r, k] == delay[held]
        cells = np.unique((r[mine] << 32) | k[mine])  # one cell in two frames is taken back once
        r, k = cells >> 32, cells & 0xFFFFFFFF
        d = self.delay_s[r, k]
        judged = self.judged[r] & self.row_expected[r, k]
        for row, key, late in zip(
            r[judged].tolist(), k[judged].tolist(), d[judged].tolist(), strict=True
        ):
            self._uncount(int(self.slot_end_us[row]), key, late, evicted=False)
        self.delay_s[r, k] = MISSING
        self.next_check_us[np.unique(r)] = 0  # look at these rows at the next tick
        taken = len(cells)
        # left the window since: counted if its slot was in the window when it arrived (the
        # tracker had opened the slots up to then); a gap the meter may still hold
        newest_then = arrival_us - (arrival_us - self.phase_us) % self.step_us
        gone = on_grid & ~held & (ends <= newest_then)
        gone &= ends > newest_then - self.window * self.step_us
        gone &= np.isin(keys, np.flatnonzero(self.expected))
        pairs = {
            (key, end): late
            for key, end, late in zip(
                keys[gone].tolist(), ends[gone].tolist(), delay[gone].tolist(), strict=True
            )
        }
        for (key, end), late in pairs.items():
            if (key, end) in self.old_gaps:
                continue  # already missing
            self._uncount(end, key, late, evicted=True)
            if self.memory_us:
                self.old_gaps[(key, end)] = 0
            taken += 1
        return taken

    def _uncount(self, end_us: int, key: int, delay_s: int, *, evicted: bool) -> None:
        """Remove one received value from the figures of the judged day it was counted in."""
        day = self.days.get(jst_day_of_slot(end_us))
        if day is None:
            return
        on_time = delay_s <= int(self.deadline_s[key])
        day.on_time -= int(on_time)
        day.delay_counts[int(np.searchsorted(DELAY_EDGES_S, delay_s, side="left"))] -= 1
        if evicted:
            day.received_late -= int(not on_time)
            day.never_received += 1

    def due_rereads(
        self,
        now_us: int,
        policy_delays: tuple[dt.timedelta, ...],
        late_every: dt.timedelta,
        restored: npt.NDArray[np.int64] | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(meter keys, slot ends) still missing whose next re-read time has come; marks them.

        Each missing value is asked for at the policy's delays after its slot end, then every
        ``late_every`` while the slot is in the window; every value missing of a ``restored``
        meter (its power came back: it holds them all) at once.
        """
        keys, ends = self._due_rereads(now_us, policy_delays, late_every)
        if restored is None or not len(restored):
            return keys, ends
        back_keys, back_ends = self.missing_of(restored)
        pairs = np.unique(
            np.stack([np.concatenate([keys, back_keys]), np.concatenate([ends, back_ends])]),
            axis=1,
        )
        return pairs[0], pairs[1]

    def _due_rereads(
        self, now_us: int, policy_delays: tuple[dt.timedelta, ...], late_every: dt.timedelta
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        schedule = _Schedule(policy_delays, late_every)
        live = np.flatnonzero((self.slot_end_us >= 0) & (self.next_check_us <= now_us))
        out_keys, out_ends = [], []
        for row in live:
            end = int(self.slot_end_us[row])
            age = now_us - end
            self.next_check_us[row] = end + schedule.next_after(age)
            if age < schedule.first:
                continue
            asked = self.asked[row]
            want = self.row_expected[row] & (self.delay_s[row] == MISSING)
            want &= schedule.ask_time(asked) <= age
            meters = np.flatnonzero(want)
            if len(meters):
                self.asked[row, meters] = np.minimum(asked[meters].astype(np.int64) + 1, 255)
                out_keys.append(meters)
                out_ends.append(np.full(len(meters), end, dtype=np.int64))
        if not out_keys:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(out_keys), np.concatenate(out_ends)

    def missing_of(
        self, meter_keys: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(meter keys, slot ends) of these meters still missing in the window, whatever their
        re-read schedule (a meter whose power came back holds them all: ask now)."""
        rows = np.flatnonzero(self.slot_end_us >= 0)
        sub = (self.row_expected[rows][:, meter_keys]) & (
            self.delay_s[rows][:, meter_keys] == MISSING
        )
        r, m = np.nonzero(sub)
        return meter_keys[m].astype(np.int64), self.slot_end_us[rows[r]]

    def _day(self, end_us: int) -> DutyDay:
        return self.days.setdefault(jst_day_of_slot(end_us), DutyDay())

    def _judge(self, row: int) -> None:
        exp = self.row_expected[row]
        delay = self.delay_s[row]
        day = self._day(int(self.slot_end_us[row]))
        day.expected += int(exp.sum())
        received = exp & (delay != MISSING)
        day.on_time += int((received & (delay.astype(np.int64) <= self.deadline_s)).sum())
        buckets = np.searchsorted(DELAY_EDGES_S, delay[received].astype(np.int64), side="left")
        day.delay_counts += np.bincount(buckets, minlength=len(DELAY_EDGES_S) + 1)
        self.judged[row] = True

    def _evict(self, row: int) -> None:
        if not self.judged[row]:
            self._judge(row)
        exp = self.row_expected[row]
        delay = self.delay_s[row]
        day = self._day(int(self.slot_end_us[row]))
        late = exp & (delay != MISSING) & (delay.astype(np.int64) > self.deadline_s)
        day.received_late += int(late.sum())
        missing = np.flatnonzero(exp & (delay == MISSING))
        day.never_received += len(missing)
        end = int(self.slot_end_us[row])
        if self.memory_us:
            for key in missing.tolist():
                self.old_gaps[(key, end)] = 0  # ask at the next look

    def due_old_gaps(self, now_us: int, every_us: int) -> tuple[list[int], list[int]]:
        """Gaps beyond the window that are due for another ask while meters still hold them."""
        keys: list[int] = []
        ends: list[int] = []
        for (key, end), next_at in list(self.old_gaps.items()):
            if end + self.memory_us <= now_us:
                del self.old_gaps[(key, end)]
                self.gaps_abandoned += 1
            elif next_at <= now_us:
                self.old_gaps[(key, end)] = now_us + every_us
                keys.append(key)
                ends.append(end)
        return keys, ends


class _Schedule:
    """When the k-th ask for a missing value is due, as µs after its slot end."""

    def __init__(self, delays: tuple[dt.timedelta, ...], late_every: dt.timedelta) -> None:
        us = dt.timedelta(microseconds=1)
        self.delays = np.array([d // us for d in delays], dtype=np.int64)
        self.late = max(1, late_every // us)
        self.last = int(self.delays[-1]) if len(self.delays) else 0
        self.first = int(self.delays[0]) if len(self.delays) else self.late

    def ask_time(self, asked: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
        k = asked.astype(np.int64)
        n = len(self.delays)
        if not n:
            return (k + 1) * self.late
        policy = self.delays[np.minimum(k, n - 1)]
        return np.where(k < n, policy, self.last + (k - n + 1) * self.late)

    def next_after(self, age: int) -> int:
        """The first ask time strictly after ``age``."""
        later = self.delays[self.delays > age]
        if len(later):
            return int(later[0])
        return self.last + ((age - self.last) // self.late + 1) * self.late


def coalesce_ranges(
    meter_keys: npt.NDArray[np.int64], ends_us: npt.NDArray[np.int64], step_us: int
) -> list[tuple[int, int, int]]:
    """Contiguous runs of missing slots per meter: [(meter, first end, last end)], one RESEND
    each."""
    if not len(meter_keys):
        return []
    order = np.lexsort((ends_us, meter_keys))
    keys, ends = meter_keys[order], ends_us[order]
    breaks = np.flatnonzero((np.diff(keys) != 0) | (np.diff(ends) != step_us)) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(keys)]]) - 1
    return [(int(keys[a]), int(ends[a]), int(ends[b])) for a, b in zip(starts, stops, strict=True)]


DAY_PHASE_US = US_PER_DAY - JST_OFFSET_US  # JST midnights are 15:00 UTC


def day_end_us(end_us: int) -> int:
    """Epoch µs of the JST midnight ending the day that ``end_us`` belongs to."""
    local = end_us - 1 + JST_OFFSET_US
    return (local // US_PER_DAY + 1) * US_PER_DAY - JST_OFFSET_US


@dataclass(frozen=True, slots=True)
class DutySummary:
    duty: Duty
    day: dt.date
    expected: int
    on_time: int
    on_time_share: float | None
    received_late: int
    never_received: int
    p50_delay_s: float | None
    p99_delay_s: float | None
    delay_counts: tuple[int, ...]


def summarize(tracker: SlotTracker) -> list[DutySummary]:
    return [
        DutySummary(
            duty=tracker.duty,
            day=day,
            expected=stats.expected,
            on_time=stats.on_time,
            on_time_share=stats.on_time_share,
            received_late=stats.received_late,
            never_received=stats.never_received,
            p50_delay_s=stats.delay_quantile(0.5),
            p99_delay_s=stats.delay_quantile(0.99),
            delay_counts=tuple(int(c) for c in stats.delay_counts),
        )
        for day, stats in sorted(tracker.days.items())
    ]


def a1_deadlines(
    high_voltage: npt.NDArray[np.bool_], policy: CollectionPolicy
) -> npt.NDArray[np.int64]:
    lv = int(policy.a1_deadline_lv.total_seconds())
    hv = int(policy.a1_deadline_hv.total_seconds())
    return np.where(high_voltage, hv, lv).astype(np.int64)
