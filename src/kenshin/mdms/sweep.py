"""The VEE sweep: validate and estimate one window (normally a JST day) of the store, in place.

Reads what the meters sent (every measured row, so duplicates are seen), the register reads and
the channel's recent history, runs :func:`kenshin.mdms.vee.run_vee`, and appends a new version
(SPEC S2: never an update) for every cell whose outcome differs from its current version:
estimates, SUSPECT and outage labels, MISSING placeholders. Cells that are simply valid stay as
the ingest stored them (already labelled VALID, :func:`label_on_ingest`), so a day of good data
costs no extra rows. A manual edit stands unless the meter sent a newer value after it.
Every slot still missing goes to the store's gap list: the re-read requests for the head-end.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kenshin.core.batches import readings_table
from kenshin.core.channels import Channel
from kenshin.core.meterspec import Generation, MeterClass, meter_spec
from kenshin.core.quality import Quality, Rule, Source
from kenshin.core.schema import REGISTER_READS_SCHEMA, TIMESTAMP
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.mdms import versions
from kenshin.mdms.cells import cells_of, roster_index
from kenshin.mdms.estimate import HistoryStats
from kenshin.mdms.history import DayPlane, HistoryCache
from kenshin.mdms.store import SweepStore
from kenshin.mdms.vee import VeeConfig, VeeInput, VeeResult, run_vee
from kenshin.mdms.vee_rules import Densified, densify, densify_registers

log = logging.getLogger(__name__)

_ENERGY = (Channel.ACTIVE_FORWARD, Channel.ACTIVE_REVERSE)


@dataclass(frozen=True, slots=True)
class SupplyWindow:
    """A known outage or remote disconnect of one meter: slots ending in ``(start, end]``."""

    meter_key: int
    start_us: int
    end_us: int
    kind: str = "outage"  # or "disconnect"


@dataclass
class SweepReport:
    day: dt.date
    channel: Channel = Channel.ACTIVE_FORWARD
    resolution: Resolution = Resolution.MIN30
    meters: int = 0
    cells: int = 0
    written: int = 0
    gaps: int = 0
    quality: dict[str, int] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        labels = ", ".join(f"{k} {v:,}" for k, v in self.quality.items() if v)
        return (
            f"{self.day} {self.channel.label} {int(self.resolution)}-min: {self.meters:,} "
            f"meters, {self.cells:,} slots ({labels}); "
            f"{self.written:,} new versions, {self.gaps:,} gaps to re-read"
        )


def label_on_ingest(readings: pa.Table) -> pa.Table:
    """Label arriving measured rows: VALID, or SUSPECT with NEGATIVE on a forward-only energy
    channel (the rules that need one row only; the sweep applies the rest per day)."""
    if readings.num_rows == 0:
        return readings
    quality = readings.column("quality").to_numpy()
    raw = quality == Quality.RAW
    labelled = np.where(raw, np.uint8(Quality.VALID), quality).astype(np.uint8, copy=False)
    index = readings.schema.get_field_index
    value = readings.column("value")
    lowest = pc.min(value).as_py()  # None when every value is NULL
    # a negative value is rare (a meter's fault): the row-wise test only when there is one
    if lowest is None or lowest >= 0:
        return readings.set_column(index("quality"), "quality", pa.array(labelled))
    energy = np.isin(readings.column("channel").to_numpy(), [int(c) for c in _ENERGY])
    negative = raw & energy & (value.fill_null(0).to_numpy() < 0)
    labelled[negative] = Quality.SUSPECT
    flags = readings.column("failed_rule").to_numpy() | np.where(
        negative, np.uint16(Rule.NEGATIVE), np.uint16(0)
    )
    readings = readings.set_column(index("quality"), "quality", pa.array(labelled))
    return readings.set_column(
        index("failed_rule"), "failed_rule", pa.array(flags.astype(np.uint16))
    )


@dataclass
class DayBatch:
    """What :func:`validate_day_batch` made of one day's rows."""

    readings: pa.Table  # the rows as received, labelled, then one estimate row per filled cell
    result: VeeResult
    received: int


