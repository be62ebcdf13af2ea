"""One head-end worker step: take what arrived together, store it, only then acknowledge it.

The same step runs behind Mosquitto (``kenshin hes``) and behind the in-memory twin of the link
(``kenshin up`` and ``kenshin simulate --aroute wire``, :mod:`kenshin.aroute.link`):

1. receive a batch of envelopes from the shared uplink subscription;
2. authenticate and admit their frames (``HeadEnd.receive_envelopes``), buffer the values;
3. :meth:`HesWorker.commit`: store the values and, in the same transaction, the replay windows
   they changed (``ReplayGuard.staged``), make the admissions final (``ReplayGuard.stored``),
   then acknowledge every delivery of the batch.

Killed before 3, nothing of the batch is stored and the broker delivers it again: the frames are
admitted afresh. Killed after the commit but before the acknowledgements, the redelivered frames
are recognised as already seen (counted as redeliveries, not stored twice). Either way nothing
is lost and nothing is stored twice.

Duties (deadlines, re-reads, commands, polls) are kept by one worker: inline when it is the only
one, or by watching every envelope on a second, unshared subscription (``observer``) when other
workers store some of them. The observer also takes the workers' stored reports: a value it saw
that no worker names stored in time is taken back and re-read (:mod:`kenshin.hes.confirm`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kenshin.aroute.link import Delivery, EnvelopeLink
from kenshin.aroute.mqtt import (
    envelope_digest,
    is_stored_topic,
    observed_topic,
    progress_topic,
    split_topic,
    stored_topic,
)
from kenshin.core.batches import CounterState
from kenshin.errors import StoreUnavailable
from kenshin.hes.confirm import CONFIRM_WITHIN_S, StoredLedger
from kenshin.hes.service import HeadEnd

log = logging.getLogger("kenshin.hes.worker")

Flush = Callable[[CounterState | None], None]


def _areas(deliveries: list[Delivery]) -> list[str]:
    """The area level of each delivery's topic ("" when the topic is not an A-route one)."""
    areas = []
    for message in deliveries:
        try:
            areas.append(split_topic(message.topic)[0])
        except ValueError:
            areas.append("")
    return areas


