"""Re-read and poll answers that repeat what is stored are not written (SPEC S2, A4).

The head-end re-reads a slot it believes missing (A1/A2 deadlines) and the meter answers from its
memory; when the push arrived meanwhile, or two re-reads were both answered, the answer carries
the value already stored. Its source (``reread``) differs from the stored one, so written it would
be a new version that changes nothing the meter said (a clean wire-mode day stored a few hundred).

:func:`drop_repeated_answers` drops an answer that would change nothing the meter said:
(a) its content (value, quality, method, failed rule) equals the version before it in its cell
and that version was measured too (push, re-read, poll), or (b) its whole content, source
included, equals an earlier version of the cell, which the reading rule ignores anyway
(:mod:`kenshin.mdms.versions`). "Before it" is the cell's stored history or an earlier row of the
same batch. An answer with another value, or one that meets an estimate or an edit, is kept and
becomes a new version as before, so VEE still sees measured data supersede its estimates. Pushes
are never dropped here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.core.channels import Channel
from kenshin.core.quality import Source
from kenshin.core.schema import READINGS_SCHEMA
from kenshin.core.timeslots import Resolution
from kenshin.mdms import versions
from kenshin.mdms.store import AnswerSource

ANSWERS = (int(Source.REREAD), int(Source.POLL))
_CELL = ("meter_key", "channel", "resolution", "interval_end")
_CONTENT = ("value", "quality", "method", "failed_rule")
# stored versions as compared: the cell, its content and source (the readings' types), and the
# version order (transaction time, µs)
_EMPTY_HISTORY = pa.schema(
    [*(READINGS_SCHEMA.field(n) for n in (*_CELL, *_CONTENT, "source")), ("version", pa.int64())]
).empty_table()


def drop_repeated_answers(
    readings: pa.Table, store: AnswerSource, late: npt.NDArray[np.bool_] | None = None
) -> tuple[pa.Table, int, int]:
    """(``readings`` without the answers that repeat what their cell holds, how many were
    dropped, how many of those were ``late`` rows: values the store already held). The stored
    versions come from one read of exactly the answered cells per (channel, resolution); the
    comparisons are sorts of the answered meters' rows, no loop over rows.

    ``late`` (one per row): pushes of frames older than their meter's replay window (a worker
    was down while another took the meters' newer frames), judged like answers: a true replay
    or a redelivery of what was stored repeats its cell and goes, a value never stored stays."""
    source = np.asarray(readings.column("source").to_numpy(zero_copy_only=False))
    answer = np.isin(source, ANSWERS)
    if late is not None:
        answer |= late
    if not answer.any():
        return readings, 0, 0
    meter = np.asarray(readings.column("meter_key").to_numpy(zero_copy_only=False))
    # rows of the answered meters only: a push of the same batch may precede an answer
    near = np.flatnonzero(np.isin(meter, np.unique(meter[answer])))
    incoming = readings.take(pa.array(near))
    stored = _stored_history(incoming.filter(pa.array(answer[near])), store)
    columns = [*_CELL, *_CONTENT, "source"]
    both = pa.concat_tables([stored.select(columns), incoming.select(columns)])
    cells = [versions._column(both, name)[0] for name in _CELL]
    content: list[npt.NDArray[Any]] = []
    for name in _CONTENT:
        content += list(versions._column(both, name))
    source_of = versions._column(both, "source")[0]
    # stored versions first in each cell (by version), then the batch by transaction time
    rank = np.r_[np.zeros(stored.num_rows, np.int64), np.ones(incoming.num_rows, np.int64)]
    when = np.r_[versions._column(stored, "version")[0], versions._column(incoming, "tx_time")[0]]
    position = np.arange(both.num_rows)
    order = np.lexsort([position, when, rank, *cells[::-1]])
    # (a) the same as the version just before, both measured
    repeat = np.zeros(both.num_rows, dtype=bool)
    repeat[order[1:]] = versions._same_as_previous([*cells, *content], order) & (
        versions.is_measured(source_of[order[:-1]])
    )
    # (b) the same, source included, as any earlier version of the cell
    order = np.lexsort([position, when, rank, source_of, *content[::-1], *cells[::-1]])
    repeat[order[1:]] |= versions._same_as_previous([*cells, *content, source_of], order)
    repeat &= np.r_[np.zeros(stored.num_rows, dtype=bool), answer[near]]
    dropped = near[repeat[stored.num_rows :]]
    if not dropped.size:
        return readings, 0, 0
    keep = np.ones(readings.num_rows, dtype=bool)
    keep[dropped] = False
    held = int(late[dropped].sum()) if late is not None else 0
    return readings.filter(pa.array(keep)), int(dropped.size), held


def _stored_history(answers: pa.Table, store: AnswerSource) -> pa.Table:
    """Every stored version of exactly the answered cells (``_CELL`` + content + source +
    version): one read per (channel, resolution) answered. A window read of the answered
    meters' span fetched every meter between them (~500 k rows per worker in the 2,000-meter
    service benchmark for a few thousand answers) and halved the rate a worker stored at."""
    channel = versions._column(answers, "channel")[0]
    resolution = versions._column(answers, "resolution")[0]
    meter = versions._column(answers, "meter_key")[0]
    end = versions._column(answers, "interval_end")[0]
    pair = (channel.astype(np.int64) << 8) | resolution
    parts = []
    for cr in np.unique(pair).tolist():
        mine = pair == cr
        c, r = (cr >> 8) & 0xFF, cr & 0xFF
        # one cell answered twice in the batch is read once
        cells = np.unique(np.stack([meter[mine].astype(np.int64), end[mine]], axis=1), axis=0)
        rows = store.read_cell_versions(
            Channel(c), Resolution(r), cells[:, 0].astype(np.int32), cells[:, 1]
        )
        n = rows.num_rows
        parts.append(
            pa.table(
                {
                    "meter_key": rows.column("meter_key"),
                    "channel": pa.array(np.full(n, c, np.uint8)),
                    "resolution": pa.array(np.full(n, r, np.uint8)),
                    **{name: rows.column(name) for name in ("interval_end", *_CONTENT, "source")},
                    # versions of a cell are ordered by their transaction time
                    "version": versions._column(rows, "tx_time")[0],
                }
            )
        )
    if not parts:
        return _EMPTY_HISTORY
    return pa.concat_tables(parts)


def drop_stored_register_reads(
    registers: pa.Table, store: AnswerSource, late: npt.NDArray[np.bool_]
) -> tuple[pa.Table, int]:
    """``registers`` without the ``late`` rows whose (meter, channel, instant) the store already
    holds (a redelivered or replayed old frame), and how many went. One scan per channel over
    the late rows' instants and meters (``read_register_rows``)."""
    if not late.any():
        return registers, 0
    meter = versions._column(registers, "meter_key")[0]
    channel = versions._column(registers, "channel")[0]
    read_at = versions._column(registers, "read_at")[0]
    drop = np.zeros(registers.num_rows, dtype=bool)
    for c in np.unique(channel[late]).tolist():
        rows = late & (channel == c)
        held = store.read_register_rows(
            Channel(c),
            int(read_at[rows].min()),
            int(read_at[rows].max()),
            (int(meter[rows].min()), int(meter[rows].max())),
        )
        if not held.num_rows:
            continue
        held_keys = _register_keys(
            versions._column(held, "meter_key")[0], versions._column(held, "read_at")[0]
        )
        drop[rows] = np.isin(_register_keys(meter[rows], read_at[rows]), held_keys)
    if not drop.any():
        return registers, 0
    return registers.filter(pa.array(~drop)), int(drop.sum())


def _register_keys(meter: npt.NDArray[Any], read_at_us: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    # register reads are taken on whole minutes (epoch minutes on the wire): 26 bits to 2097
    return (meter.astype(np.int64) << 26) | (read_at_us.astype(np.int64) // 60_000_000)