def dense_day(
    readings: pa.Table,
    registers: pa.Table,
    keys: npt.NDArray[np.int64],
    start_us: int,
    resolution: Resolution,
) -> tuple[Densified, Densified]:
    """A day's reading rows (meter_key, interval_end, value, tx_time) and register reads
    (meter_key, read_at, register[, tx_time]) as dense arrays over the sorted roster ``keys``;
    the values keep the cell of every row (``Densified.row_cell``). Meters off the roster are
    dropped."""
    n = len(keys)

    def values() -> Densified:
        index, known = roster_index(keys, readings.column("meter_key"))
        return densify(
            np.where(known, index, -1),
            _us(readings.column("interval_end")),
            readings.column("value").fill_null(0).to_numpy(),
            _us(readings.column("tx_time")),
            window_start_us=start_us,
            resolution=resolution,
            n_meters=n,
            keep_row_cells=True,
        )

    def reads() -> Densified:
        index, known = roster_index(keys, registers.column("meter_key"))
        tx = (
            _us(registers.column("tx_time"))
            if "tx_time" in registers.column_names
            else np.zeros(registers.num_rows, np.int64)  # the store's window: latest already
        )
        return densify_registers(
            np.where(known, index, -1),
            _us(registers.column("read_at")),
            registers.column("register").fill_null(0).to_numpy(),
            tx,
            window_start_us=start_us,
            resolution=resolution,
            n_meters=n,
        )

    # values and register reads are independent: one thread each (numpy releases the GIL)
    with ThreadPoolExecutor(2, thread_name_prefix="densify") as pool:
        dense_job, regs_job = pool.submit(values), pool.submit(reads)
        return dense_job.result(), regs_job.result()


