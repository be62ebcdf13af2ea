"""End-to-end flow control and exact accounting for a publisher of A-route envelopes over MQTT
(the fleet's collectors): what the head-end workers reported stored, what to publish again after
a broker lost it (:class:`Backlog`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kenshin.aroute.mqtt import envelope_digest, report_digests
from kenshin.errors import InvalidSetting, TransportError

log = logging.getLogger("kenshin.aroute.mqtt")


class Backlog:
    """End-to-end flow control and accounting for a publisher of envelopes.

    MQTT acknowledges a message when the *broker* has it; a broker keeps only so many messages
    queued for a slow or absent subscriber (Mosquitto: ``max_queued_messages``, 1000 per session
    by default) and drops the rest. So head-end workers report how many envelopes they have
    stored (retained, see :meth:`MqttLink.publish_status`), and the publisher waits while more
    than ``limit`` of its envelopes are not stored yet -- also before any worker has reported, so
    absent workers make it wait and then fail instead of letting the broker drop the surplus.

    Counts are cumulative per worker process since it started; a report says ``COUNT
    INCARNATION``, the incarnation being when that process started (ms since the epoch), so a
    restart is told apart from a process carrying on even when the new process's first count
    exceeds the old one's last (that once made the fleet report stored envelopes as missing).
    A worker's first count heard before we published anything, or given retained at
    subscription, is its baseline (envelopes of earlier runs); a newer incarnation's counts are
    all new; an older incarnation's, or a lower count of the same one, are stale (a broker
    restored from an older snapshot) and ignored. Reports without an incarnation fall back to
    counts alone: a lower live count is a restarted worker counting from 0.
    """

    def __init__(self, limit: int = 800) -> None:
        if limit < 1:
            raise InvalidSetting(f"a backlog limit must be at least 1, got {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._last: dict[str, tuple[int, int]] = {}  # worker → (incarnation, last count)
        self._stored = 0  # envelopes the workers have reported stored since we started
        self._observed_last: dict[str, tuple[int, int]] = {}
        # exact accounting once workers name what they stored (stored_topic): our envelopes'
        # digests not reported stored yet, with how many copies of each we published
        self._outstanding: dict[bytes, int] = {}
        # what to publish again if a broker restart lost it: digest → (topic, payload, the
        # link's connection epoch it was last published in, frames it carries, its place in
        # our publishing order, when it was last published [monotonic s]); only for envelopes
        # sent with a topic
        self._copies: dict[bytes, tuple[str, bytes, int, int, int, float]] = {}
        self._newest_named = -1  # the latest place in our order of an envelope named stored
        self.resent_frames = 0  # frames in envelopes published again (refused if not lost)
        self._named = False  # a stored report has arrived: count by names, not by counts
        self._observed: dict[str, int] = {}  # per observer: envelopes seen since we started
        self.published = 0
        self.reports = 0  # reports that moved a count (the waits restart their clock on them)
        # frames the workers refused since we started (a progress report's third field): a
        # fleet that sends what the head-end has seen before is told so
        self.refused = 0
        self._refused_last: dict[str, tuple[int, int]] = {}
        # values of late frames (older than their windows) the store already held: a replay
        # of old frames is not refused by the window but adds nothing
        self.held = 0
        self._held_last: dict[str, tuple[int, int]] = {}

    def _advance(
        self,
        last: dict[str, tuple[int, int]],
        worker: str,
        count: int,
        retained: bool,
        incarnation: int,
    ) -> int:
        """How many envelopes this report adds to what ``worker`` was known to have done."""
        previous = last.get(worker)
        if previous is None:
            last[worker] = (incarnation, count)
            return 0 if retained or self.published == 0 else count
        was, before = previous
        if incarnation and was and incarnation != was:
            if incarnation < was:
                return 0  # an earlier process's count, given late: stale
            last[worker] = (incarnation, count)
            return count  # a new process: it counts from 0
        if count >= before:
            last[worker] = (incarnation or was, count)
            return count - before
        if retained or incarnation:
            return 0
        last[worker] = (incarnation, count)
        return count

    def sent(
        self, payload: bytes, topic: str | None = None, epoch: int = 0, frames: int = 0
    ) -> None:
        """We published this envelope (call before publishing: a report may come at once).
        With its ``topic``, a copy is kept until a worker names it stored, for
        :meth:`resend`; ``epoch``: the link's reconnect count when it was published;
        ``frames``: how many it carries."""
        digest = envelope_digest(payload)
        with self._lock:
            self._outstanding[digest] = self._outstanding.get(digest, 0) + 1
            if topic is not None:
                self._copies[digest] = (
                    topic,
                    payload,
                    epoch,
                    frames,
                    self.published,
                    time.monotonic(),
                )
            self.published += 1

    def resend(self, epoch: int) -> list[tuple[str, bytes]]:
        """(topic, payload) of our envelopes published before connection ``epoch`` and still
        not named stored: a broker restarted in between may have lost them (it acknowledges a
        message before its snapshot holds it). Each is handed out once per epoch; a copy that
        was not lost is refused by the head-end as a replay, never stored twice."""
        return self._hand_out(lambda copy: copy[2] < epoch, epoch)

    def resend_passed(self, after_s: float) -> list[tuple[str, bytes]]:
        """(topic, payload) of our envelopes not named stored ``after_s`` seconds after they
        were last published although envelopes published after them were: the workers are
        taking newer messages and these were dropped on the way -- by a broker that came back
        before the workers did (what it took for their sessions in between was lost), or
        restored from a snapshot without them. Handed out again every ``after_s`` until named;
        a copy that was not lost is refused as a replay (and named), never stored twice."""
        now = time.monotonic()
        newest = self._newest_named
        return self._hand_out(lambda copy: copy[4] < newest and now - copy[5] >= after_s)

    def _hand_out(
        self,
        due: Callable[[tuple[str, bytes, int, int, int, float]], bool],
        epoch: int | None = None,
    ) -> list[tuple[str, bytes]]:
        with self._lock:
            out = [
                (digest, copy)
                for digest, copy in self._copies.items()
                if digest in self._outstanding and due(copy)
            ]
            now = time.monotonic()
            for digest, (topic, payload, when, frames, place, _) in out:
                again = when if epoch is None else epoch
                self._copies[digest] = (topic, payload, again, frames, place, now)
                self.resent_frames += frames
            return [(copy[0], copy[1]) for _, copy in out]

    def on_stored(self, payload: bytes) -> None:
        """A worker names the envelopes it stored (8-byte digests): each of ours leaves the
        outstanding set once, however often it is reported (a redelivered envelope is stored
        and named again) and whichever worker process names it (a restart changes nothing)."""
        with self._lock:
            self._named = True
            moved = 0
            for digest in report_digests(payload):
                copies = self._outstanding.get(digest)
                if copies is None:
                    continue  # another publisher's, or one of ours named before
                moved += 1
                copy = self._copies.get(digest)
                if copy is not None:
                    self._newest_named = max(self._newest_named, copy[4])
                if copies > 1:
                    self._outstanding[digest] = copies - 1
                else:
                    del self._outstanding[digest]
                    self._copies.pop(digest, None)
            self.reports += moved > 0

    def _by_name(self) -> int | None:
        """Envelopes of ours not named stored, when workers name them (else None)."""
        if not self._named:
            return None
        return sum(self._outstanding.values())

    def on_progress(
        self,
        worker: str,
        count: int,
        retained: bool = False,
        incarnation: int = 0,
        refused: int | None = None,
        held: int | None = None,
    ) -> None:
        with self._lock:
            added = self._advance(self._last, worker, count, retained, incarnation)
            self._stored += added
            self.reports += added > 0
            if refused is not None:
                self.refused += self._advance(
                    self._refused_last, worker, refused, retained, incarnation
                )
            if held is not None:
                self.held += self._advance(self._held_last, worker, held, retained, incarnation)

    def on_observed(
        self, worker: str, count: int, retained: bool = False, incarnation: int = 0
    ) -> None:
        """The duty worker watches every envelope; it must keep up too."""
        with self._lock:
            added = self._advance(self._observed_last, worker, count, retained, incarnation)
            self._observed[worker] = self._observed.get(worker, 0) + added
            self.reports += added > 0

    def on_report(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """A message on ``<root>/hes/<progress|observed>/<worker>``; anything else is ignored
        (this runs on the MQTT network thread, which an exception would end)."""
        kind, worker = topic.split("/")[-2:]
        try:
            fields = (payload or b"0").split()
            count = int(fields[0])
            incarnation = int(fields[1]) if len(fields) > 1 else 0
            refused = int(fields[2]) if len(fields) > 2 else None
            held = int(fields[3]) if len(fields) > 3 else None
            if len(fields) > 4 or min(refused or 0, held or 0) < 0:
                raise ValueError
        except (ValueError, IndexError):
            log.warning("ignoring a malformed report on %s: %r", topic, payload[:40])
            return
        if count < 0 or incarnation < 0:
            return
        if kind == "observed":
            self.on_observed(worker, count, retained, incarnation)
        elif kind == "progress":
            self.on_progress(worker, count, retained, incarnation, refused, held)

    @property
    def stored(self) -> int:
        """Envelopes of ours reported stored: named by a worker, or (workers that only count)
        never more than we published, since a worker's first count may include others'."""
        with self._lock:
            unnamed = self._by_name()
            if unnamed is not None:
                return self.published - unnamed
            return min(self._stored, self.published)

    @property
    def unaccounted(self) -> int:
        return self.published - self.stored

    @property
    def pending(self) -> int:
        with self._lock:
            unnamed = self._by_name()
            behind = (
                unnamed
                if unnamed is not None
                else self.published - min(self._stored, self.published)
            )
            if self._observed:
                behind = max(behind, self.published - min(self._observed.values()))
            return behind

    def wait(
        self,
        stop: threading.Event,
        stall_s: float = 120.0,
        on_wait: Callable[[int, float], None] | None = None,
        tick: Callable[[], None] | None = None,
    ) -> None:
        """Block while ``limit`` envelopes or more are unstored (so at most ``limit`` ever are);
        raise :class:`TransportError` when no report has moved for ``stall_s``.
        ``on_wait(pending, waited_s)`` about once a second while waiting; ``tick()`` every
        pass of the wait (the publisher's own upkeep, such as :meth:`resend`)."""
        if self.pending < self.limit:
            return
        self._until(lambda: self.pending < self.limit, stop, stall_s, on_wait, tick)
        if self.pending >= self.limit and not stop.is_set():
            raise TransportError(
                f"{self.pending:,} envelopes published and not stored by any head-end worker, "
                f"no progress for {stall_s:g} s (a broker keeps only so many for an absent "
                "worker): are the head-end workers (kenshin hes) running on this broker and "
                "topic root?"
            )

    def settle(
        self,
        stop: threading.Event,
        timeout_s: float = 120.0,
        on_wait: Callable[[int, float], None] | None = None,
        tick: Callable[[], None] | None = None,
    ) -> int:
        """Wait until the workers report every published envelope stored, or until no report
        has moved for ``timeout_s``; returns how many remain unaccounted for."""
        self._until(lambda: self.unaccounted == 0, stop, timeout_s, on_wait, tick)
        return self.unaccounted

    def _until(
        self,
        done: Callable[[], bool],
        stop: threading.Event,
        stall_s: float,
        on_wait: Callable[[int, float], None] | None,
        tick: Callable[[], None] | None = None,
    ) -> None:
        started = last_move = time.monotonic()
        reports, said = self.reports, started
        while not done() and not stop.is_set():
            if tick is not None:
                tick()
            now = time.monotonic()
            if self.reports != reports:  # progress: the stall clock starts again
                reports, last_move = self.reports, now
            if now - last_move > stall_s:
                return
            if on_wait is not None and now - said >= 1.0:
                on_wait(self.pending, now - started)
                said = now
            stop.wait(0.01)
