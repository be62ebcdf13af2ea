"""Values the duty worker saw go by, held until a worker names them stored (issue 12, A1–A3).

With several head-end workers, the one keeping the duties watches every envelope on a
subscription of its own and counts each value when it sees it: that is when the value reached
the head-end, and what the deadlines judge. Whether it was *stored* is known only when the
worker that took the envelope names it on its stored topic (``envelope_digest``). A worker
killed before it stores a batch leaves its envelopes with the broker for its next session; when
it does not come back in time, those values were seen but are in no store.

:class:`StoredLedger` keeps each observed envelope until a stored report names it. An envelope
still unnamed ``confirm_within_s`` of wall time after it was seen is handed back
(:meth:`StoredLedger.expired`): the head-end takes its values back (``HeadEnd.retract``), so
they count as missing and are re-read. Wall time, not the fleet's: a commit takes wall time,
and behind a fleet at ``--speed max`` a wall second is hours of simulated time. The default
outlasts a worker's own wait for its store through a database restart (``outage_limit_s``),
so a database restart does not set off re-reads of what is about to be stored anyway.

Reports and envelopes travel on two topics with no order between them: a report that comes
first is kept (as long as an envelope would be) for the envelope it names.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from kenshin.aroute.mqtt import envelope_digest, report_digests

CONFIRM_WITHIN_S = 360.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Unconfirmed:
    """An observed envelope no worker has named stored yet."""

    payload: bytes
    arrival_us: int  # when its values were counted as arrived (the head-end's time)
    seen_s: float  # monotonic wall time it was seen


class StoredLedger:
    """Observed envelopes awaiting a stored report, and reports awaiting their envelope."""

    def __init__(self, confirm_within_s: float = CONFIRM_WITHIN_S, limit: int = 1_000_000):
        if confirm_within_s <= 0:
            raise ValueError("confirm_within_s must be positive")
        self.confirm_within_s = confirm_within_s
        self.limit = limit  # entries of each kind at most; the oldest are handed back first
        self._waiting: OrderedDict[bytes, Unconfirmed] = OrderedDict()
        self._named_early: OrderedDict[bytes, float] = OrderedDict()
        self.confirmed = 0  # envelopes seen and then named stored

    def __len__(self) -> int:
        return len(self._waiting)

    def seen(self, payload: bytes, arrival_us: int, now_s: float) -> None:
        digest = envelope_digest(payload)
        if self._named_early.pop(digest, None) is not None:
            self.confirmed += 1
            return
        self._waiting[digest] = Unconfirmed(payload, arrival_us, now_s)
        self._waiting.move_to_end(digest)

    def stored(self, report: bytes, now_s: float) -> None:
        """A worker's stored report: the digests of the envelopes it stored, concatenated."""
        for digest in report_digests(report):
            if self._waiting.pop(digest, None) is not None:
                self.confirmed += 1
            else:
                self._named_early[digest] = now_s
                self._named_early.move_to_end(digest)

    def expired(self, now_s: float) -> list[Unconfirmed]:
        """The envelopes no worker named stored within ``confirm_within_s`` (or beyond the
        limit), oldest first; forgotten here."""
        cutoff = now_s - self.confirm_within_s
        _drop_old(self._named_early, lambda at_s: at_s, cutoff, self.limit)
        return _drop_old(self._waiting, lambda entry: entry.seen_s, cutoff, self.limit)


def _drop_old(
    entries: OrderedDict[bytes, T], seen_at: Callable[[T], float], cutoff: float, limit: int
) -> list[T]:
    """Remove and return the oldest entries: those seen at or before ``cutoff``, and any
    beyond ``limit``."""
    out: list[T] = []
    while entries:
        digest, entry = next(iter(entries.items()))
        if seen_at(entry) > cutoff and len(entries) <= limit:
            break
        del entries[digest]
        out.append(entry)
    return out