def validate_day_batch(
    readings: pa.Table,
    registers: pa.Table,
    keys: npt.NDArray[np.int64],
    day: dt.date,
    *,
    now_us: int,
    channel: Channel = Channel.ACTIVE_FORWARD,
    resolution: Resolution = Resolution.MIN30,
    config: VeeConfig | None = None,
    stats: HistoryStats | None = None,
) -> DayBatch:
    """VEE of a whole day that arrives at once (a bulk load, another head-end's day file):
    the received rows are stored as they are, each labelled with its cell's outcome (a value
    that failed is SUSPECT with its rule; its estimate follows as a new version), so valid data
    is not copied into new rows. ``keys``: the sorted roster whose every meter is expected."""
    cfg = config or VeeConfig(forward_only=channel in _ENERGY)
    start, _ = day_window(day)
    dense, regs = dense_day(readings, registers, keys, start, resolution)
    result = run_vee(
        VeeInput(
            values=dense.values,
            present=dense.present,
            registers=regs.values,
            register_present=regs.present,
            resolution=resolution,
            structure_flags=dense.flags,
            stats=stats,
        ),
        cfg,
    )
    cell = dense.row_cell
    assert cell is not None
    # a received value whose cell was estimated failed a rule: it stays, labelled SUSPECT
    row_label = result.quality.ravel().copy()
    row_label[row_label == Quality.ESTIMATED] = Quality.SUSPECT
    quality = np.take(row_label, cell, mode="wrap")  # one gather per column; -1 fixed below
    flags = np.take(result.failed_rule.ravel(), cell, mode="wrap")
    off_grid = np.flatnonzero(cell < 0)
    if off_grid.size:
        quality[off_grid] = Quality.SUSPECT
        flags[off_grid] = Rule.STRUCTURE_ALIGNMENT
    index_of = readings.schema.get_field_index
    labelled = readings.set_column(index_of("quality"), "quality", pa.array(quality))
    labelled = labelled.set_column(index_of("failed_rule"), "failed_rule", pa.array(flags))
    all_quality = result.quality.ravel()
    filled = np.flatnonzero(
        (all_quality == Quality.ESTIMATED)
        | (all_quality == Quality.MISSING)
        | (np.isin(all_quality, [Quality.OUTAGE, Quality.DISCONNECTED]) & ~dense.present.ravel())
    )
    s = resolution.slots_per_day
    estimates = readings_table(
        keys[filled // s],
        int(channel),
        int(resolution),
        start + (filled % s + 1) * resolution.microseconds,
        result.value.ravel()[filled],
        all_quality[filled] != Quality.MISSING,
        all_quality[filled],
        int(Source.ESTIMATE),
        result.method.ravel()[filled],
        result.failed_rule.ravel()[filled],
        now_us,
    )
    return DayBatch(
        pa.concat_tables([versions.conform_to(labelled, estimates.schema), estimates]),
        result,
        dense.received,
    )


def expected_meters(
    roster: pa.Table, channel: Channel, resolution: Resolution, *, send_15min: bool = False
) -> npt.NDArray[np.int64]:
    """Sorted keys of the meters expected to deliver ``channel`` at ``resolution``: those whose
    generation and class record it (SPEC M1–M4) and, for 5-min values, the A2 sample.

    15-min values are expected only when the utility's soft switch sends them (``send_15min``,
    SPEC A5): by default next-generation meters only record them. A meter switched on its own
    (``SET_SOFT_SWITCH``) is not known here; its values are stored as received, unswept."""
    keys = roster.column("meter_key").to_numpy().astype(np.int64)
    if resolution is Resolution.MIN30 and channel in _ENERGY:
        return np.sort(keys)  # every meter records 30-min energy (SPEC A1)
    if resolution is Resolution.MIN15 and not send_15min:
        return np.empty(0, dtype=np.int64)
    generation = roster.column("generation").to_numpy()
    meter_class = roster.column("meter_class").to_numpy()
    wanted = np.zeros(len(keys), dtype=bool)
    kinds = np.unique(generation.astype(np.int64) * 256 + meter_class.astype(np.int64))
    for gen, cls in zip((kinds // 256).tolist(), (kinds % 256).tolist(), strict=True):
        try:
            spec = meter_spec(Generation(gen), MeterClass(cls))
        except ValueError:
            continue
        if spec.records(channel, resolution):
            wanted |= (generation == gen) & (meter_class == cls)
    if resolution is Resolution.MIN5:
        wanted &= roster.column("sampled_5min").fill_null(False).to_numpy(zero_copy_only=False)
    return np.sort(keys[wanted])


def day_window(day: dt.date) -> tuple[int, int]:
    """Epoch µs of the JST day's start and end: its slots end in ``(start, end]``."""
    start = to_epoch_us(dt.datetime.combine(day, dt.time(), tzinfo=JST))
    return start, start + 86_400_000_000


# cells (meters × slots of the day) swept together: the sweep's arrays take ~170 bytes a cell
# (measured: 1.7 GB for 200,000 meters × 48 slots), so a big fleet is swept in blocks of this
# many cells — 100,000 meters at 30 min, 16,666 at 5 min
SWEEP_BLOCK_CELLS = 4_800_000
SWEEP_BLOCK_METERS = SWEEP_BLOCK_CELLS // Resolution.MIN30.slots_per_day


def run_sweep(
    store: SweepStore,
    day: dt.date,
    *,
    channel: Channel = Channel.ACTIVE_FORWARD,
    resolution: Resolution = Resolution.MIN30,
    config: VeeConfig | None = None,
    now_us: int,
    supply_windows: Sequence[SupplyWindow] = (),
    clock_offsets_s: dict[int, float] | None = None,
    history_days: int | None = None,
    meters: npt.NDArray[np.int64] | None = None,
    history: HistoryCache | None = None,
    send_15min: bool = False,
    block_meters: int | None = None,
) -> SweepReport:
    """Sweep one JST day of one channel for the meters expected to send it (``meters``;
    default :func:`expected_meters` of the roster, with the utility's soft switch
    ``send_15min``) — see the module doc.

    ``history`` keeps day planes between daily sweeps (:mod:`kenshin.mdms.history`); without it
    the look-back is read from the store each time. ``block_meters``: meters swept together
    (default: ``SWEEP_BLOCK_CELLS`` cells' worth), so the sweep's memory does not grow with the
    fleet."""
    cfg = config or VeeConfig(forward_only=channel in _ENERGY)
    keys = (
        expected_meters(store.read_meters(), channel, resolution, send_15min=send_15min)
        if meters is None
        else np.unique(np.asarray(meters, dtype=np.int64))
    )
    n, s = len(keys), resolution.slots_per_day
    start, end = day_window(day)
    report = SweepReport(day=day, channel=channel, resolution=resolution, meters=n, cells=n * s)
    if n == 0:
        return report
    cache = HistoryCache() if history is None else history
    lookback = cfg.lookback_days if history_days is None else history_days
    gap_tables, planes = [], []
    quality_counts: Counter[Quality] = Counter()
    rule_counts: Counter[Rule] = Counter()
    if block_meters is None:
        block_meters = max(1, SWEEP_BLOCK_CELLS // s)
    for first in range(0, n, block_meters):
        part = slice(first, min(n, first + block_meters))
        block = _sweep_block(
            store,
            keys,
            part,
            cache,
            day=day,
            channel=channel,
            resolution=resolution,
            config=cfg,
            now_us=now_us,
            lookback_days=lookback,
            supply_windows=supply_windows,
            clock_offsets_s=clock_offsets_s,
            whole=n <= block_meters,
        )
        report.written += block.written
        gap_tables.append(block.gaps)
        planes.append(block.plane)
        quality_counts.update(block.quality_counts)
        rule_counts.update(block.rule_counts)
    if history is not None:  # the day as the store now holds it, for the next days' sweeps
        history.put(channel, resolution, day, DayPlane.concat(planes))
    gaps = pa.concat_tables(gap_tables)
    store.replace_gaps(channel, resolution, start, end, gaps)
    report.gaps = gaps.num_rows
    report.quality = {q.label: c for q, c in quality_counts.items()}
    report.rules = {r.label: c for r, c in rule_counts.items() if c}
    log.info("VEE sweep %s", report.summary())
    return report


@dataclass
class _Block:
    written: int
    gaps: pa.Table
    plane: DayPlane
    quality_counts: dict[Quality, int]
    rule_counts: dict[Rule, int]


def _sweep_block(
    store: SweepStore,
    roster: npt.NDArray[np.int64],
    part: slice,
    cache: HistoryCache,
    *,
    day: dt.date,
    channel: Channel,
    resolution: Resolution,
    config: VeeConfig,
    now_us: int,
    lookback_days: int,
    supply_windows: Sequence[SupplyWindow],
    clock_offsets_s: dict[int, float] | None,
    whole: bool,
) -> _Block:
    """Sweep the meters ``roster[part]`` (all of them when ``whole``): meters are independent,
    so a big fleet is swept in blocks whose arrays fit in memory."""
    keys = roster[part]
    n, s = len(keys), resolution.slots_per_day
    start, end = day_window(day)
    meters = None if whole else (int(keys[0]), int(keys[-1]))

    # one plain scan of the day's rows; the reading rules run in numpy (most cells hold one row)
    rows = store.read_window_versions(channel, resolution, start, end, meters)
    several = versions.cells_with_several_rows(rows, resolution.microseconds) if len(rows) else None
    measured = versions.measured_rows(rows, resolution.microseconds, several)
    registers = versions.latest_register_reads(
        store.read_register_rows(channel, start, end, meters), resolution.microseconds
    )
    dense, regs = dense_day(measured, registers, keys, start, resolution)
    outage, disconnected = _supply_masks(keys, supply_windows, start, resolution, s)
    stats = cache.stats(
        store,
        roster,
        day,
        channel,
        resolution,
        lookback_days=lookback_days,
        like_count=config.like_days,
        now_us=now_us,
        rows=None if whole else part,
    )
    result = run_vee(
        VeeInput(
            values=dense.values,
            present=dense.present,
            registers=regs.values,
            register_present=regs.present,
            resolution=resolution,
            outage=outage,
            disconnected=disconnected,
            structure_flags=dense.flags,
            clock_offset_s=_offsets(keys, clock_offsets_s),
            stats=stats,
        ),
        config,
    )

    # what each cell should be, against what the store holds now: compared row by row (one
    # current row per cell that holds any), not by laying six columns out over every cell
    current = versions.current_cells(rows, resolution.microseconds, several)
    row_cell, row_kept = cells_of(current, keys, start, resolution)
    at = row_cell[row_kept]
    r_value_col = current.column("value")
    r_present = r_value_col.is_valid().to_numpy(zero_copy_only=False)[row_kept]
    r_value = np.asarray(r_value_col.fill_null(0).to_numpy(), np.int64)[row_kept]
    r_quality = current.column("quality").to_numpy()[row_kept]
    r_source = current.column("source").to_numpy()[row_kept]
    r_method = current.column("method").fill_null(0).to_numpy()[row_kept]
    r_rule = current.column("failed_rule").fill_null(0).to_numpy()[row_kept]

    quality = result.quality.ravel()
    method = result.method.ravel()
    flags = result.failed_rule.ravel()
    value = result.value.ravel()
    missing = quality == Quality.MISSING
    # estimates, placeholders for what is missing, and outage/disconnect labels where the
    # meter sent nothing are the MDMS's own rows; the rest keep the source of what was sent
    filled = (quality == Quality.ESTIMATED) | missing
    filled |= ((quality == Quality.OUTAGE) | (quality == Quality.DISCONNECTED)) & ~(
        dense.present.ravel()
    )
    source = np.where(filled, np.uint8(Source.ESTIMATE), np.uint8(Source.METER_PUSH))
    source[at] = np.where(
        filled[at],
        Source.ESTIMATE,
        np.where(versions.is_measured(r_source), r_source, Source.METER_PUSH),
    )
    target_present = ~missing
    same = (
        (r_present == target_present[at])
        & (~target_present[at] | (r_value == value[at]))
        & (r_quality == quality[at])
        & (r_source == source[at])
        & (r_method == method[at])
        & (r_rule == flags[at])
    )
    # a manual edit stands unless the meter sent a newer value after it (looked up only when
    # there is an edit: most days have none)
    edited = r_quality == Quality.EDITED
    if edited.any():
        latest_measured = _latest_per_cell(dense, _us(measured.column("tx_time")), n * s)
        edited &= latest_measured[at] <= _us(current.column("tx_time"))[row_kept]
    write = np.ones(n * s, dtype=bool)  # a cell without any row is always written
    write[at] = ~same & ~edited
    cells = np.flatnonzero(write)
    if cells.size:
        rows = readings_table(
            keys[cells // s],
            int(channel),
            int(resolution),
            start + (cells % s + 1) * resolution.microseconds,
            value[cells],
            target_present[cells],
            quality[cells],
            source[cells],
            method[cells],
            flags[cells],
            now_us,
        )
        store.append(rows, _EMPTY_REGISTERS)
    # the block as the store now holds it, for the next days' sweeps (edits stand)
    kept_edit = at[edited]
    plane_value, plane_present, plane_quality = value, target_present, quality
    if kept_edit.size:
        plane_value, plane_present, plane_quality = (
            value.copy(),
            target_present.copy(),
            quality.copy(),
        )
        plane_value[kept_edit] = r_value[edited]
        plane_present[kept_edit] = r_present[edited]
        plane_quality[kept_edit] = r_quality[edited]
    plane = DayPlane.of(
        keys,
        plane_value.reshape(n, s),
        plane_present.reshape(n, s),
        plane_quality.reshape(n, s),
        now_us,
    )
    gaps = result.gaps
    gap_table = pa.Table.from_arrays(
        [
            pa.array(keys[gaps[:, 0]].astype(np.int32)),
            pa.array(np.full(len(gaps), int(channel), np.uint8)),
            pa.array(np.full(len(gaps), int(resolution), np.uint8)),
            pa.array(start + (gaps[:, 1] + 1) * resolution.microseconds).cast(TIMESTAMP),
            pa.array(np.full(len(gaps), now_us, np.int64)).cast(TIMESTAMP),
        ],
        schema=versions.GAPS_SCHEMA,
    )
    return _Block(int(cells.size), gap_table, plane, result.quality_counts, result.rule_counts)


_EMPTY_REGISTERS = REGISTER_READS_SCHEMA.empty_table()


def _us(column: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.int64]:
    return np.asarray(column.cast(pa.int64()).fill_null(0).to_numpy(), dtype=np.int64)


def _latest_per_cell(
    dense: Densified, tx_us: npt.NDArray[np.int64], cells: int
) -> npt.NDArray[np.int64]:
    """The newest transaction time of what the meters sent for each cell (-1: nothing)."""
    latest = np.full(cells, -1, np.int64)
    cell = dense.row_cell
    assert cell is not None
    on_grid = cell >= 0
    np.maximum.at(latest, cell[on_grid], tx_us[on_grid])
    return latest


def _offsets(
    keys: npt.NDArray[np.int64], offsets: dict[int, float] | None
) -> npt.NDArray[np.float64] | None:
    """Meter clock − head-end clock [s] per meter, as found at collection (0 when unknown)."""
    if not offsets:
        return None
    out = np.zeros(len(keys), np.float64)
    for key, seconds in offsets.items():
        row = int(np.searchsorted(keys, key))
        if row < len(keys) and keys[row] == key:
            out[row] = seconds
    return out


def _supply_masks(
    keys: npt.NDArray[np.int64],
    windows: Sequence[SupplyWindow],
    start: int,
    resolution: Resolution,
    s: int,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    outage = np.zeros((len(keys), s), bool)
    disconnected = np.zeros((len(keys), s), bool)
    ends = start + (np.arange(s) + 1) * resolution.microseconds
    for w in windows:
        row = int(np.searchsorted(keys, w.meter_key))
        if row >= len(keys) or keys[row] != w.meter_key:
            continue
        mask = (ends > w.start_us) & (ends <= w.end_us)
        (disconnected if w.kind == "disconnect" else outage)[row] |= mask
    return outage, disconnected


__all__ = [
    "SupplyWindow",
    "SweepReport",
    "day_window",
    "label_on_ingest",
    "run_sweep",
]
