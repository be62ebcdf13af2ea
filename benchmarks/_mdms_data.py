"""Synthetic data for ``benchmarks/mdms_store.py`` (not timed there).

- :func:`vee_day`: one JST day of 30-min forward values of N meters as the store receives them
  (long rows, unlabelled, slot by slot), register reads at every slot boundary, and the VEE
  history statistics of a few days before (computed from raw history here, not in the timing).
- :func:`month_day_rows`: one day of already-labelled 30-min rows for bulk-loading a store for
  point reads, aligned on the stores' month tables (interval ends in ``(day start, next day
  start]``, the day's own slots, so a month's rows land in that month's table whole).
- :func:`pg_month_sql`: the same kind of rows generated inside PostgreSQL (loading tens of
  millions of rows through COPY would take minutes at the store's ~300 k rows/s).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kenshin.core.quality import Quality, Source
from kenshin.core.schema import READINGS_SCHEMA, REGISTER_READS_SCHEMA, TIMESTAMP
from kenshin.core.timeslots import Resolution, day_slot_ends, jst_midnight, to_epoch_us
from kenshin.mdms.estimate import HistoryStats
from kenshin.mdms.vee import VeeConfig, day_class

SLOTS = 48
SLOT_US = Resolution.MIN30.microseconds
DAY_US = 86_400_000_000
MODULUS = 10**8


def profile(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 48] mean consumption per slot [0.01 kWh counts]: a base load and two peaks."""
    hour = (np.arange(SLOTS) + 0.5) / 2
    shape = 0.4 + np.exp(-((hour - 8) ** 2) / 4) + 1.5 * np.exp(-((hour - 19.5) ** 2) / 6)
    scale = rng.uniform(5, 40, size=(n, 1))
    return (scale * shape).astype(np.float32)


@dataclass
class VeeDay:
    day: dt.date
    start_us: int  # JST midnight starting the day: its slots end in (start, start + 1 day]
    keys: np.ndarray  # the roster's meter keys, sorted (int64)
    readings: pa.Table  # READINGS_SCHEMA, quality RAW, slot by slot (the head-end's order)
    registers: pa.Table  # REGISTER_READS_SCHEMA, a read at every boundary (49 per meter)
    stats: HistoryStats
    lost: int  # intervals not received
    negatives: int
    spikes: int


def history(rng: np.random.Generator, mean: np.ndarray, day: dt.date, days: int) -> HistoryStats:
    """Statistics of ``days`` days of raw history (about 1 in 20 days unusable)."""
    n = len(mean)
    dates = np.arange(np.datetime64(day) - days, np.datetime64(day))
    classes = day_class(dates)
    target = int(day_class([day])[0])
    config = VeeConfig()
    parts = []
    for lo in range(0, n, 50_000):
        part = mean[lo : lo + 50_000]
        raw = rng.poisson(part[:, None, :], size=(len(part), days, SLOTS)).astype(np.int32)
        usable = rng.random((len(part), days)) > 0.05
        parts.append(config.stats(raw, usable, classes, target))
    return HistoryStats(
        recent_max=np.concatenate([p.recent_max for p in parts]),
        like_day=np.concatenate([p.like_day for p in parts]),
        like_days_used=np.concatenate([p.like_days_used for p in parts]),
        day_max=np.concatenate([p.day_max for p in parts]),
    )


