"""Loss on the way to the MDMS for simulations (``kenshin simulate --loss``, ``--loss-burst``):
whole meter messages lost, singly or in bursts, so that estimation meets the gaps it meets in
the field (issue 13 item 7). The wire path has its own network model (``aroute.network``); this
sits in front of the MDMS in either mode."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.core.batches import ReadingBatch
from kenshin.errors import InvalidSetting

SLOT_US = 1_800_000_000  # the loss model steps per 30-min slot


class LossyLink:
    """Loses whole meter messages on the way to the MDMS (``kenshin simulate --loss``), singly
    or in bursts, as real loss does: a lost (meter, 30-min slot) takes every value of that slot
    (30-min, and the 15-, 5- and 1-min values inside it) and the register reads at its end, so
    the sweep estimates across the gap from the register reads it still has (SPEC M5).

    The model is a two-state Markov chain per meter, stepped once per 30-min slot (a
    Gilbert–Elliott channel): a meter in the *bad* state loses its slot. ``loss`` is the
    long-run share of lost slots and ``burst`` the mean length of a run of lost slots (1: each
    slot lost on its own, independently; 96: a meter silent for two days at a time), so
    ``P(bad → good) = 1 / burst`` and ``P(good → bad) = loss / ((1 - loss) · burst)``. The
    chain starts in its stationary state. Seedable: the same seed loses the same slots.
    """

    def __init__(self, sink: Any, loss: float, seed: int, burst: float = 1.0) -> None:
        if not 0.0 <= loss < 1.0:
            raise InvalidSetting(f"loss must be in [0, 1), got {loss}")
        if burst < 1.0:
            raise InvalidSetting(f"a loss burst lasts at least one slot on average, got {burst}")
        self.sink = sink
        self.loss = loss
        self.burst = burst
        self.lost = 0  # interval values lost
        self.lost_slots = 0  # (meter, slot) messages lost
        self._recover = 1.0 / burst
        self._fail = min(1.0, loss * self._recover / (1.0 - loss)) if loss else 0.0
        self._rng = np.random.default_rng([seed, 0x1055])
        self._bad = np.zeros(0, bool)  # the chain's state of each meter key
        self._slots: dict[int, npt.NDArray[np.bool_]] = {}  # slot end → meters that lose it
        self._last_slot: int | None = None

    def _lost_in(self, slot_end: int, meters: int) -> npt.NDArray[np.bool_]:
        """Which meter keys lose the slot ending at ``slot_end`` (decided once per slot)."""
        if len(self._bad) < meters:  # new meters start in the stationary state
            grown = self._rng.random(meters - len(self._bad)) < self.loss
            self._bad = np.concatenate([self._bad, grown])
        decided = self._slots.get(slot_end)
        if decided is not None and len(decided) >= meters:
            return decided
        if self._last_slot is None or slot_end > self._last_slot:
            steps = 1 if self._last_slot is None else (slot_end - self._last_slot) // SLOT_US
            for _ in range(int(min(steps, 4 * 48))):  # a long pause: the chain has mixed
                draw = self._rng.random(len(self._bad))
                self._bad = np.where(self._bad, draw >= self._recover, draw < self._fail)
            self._last_slot = slot_end
            decided = self._bad.copy()
        else:  # a slot before the newest decided one and forgotten: decided on its own
            decided = self._rng.random(len(self._bad)) < self.loss
        self._slots[slot_end] = decided
        for old in [k for k in self._slots if k < slot_end - 7 * 86_400_000_000]:
            del self._slots[old]  # a week back is all the A2 batches reach
        return decided

    def _keep(
        self, meters: npt.NDArray[np.int64], at: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        keep = np.ones(len(meters), bool)
        if not len(meters):
            return keep
        slot = -(-at // SLOT_US) * SLOT_US  # the 30-min slot an instant belongs to (its end)
        size = int(meters.max()) + 1
        for end in np.unique(slot):
            rows = slot == end
            keep[rows] = ~self._lost_in(int(end), size)[meters[rows]]
        return keep

    def ingest(self, batch: ReadingBatch, *, late: bool = False) -> None:
        readings, registers = batch.readings, batch.registers
        if self.loss:
            before = self.lost_slots
            keep = self._keep(
                np.asarray(readings.column("meter_key").to_numpy(), np.int64),
                np.asarray(readings.column("interval_end").cast(pa.int64()).to_numpy(), np.int64),
            )
            self.lost += int(len(keep) - keep.sum())
            readings = readings.filter(pa.array(keep))
            regs = self._keep(
                np.asarray(registers.column("meter_key").to_numpy(), np.int64),
                np.asarray(registers.column("read_at").cast(pa.int64()).to_numpy(), np.int64),
            )
            registers = registers.filter(pa.array(regs))
            self.lost_slots = before + int(len(regs) - regs.sum())
        self.sink.ingest(ReadingBatch(readings, registers, batch.events), late=late)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)
