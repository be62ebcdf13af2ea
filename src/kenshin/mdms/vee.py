"""Validation, estimation and editing (VEE) of interval data: one channel, one resolution, one
window of whole slots (normally a JST day), N meters at once. Pure numpy, no database.

Pipeline (the store/ingest calls it; values are never overwritten, results are new versions, S2)::

    long rows ──densify──► values/present [N, S] ─┐
    register reads ──densify_registers──► [N, S+1] ┼─run_vee─► value, quality, method,
    outage / disconnect / clock offsets ───────────┤           failed_rule [N, S], gaps
    history ──history_stats (or SQL)──► stats ─────┘

Rules (``Rule`` flags in ``failed_rule``): NEGATIVE and SPIKE fail a value (it is estimated);
SUM_CHECK, ZERO_RUN, TIME_TOLERANCE and HIGH_LOW make it SUSPECT (kept as received); ROLLOVER and
the structure flags are informational; slots in a known outage or disconnect are labelled OUTAGE /
DISCONNECTED (0 when not received), are not gaps and never serve as interpolation endpoints.
Estimation: see :mod:`kenshin.mdms.estimate`. Failed values that cannot be estimated stay SUSPECT
with the received value; missing slots that cannot be estimated stay MISSING and are listed in
``gaps``, the re-read list for the head-end.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kenshin.core.quality import EstimationMethod, Quality, Rule
from kenshin.core.timeslots import Resolution
from kenshin.errors import InvalidInput, InvalidSetting
from kenshin.mdms.daytypes import DayClass, day_class
from kenshin.mdms.estimate import HistoryStats, estimate_gaps, history_stats
from kenshin.mdms.vee_rules import (
    BoolArray,
    Densified,
    FlagArray,
    Int64Array,
    densify,
    densify_registers,
    high_low,
    negative,
    spike,
    sum_check,
    time_tolerance,
    zero_run,
)

__all__ = [
    "DayClass",
    "Densified",
    "HistoryStats",
    "VeeConfig",
    "VeeInput",
    "VeeResult",
    "day_class",
    "densify",
    "densify_registers",
    "history_stats",
    "run_vee",
]


@dataclass(frozen=True, slots=True)
class VeeConfig:
    """VEE thresholds; utilities differ, so every one is a setting. Counts are register counts
    (the defaults assume 0.01 kWh counts and 30-min values of a low-voltage meter)."""

    max_interpolation_minutes: int = 120  # longer gaps use like days
    like_days: int = 4  # like days averaged (3–5 in practice)
    like_days_min: int = 1  # fewer usable like days → no like-day estimate
    lookback_days: int = 28  # how far back like days and maxima are taken from
    spike_factor: float = 5.0  # SPIKE: value > factor × recent max of the slot
    spike_floor: int = 100  # [counts per interval] ... and never below this
    high_low_factor: float = 3.0  # HIGH_LOW: day total > factor × recent max day total
    high_low_floor: int = 2000  # [counts per day] ... and never below this
    zero_run_minutes: int = 1440  # ZERO_RUN: this long at zero while connected
    time_tolerance_s: float = 60.0  # TIME_TOLERANCE: allowed clock offset [s]
    register_digits: int = 8  # SPEC M5: 8-digit registers roll over at 10**8
    forward_only: bool = True  # NEGATIVE applies (energy registers only count up)

    def __post_init__(self) -> None:
        checks = [
            (self.max_interpolation_minutes >= 0, "max_interpolation_minutes must be ≥ 0"),
            (1 <= self.like_days <= 10, "like_days must be 1–10"),
            (1 <= self.like_days_min <= self.like_days, "like_days_min must be 1–like_days"),
            (self.lookback_days >= 1, "lookback_days must be ≥ 1"),
            (self.spike_factor > 0, "spike_factor must be > 0"),
            (self.spike_floor >= 0, "spike_floor must be ≥ 0"),
            (self.high_low_factor > 0, "high_low_factor must be > 0"),
            (self.high_low_floor >= 0, "high_low_floor must be ≥ 0"),
            (self.zero_run_minutes >= 1, "zero_run_minutes must be ≥ 1"),
            (self.time_tolerance_s >= 0, "time_tolerance_s must be ≥ 0"),
            (1 <= self.register_digits <= 9, "register_digits must be 1–9"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidSetting(f"VEE: {message}")

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> VeeConfig:
        """From a flat mapping such as a TOML ``[vee]`` table; unknown keys are refused."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for raw_key, value in settings.items():
            key = str(raw_key).replace("-", "_")
            if key not in fields:
                raise InvalidSetting(
                    f"VEE: unknown setting {raw_key!r}; known: {', '.join(sorted(fields))}"
                )
            values[key] = _coerce(key, fields[key].default, value)
        return cls(**values)

    @property
    def modulus(self) -> int:
        return int(10**self.register_digits)

    def slots(self, minutes: int, resolution: Resolution) -> int:
        """A duration as a count of whole slots of ``resolution`` (rounded down, at least 1)."""
        return max(1, minutes // int(resolution))

    def stats(
        self,
        history: npt.NDArray[np.integer],
        usable: BoolArray,
        history_day_class: npt.NDArray[np.integer],
        target_day_class: int,
    ) -> HistoryStats:
        """:func:`history_stats` with this configuration's like days and look-back."""
        return history_stats(
            history,
            usable,
            history_day_class,
            target_day_class,
            like_days=self.like_days,
            lookback_days=self.lookback_days,
        )


def _coerce(key: str, default: Any, value: Any) -> Any:
    """The setting's value in the type of its default, refusing what does not fit."""
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise InvalidSetting(f"VEE: setting {key!r} must be {kind.__name__}, got {value!r}")


@dataclass(frozen=True, slots=True)
class VeeInput:
    """One channel, one resolution, one window of S whole slots for N meters (dense arrays)."""

    values: Int64Array  # [N, S] interval values [counts]
    present: BoolArray  # [N, S] received
    registers: Int64Array  # [N, S+1] register reads at slot boundaries, read 0 at window start
    register_present: BoolArray  # [N, S+1]
    resolution: Resolution = Resolution.MIN30
    outage: BoolArray | None = None  # [N, S] known outage (SPEC R1)
    disconnected: BoolArray | None = None  # [N, S] known remote disconnect
    clock_offset_s: npt.NDArray[np.floating] | None = None  # [N] or [N, S] meter − head-end [s]
    structure_flags: FlagArray | None = None  # [N, S] from densify
    stats: HistoryStats | None = None  # None: no history (no spike check, no like days)

    def check(self) -> tuple[int, int]:
        """(N, S) after checking that every array has its expected shape."""
        n, s = np.shape(self.values)
        expected = {
            "present": (n, s),
            "registers": (n, s + 1),
            "register_present": (n, s + 1),
            "outage": (n, s),
            "disconnected": (n, s),
            "structure_flags": (n, s),
        }
        for name, shape in expected.items():
            array = getattr(self, name)
            if array is not None and np.shape(array) != shape:
                raise InvalidInput(f"VEE: {name} has shape {np.shape(array)}, expected {shape}")
        if self.clock_offset_s is not None and np.shape(self.clock_offset_s) not in ((n,), (n, s)):
            raise InvalidInput(f"VEE: clock_offset_s must have shape ({n},) or ({n}, {s})")
        if self.stats is not None and np.shape(self.stats.recent_max) != (n, s):
            raise InvalidInput(f"VEE: stats are for shape {np.shape(self.stats.recent_max)}")
        return n, s


@dataclass(frozen=True, slots=True)
class VeeResult:
    """Final value, quality, method and failed rules of every slot, and the re-read list."""

    value: Int64Array  # [N, S] [counts]
    quality: npt.NDArray[np.uint8]  # [N, S] Quality
    method: npt.NDArray[np.uint8]  # [N, S] EstimationMethod
    failed_rule: FlagArray  # [N, S] Rule flags
    gaps: Int64Array  # [G, 2] (meter index, slot index) still missing: re-read these
    rule_counts: dict[Rule, int]  # cells carrying each rule flag
    quality_counts: dict[Quality, int]


BLOCK_METERS = 16_384  # rows per block: small temporaries stay in cache and in malloc's heap


def run_vee(
    day: VeeInput,
    config: VeeConfig | None = None,
    *,
    block_meters: int = BLOCK_METERS,
    workers: int | None = None,
) -> VeeResult:
    """Validate and estimate one window of dense values (see the module docstring).

    Meters are independent, so the work runs in blocks of ``block_meters`` rows: whole-array
    temporaries of a million meters cost more in fresh memory than in arithmetic. Blocks run on
    ``workers`` threads (default: one per core, at most 4): numpy releases the GIL in the heavy
    operations, so a 2-core machine does the work in a little over half the time.
    """
    cfg = config or VeeConfig()
    n, s = day.check()
    value = np.empty((n, s), dtype=np.int64)
    quality = np.empty((n, s), dtype=np.uint8)
    method = np.empty((n, s), dtype=np.uint8)
    flags = np.empty((n, s), dtype=np.uint16)
    size = max(1, block_meters)
    blocks = [slice(lo, min(n, lo + size)) for lo in range(0, n, size)]

    def one(rows: slice) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        value[rows], quality[rows], method[rows], flags[rows] = _run_block(_rows(day, rows), cfg)
        return (
            np.bincount(flags[rows].ravel(), minlength=1 << 16),
            np.bincount(quality[rows].ravel(), minlength=256),
        )

    threads = min(len(blocks), workers or min(4, os.cpu_count() or 1))
    if threads > 1:
        with ThreadPoolExecutor(threads, thread_name_prefix="vee") as pool:
            counts = list(pool.map(one, blocks))
    else:
        counts = [one(rows) for rows in blocks]
    per_flag_set = np.zeros(1 << 16, dtype=np.int64)
    per_quality = np.zeros(256, dtype=np.int64)
    for flag_counts, quality_counts in counts:
        per_flag_set += flag_counts
        per_quality += quality_counts
    gaps = np.argwhere(quality == Quality.MISSING).astype(np.int64)
    codes = np.arange(1 << 16)
    return VeeResult(
        value=value,
        quality=quality,
        method=method,
        failed_rule=flags,
        gaps=gaps,
        rule_counts={
            rule: int(per_flag_set[(codes & rule) != 0].sum())
            for rule in Rule
            if rule is not Rule.NONE
        },
        quality_counts={q: int(per_quality[q]) for q in Quality},
    )


def _rows(day: VeeInput, rows: slice) -> VeeInput:
    """The same input for a block of meters (views, no copies)."""

    def cut(array: Any) -> Any:
        return None if array is None else np.asarray(array)[rows]

    stats = day.stats
    return dataclasses.replace(
        day,
        values=cut(day.values),
        present=cut(day.present),
        registers=cut(day.registers),
        register_present=cut(day.register_present),
        outage=cut(day.outage),
        disconnected=cut(day.disconnected),
        clock_offset_s=cut(day.clock_offset_s),
        structure_flags=cut(day.structure_flags),
        stats=None
        if stats is None
        else HistoryStats(
            cut(stats.recent_max),
            cut(stats.like_day),
            cut(stats.like_days_used),
            cut(stats.day_max),
        ),
    )


def _run_block(
    day: VeeInput, cfg: VeeConfig
) -> tuple[Int64Array, npt.NDArray[np.uint8], npt.NDArray[np.uint8], FlagArray]:
    """(value, quality, method, failed_rule) of a block of meters."""
    n, s = np.shape(day.values)
    values = np.asarray(day.values, dtype=np.int64)
    present = np.asarray(day.present, dtype=bool)
    registers = np.asarray(day.registers, dtype=np.int64)
    register_present = np.asarray(day.register_present, dtype=bool)
    outage = _mask(day.outage, n, s)
    disconnected = _mask(day.disconnected, n, s)
    blocked = outage | disconnected
    live = present & ~blocked
    stats = day.stats or HistoryStats.empty(n, s)
    flags = (
        np.zeros((n, s), dtype=np.uint16)
        if day.structure_flags is None
        else np.array(day.structure_flags, dtype=np.uint16)
    )

    neg = negative(values, live) if cfg.forward_only else np.zeros((n, s), dtype=bool)
    spk = spike(values, live & ~neg, stats.recent_max, cfg.spike_factor, cfg.spike_floor)
    failed = neg | spk
    mismatch, rollover = sum_check(values, present, registers, register_present, cfg.modulus)
    zeros = zero_run(values, live, cfg.slots(cfg.zero_run_minutes, day.resolution))
    clock = time_tolerance(present, day.clock_offset_s, cfg.time_tolerance_s)
    high = high_low(values, live & ~failed, stats.day_max, cfg.high_low_factor, cfg.high_low_floor)
    missing = ~present & ~blocked
    for mask, rule in (
        (neg, Rule.NEGATIVE),
        (spk, Rule.SPIKE),
        (mismatch, Rule.SUM_CHECK),
        (rollover, Rule.ROLLOVER),
        (zeros, Rule.ZERO_RUN),
        (clock, Rule.TIME_TOLERANCE),
        (high, Rule.HIGH_LOW),
        (missing, Rule.MISSING),
        (outage, Rule.OUTAGE),
        (disconnected, Rule.DISCONNECT),
    ):
        np.bitwise_or(flags, np.uint16(rule), out=flags, where=mask)

    value = np.where(present, values, 0)
    quality = np.full((n, s), Quality.VALID, dtype=np.uint8)
    quality[mismatch | zeros | clock | high | failed] = Quality.SUSPECT  # failed: until estimated
    quality[missing] = Quality.MISSING
    method = np.zeros((n, s), dtype=np.uint8)

    fill = estimate_gaps(
        missing | failed,
        live & ~failed & ~mismatch,
        blocked,
        values,
        registers,
        register_present,
        stats.like_day,
        stats.like_days_used >= cfg.like_days_min,
        max_gap_slots=cfg.slots(cfg.max_interpolation_minutes, day.resolution),
        modulus=cfg.modulus,
    )
    done = fill.method != EstimationMethod.NONE
    rows, cols = fill.row[done], fill.col[done]
    value[rows, cols] = fill.value[done]
    quality[rows, cols] = Quality.ESTIMATED
    method[rows, cols] = fill.method[done]
    quality[outage] = Quality.OUTAGE
    quality[disconnected] = Quality.DISCONNECTED  # a switched-off supply explains more than dark

    return value, quality, method, flags


def _mask(array: BoolArray | None, n: int, s: int) -> BoolArray:
    return np.zeros((n, s), dtype=bool) if array is None else np.asarray(array, dtype=bool)