def vee_day(
    n: int,
    day: dt.date,
    *,
    history_days: int = 7,
    lost_share: float = 0.03,
    seed: int = 7,
) -> VeeDay:
    rng = np.random.default_rng(seed)
    mean = profile(rng, n)
    stats = history(rng, mean, day, history_days)
    start_us = to_epoch_us(jst_midnight(day))
    ends = day_slot_ends(day, Resolution.MIN30)
    values = rng.poisson(mean).astype(np.int64)
    registers = np.empty((n, SLOTS + 1), dtype=np.int64)
    registers[:, 0] = rng.integers(0, MODULUS // 2, size=n)
    np.cumsum(values, axis=1, out=registers[:, 1:])
    registers[:, 1:] += registers[:, :1]
    registers %= MODULUS
    # corrupted intervals (registers intact): a few spikes and negatives
    spikes = rng.random((n, SLOTS)) < 0.0001
    values[spikes] = values[spikes] * 50 + 500
    negatives = rng.random((n, SLOTS)) < 0.00005
    values[negatives] = -values[negatives] - 1
    lost = rng.random((n, SLOTS)) < lost_share

    # long rows in the head-end's order: slot by slot, meters in key order within a slot
    slot, meter = np.nonzero(~lost.T)
    count = meter.size
    interval_end = ends[slot]
    readings = pa.Table.from_arrays(
        [
            pa.array(meter.astype(np.int32)),
            pa.array(np.full(count, 1, np.uint8)),
            pa.array(np.full(count, 30, np.uint8)),
            pa.array(interval_end).cast(TIMESTAMP),
            pa.array(values[meter, slot].astype(np.int32)),
            pa.array(np.full(count, int(Quality.RAW), np.uint8)),
            pa.array(np.full(count, int(Source.METER_PUSH), np.uint8)),
            pa.array(np.zeros(count, np.uint8)),
            pa.array(np.zeros(count, np.uint16)),
            pa.array(interval_end + 60_000_000 + rng.integers(0, 5_000_000, count)).cast(TIMESTAMP),
        ],
        schema=READINGS_SCHEMA,
    )
    rslot, rmeter = np.nonzero(np.ones((SLOTS + 1, n), dtype=bool))
    read_at = start_us + rslot.astype(np.int64) * SLOT_US
    register_rows = pa.Table.from_arrays(
        [
            pa.array(rmeter.astype(np.int32)),
            pa.array(np.full(rmeter.size, 1, np.uint8)),
            pa.array(read_at).cast(TIMESTAMP),
            pa.array(registers[rmeter, rslot].astype(np.int32)),
            pa.array(np.full(rmeter.size, int(Source.METER_PUSH), np.uint8)),
            pa.array(read_at + 60_000_000).cast(TIMESTAMP),
        ],
        schema=REGISTER_READS_SCHEMA,
    )
    return VeeDay(
        day=day,
        start_us=start_us,
        keys=np.arange(n, dtype=np.int64),
        readings=readings,
        registers=register_rows,
        stats=stats,
        lost=int(lost.sum()),
        negatives=int((negatives & ~lost).sum()),
        spikes=int((spikes & ~lost).sum()),
    )


def month_day_rows(n: int, day_start_us: int, rng: np.random.Generator) -> pa.Table:
    """One day of labelled (VALID, pushed) 30-min rows of ``n`` meters, slot by slot, with
    interval ends ``day_start + k × 30 min`` for k = 1…48: the day's slots."""
    count = n * SLOTS
    ends = day_start_us + np.repeat(np.arange(1, SLOTS + 1, dtype=np.int64), n) * SLOT_US
    return pa.Table.from_arrays(
        [
            pa.array(np.tile(np.arange(n, dtype=np.int32), SLOTS)),
            pa.array(np.full(count, 1, np.uint8)),
            pa.array(np.full(count, 30, np.uint8)),
            pa.array(ends).cast(TIMESTAMP),
            pa.array(rng.integers(0, 200, count, dtype=np.int32)),
            pa.array(np.full(count, int(Quality.VALID), np.uint8)),
            pa.array(np.full(count, int(Source.METER_PUSH), np.uint8)),
            pa.array(np.zeros(count, np.uint8)),
            pa.array(np.zeros(count, np.uint16)),
            pa.array(ends + 60_000_000).cast(TIMESTAMP),
        ],
        schema=READINGS_SCHEMA,
    )


def pg_month_sql(table: str, n: int, month_start: str, days: int) -> str:
    """INSERT of one month of labelled 30-min rows of ``n`` meters into ``table`` (a plain table
    with the readings columns), in the physical order daily appends give: day by day, and within
    a day by meter (``PostgresStore.append`` sorts each batch in index order). The LATERAL
    references force that nesting order without a sort."""
    # slot k ends (k + 1) × 30 min after the month starts: the month's own slots (the value
    # ending at the month's first midnight belongs to the month before)
    return f"""
        INSERT INTO {table}
        SELECT m::integer, 1, 30, t, ((m * 7919 + k * 104729) % 200)::integer, {int(Quality.VALID)},
               {int(Source.METER_PUSH)}, 0, 0, t + interval '60 seconds'
        FROM generate_series(0, {days - 1}) AS d
        CROSS JOIN LATERAL generate_series(0 * d, {n - 1}) AS m
        CROSS JOIN LATERAL generate_series(0 * m, {SLOTS - 1}) AS s
        CROSS JOIN LATERAL (SELECT d * {SLOTS} + s AS k) AS kk
        CROSS JOIN LATERAL (
            SELECT '{month_start}'::timestamptz + (k + 1) * interval '30 minutes' AS t
        ) AS tt
    """