@dataclass
class WorkerReports:
    """Where the worker reports progress for the publishers' flow control (``Backlog``)."""

    worker_id: str
    topic_root: str
    # when this process started (ms): reports say it, so a restart is not taken for the old
    # process carrying on (kenshin.aroute.backlog.Backlog)
    incarnation: int = field(default_factory=lambda: time.time_ns() // 1_000_000)

    def count(self, value: int, refused: int | None = None, held: int | None = None) -> bytes:
        """``COUNT INCARNATION [REFUSED [HELD]]``: envelopes done; since the process started,
        frames refused and values of late frames the store already held (replays)."""
        tail = "" if refused is None else f" {refused}"
        tail += "" if refused is None or held is None else f" {held}"
        return f"{value} {self.incarnation}{tail}".encode()

    @property
    def progress(self) -> str:
        return progress_topic(self.worker_id, self.topic_root)

    @property
    def observed(self) -> str:
        return observed_topic(self.worker_id, self.topic_root)

    @property
    def stored(self) -> str:
        return stored_topic(self.worker_id, self.topic_root)


@dataclass
class HesWorker:
    """A head-end worker over an :class:`~kenshin.aroute.link.EnvelopeLink`.

    ``flush(counters)`` stores the buffered values with the replay windows (the MDMS ingest
    service's ``flush``). ``inline_duties``: this worker stores every envelope and keeps the
    duties itself; otherwise ``observer`` (if given) sees every envelope for them, and the
    workers' stored reports (``stored_subscription``) unless ``confirm_within_s`` is None.
    """

    hes: HeadEnd
    link: EnvelopeLink
    flush: Flush
    observer: EnvelopeLink | None = None
    inline_duties: bool = False
    reports: WorkerReports | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    batch_limit: int = 256
    outage_limit_s: float = 300.0  # how long a worker waits for its store before giving up
    # wall seconds an observed envelope may wait for a stored report before its values are
    # taken back (longer than outage_limit_s: a database restart sets off no re-reads)
    confirm_within_s: float | None = CONFIRM_WITHIN_S
    _sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    _monotonic: Callable[[], float] = field(default=time.monotonic, repr=False)
    # values of late frames the store already held, so far (the MDMS's count): reported with
    # the progress, so a publisher that sends what was taken before is told
    values_held: Callable[[], int] | None = None
    stored: int = field(default=0, init=False)  # envelopes stored and acknowledged
    observed: int = field(default=0, init=False)
    store_retries: int = field(default=0, init=False)  # batches tried again after an outage
    _pending: list[Delivery] = field(default_factory=list, init=False)
    _last_tick: float = field(default_factory=time.monotonic, init=False)
    ledger: StoredLedger | None = field(default=None, init=False)
    # taking what queued while this worker was away (its start, a store outage): the duty
    # worker may have re-read some of it and stored the answers, so pushes are compared with
    # the store as answers are until a batch comes short of the limit (caught up) or this many
    # messages were taken (a broker keeps at most so many for an absent session: Mosquitto's
    # max_queued_messages, 1,000 by default; the fleet never lets more wait)
    catch_up_messages: int = 1000
    catching_up: bool = field(default=True, init=False)
    _taken_catching_up: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.observer is not None and self.confirm_within_s is not None:
            self.ledger = StoredLedger(self.confirm_within_s)

    def step(self, wait_s: float = 0.05, *, commit: bool = True) -> int:
        """Take one batch (waiting up to ``wait_s`` for its first envelope), store it and
        acknowledge it (unless ``commit=False``: then :meth:`commit` does, later); observe for
        the duties. Returns how many envelopes the batch held."""
        batch = self.link.receive(wait_s, self.batch_limit)
        taken = self.observer.receive(0.0, 4096) if self.observer is not None else []
        seen = [m for m in taken if not is_stored_topic(m.topic)]
        named = [m for m in taken if is_stored_topic(m.topic)]  # the workers' stored reports
        arrivals: list[int | None] = []
        self.hes.stats.largest_batch = max(self.hes.stats.largest_batch, len(batch))
        with self.lock:
            if batch and commit:
                self._store(batch)
            elif batch:
                self._admit(batch)
            if seen:
                arrivals = self.hes.observe_envelopes(
                    [m.payload for m in seen], origins=_areas(seen)
                )
            if self.ledger is not None:
                self._confirm(seen, arrivals, named)
        observed = len(seen)
        if self.observer is not None:
            for message in taken:  # held here now (a no-op on an auto-acknowledging link)
                self.observer.ack(message)
        if observed:
            self.observed += observed
            if self.reports is not None:
                self.observer_status()
        if self.catching_up:
            self._taken_catching_up += len(batch)
            if len(batch) < self.batch_limit or self._taken_catching_up >= self.catch_up_messages:
                self.catching_up = False
        return len(batch)

    def _confirm(
        self, seen: list[Delivery], arrivals: list[int | None], named: list[Delivery]
    ) -> None:
        """Hold what was observed until a worker names it stored; take back what waited too
        long (:mod:`kenshin.hes.confirm`)."""
        assert self.ledger is not None
        now_s = self._monotonic()
        for message, arrival_us in zip(seen, arrivals, strict=True):
            if arrival_us is not None:
                self.ledger.seen(message.payload, arrival_us, now_s)
        for message in named:
            self.ledger.stored(message.payload, now_s)
        expired = self.ledger.expired(now_s)
        if expired:
            self.hes.retract([(e.payload, e.arrival_us) for e in expired])

    def tick(self, busy: bool) -> None:
        """The head-end's timers (deadlines, re-reads, commands, polls): after every busy step,
        else once a second of wall time."""
        if busy or time.monotonic() - self._last_tick > 1.0:
            with self.lock:
                self.hes.tick()
            self._last_tick = time.monotonic()

    def observer_status(self) -> None:
        assert self.reports is not None
        self.link.publish_status(self.reports.observed, self.reports.count(self.observed))

    def commit(self) -> int:
        """Store what was taken with ``commit=False`` and acknowledge it; envelopes committed."""
        with self.lock:
            return self._commit()

    def abandon(self) -> None:
        """The worker gives up (it is stopping on an error): nothing taken is acknowledged, so
        the broker delivers it again; admissions not stored are forgotten."""
        self._pending.clear()
        self.hes.replay.abandon()

    def area_of(self, collector: str) -> str | None:
        """The area (topic level) downlink to ``collector`` goes to: where its last envelope
        holding an accepted frame came from (``HeadEnd.origins``), never a bare topic."""
        return self.hes.origins.get(collector)

    def _store(self, batch: list[Delivery]) -> None:
        """Admit, store and acknowledge ``batch``; while the store cannot be reached (a
        database restart), wait and do it all again, for up to ``outage_limit_s``: nothing of
        the batch was stored or admitted meanwhile (one transaction), and nothing of it is
        acknowledged, so it is taken exactly once either way."""
        delay, waited = 0.5, 0.0
        while True:
            try:
                self._admit(batch)
                self._commit()
                if waited:
                    log.warning("the store is back after %.0f s; the batch is stored", waited)
                return
            except StoreUnavailable as exc:
                self.abandon()
                # what queues meanwhile is taken as after a start
                self.catching_up, self._taken_catching_up = True, 0
                if waited >= self.outage_limit_s:
                    raise
                if not waited:
                    log.warning("%s; retrying for up to %.0f s", exc, self.outage_limit_s)
                self._sleep(delay)
                self.store_retries += 1
                waited += delay
                delay = min(2 * delay, 5.0)

    def _admit(self, batch: list[Delivery]) -> None:
        # one authentication and replay pass for what arrived together; in a batch holding a
        # redelivered message, replays count as redeliveries
        self.hes.receive_envelopes(
            [m.payload for m in batch],
            redelivered=any(m.redelivered for m in batch),
            duties=self.inline_duties,
            origins=_areas(batch),
            # a copy the fleet sent again may come after the duty worker's re-read of its
            # values: compared with the store, as a catching-up worker's pushes are
            compare=self.catching_up or any(m.again for m in batch),
        )
        self._pending.extend(batch)

    def _commit(self) -> int:
        if not self._pending:
            return 0
        # stored (with the replay windows) before acknowledged: a crash before the commit means
        # redelivery and fresh admission, after it, recognised repeats
        self.flush(self.hes.replay.staged())
        self.hes.replay.stored()
        done = len(self._pending)
        if self.reports is not None:
            # the count (with the frames refused) before the names: a publisher that has heard
            # every name has heard what was refused too
            self.link.publish_status(
                self.reports.progress,
                self.reports.count(
                    self.stored + done,
                    self.hes.stats.frames_rejected_total,
                    self.values_held() if self.values_held is not None else None,
                ),
            )
            # named before they are acknowledged: killed in between, the broker delivers them
            # again, they are recognised, and named again; never stored and left unnamed (the
            # fleet accounts for its envelopes by these names)
            digests = b"".join(envelope_digest(m.payload) for m in self._pending)
            self.link.publish(self.reports.stored, digests)
        for message in self._pending:
            self.link.ack(message)
        self._pending.clear()
        self.stored += done
        return done
