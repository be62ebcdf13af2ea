"""The head-end system (HES): authenticated A-route frames in, reading batches out, duties kept.

One object per worker. It is driven from outside, so the same code runs in-process (``kenshin
up``) and behind MQTT (``kenshin hes``):

- :meth:`HeadEnd.receive_envelope` takes one collector envelope: frames are authenticated by
  :class:`~kenshin.aroute.codec.decode.FrameDecoder` (pure), the replay guard admits the fresh
  ones (it may query a database), refused frames are counted by reason and never stored,
  accepted values go to the MDMS as one Arrow batch, and the duty trackers note when each value
  arrived (SPEC A1–A3, X4).
- :meth:`HeadEnd.tick` judges deadlines, asks meters to re-send what is missing (while they still
  hold it), runs the command and poll books (A4, R3) and sends downlink frames through the
  collector each meter was last heard from.

Time comes from the clock it is given (ARCHITECTURE principle 3). Behind a simulated fleet that
is a :class:`~kenshin.core.clock.FollowClock`, and nothing unauthenticated drives it (issue 12):
an envelope's send time (a header field any collector or broker could set) moves it at most
:data:`CLOCK_LEAD_US` past the times the accepted frames vouch for (interval ends and register
reads of pushes, poll and event instants; their median over what arrived together, so one meter
with a broken clock cannot drag it either). Routes back to a collector are learned likewise only
from envelopes that carried an accepted frame.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.aroute.codec.decode import FrameDecoder
from kenshin.aroute.codec.decoded import DecodedFrames
from kenshin.aroute.codec.encode import encode_frame
from kenshin.aroute.codec.envelope import (
    SENT_AT_MAX_US,
    Envelope,
    decode_envelope,
    encode_envelope,
)
from kenshin.aroute.frames import (
    Command,
    CommandAck,
    CommandKind,
    FrameType,
    MeterEvent,
    PollRequest,
    PollResponse,
    RejectReason,
)
from kenshin.aroute.keys import KeyRing
from kenshin.aroute.registry import MeterRegistry
from kenshin.aroute.replay import MemoryReplayGuard, ReplayGuard
from kenshin.core.batches import ReadingBatch, ReadingSink
from kenshin.core.channels import Channel
from kenshin.core.clock import Clock, FollowClock
from kenshin.core.events import EventCode
from kenshin.core.meterspec import MeterClass
from kenshin.core.timeslots import (
    US_PER_DAY,
    US_PER_MINUTE,
    Resolution,
    from_epoch_us,
    to_epoch_us,
)
from kenshin.errors import FrameError
from kenshin.hes.commands import CommandBook, CommandPolicy, MeterSpecs
from kenshin.hes.duties import (
    DAY_PHASE_US,
    DutySummary,
    SlotTracker,
    a1_deadlines,
    coalesce_ranges,
    day_end_us,
    summarize,
)
from kenshin.hes.ingest import decode, decode_keeping_late, decoded_to_batch
from kenshin.hes.metrics import HesMetrics
from kenshin.hes.policy import CollectionPolicy, Duty
from kenshin.hes.polling import PollBook, PollPolicy
from kenshin.hes.x1 import X1Ceiling

log = logging.getLogger("kenshin.hes")

# how far an envelope's (unauthenticated) send time may lead the authenticated frame times seen:
# honest pushes leave within minutes of their slot (send jitter ≤ 2 min, then the mesh)
CLOCK_LEAD_US = 10 * US_PER_MINUTE
_PUSHES = np.array(
    [FrameType.PUSH_SCHEDULED, FrameType.PUSH_5MIN_HISTORICAL, FrameType.PUSH_5MIN_REALTIME],
    dtype=np.uint8,
)

Downlink = Callable[[str, bytes], None]  # (collector name, envelope)
_COUNTER_EPOCH_S = 1_600_000_000
# A mesh round trip (hops both ways, the collector's forwarding interval, queues behind pushes)
# takes minutes, not seconds; a collector serves hundreds of meters.
HES_COMMAND_POLICY = CommandPolicy(
    ack_timeout=dt.timedelta(minutes=5), max_in_flight_per_collector=16
)
HES_POLL_POLICY = PollPolicy(timeout=dt.timedelta(minutes=5), max_in_flight_per_collector=16)


def vouched_time_us(decoded: DecodedFrames) -> int | None:
    """The median of the instants the accepted frames vouch for (authenticated: interval ends
    and register reads of pushes, poll measurement and event times), clipped to the envelope
    range; None when they carry none (acknowledgements only, re-sent old values)."""
    r, g = decoded.intervals, decoded.registers
    parts = [
        r.interval_end_us[np.isin(r.frame_type, _PUSHES)],
        g.read_at_us[np.isin(g.frame_type, _PUSHES)],
        np.array(
            [
                m.measured_at_us if isinstance(m, PollResponse) else m.at_us
                for _, m in decoded.messages
                if isinstance(m, PollResponse | MeterEvent)
            ],
            dtype=np.int64,
        ),
    ]
    times = np.concatenate(parts)
    if not times.size:
        return None
    return int(np.clip(np.median(times), 0, SENT_AT_MAX_US))


class MalformedLog:
    """Malformed envelopes as warnings: one line per batch that had some (its count and first
    reason), at most ``max_lines`` per ``period_s``; beyond that they are counted and the next
    line reports them, so a flood costs a few lines, not one per envelope."""

    def __init__(
        self,
        max_lines: int = 20,
        period_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_lines, self.period_s, self._clock = max_lines, period_s, clock
        self._window_start = -float("inf")
        self._lines = 0
        self.suppressed = 0

    def report(self, reasons: Sequence[str]) -> None:
        now = self._clock()
        if now - self._window_start >= self.period_s:
            self._window_start, self._lines = now, 0
        if self._lines >= self.max_lines:
            self.suppressed += len(reasons)
            return
        self._lines += 1
        earlier = f" (and {self.suppressed} earlier, not logged)" if self.suppressed else ""
        log.warning(
            "%d malformed envelope(s) refused, e.g. %s%s", len(reasons), reasons[0], earlier
        )
        self.suppressed = 0


@dataclass
class HesStats:
    envelopes: int = 0
    malformed_envelopes: int = 0
    frames_accepted: int = 0
    frames_redelivered: int = 0  # already accepted; came again after a transport redelivery
    frames_late: int = 0  # older than their window: values kept where none was stored
    frames_observed: int = 0  # authentic frames seen by the duty observer (stored elsewhere)
    envelopes_observed: int = 0
    values_retracted: int = 0  # observed, never reported stored: missing again (hes.confirm)
    largest_batch: int = 0  # transport messages taken at once by a worker
    frames_rejected: collections.Counter[RejectReason] = field(default_factory=collections.Counter)
    values_stored: int = 0
    rereads_requested: int = 0
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    downlink_frames: int = 0

    @property
    def frames_rejected_total(self) -> int:
        return sum(self.frames_rejected.values())


class HeadEnd:
    def __init__(
        self,
        sink: ReadingSink,
        clock: Clock,
        meters: pa.Table,
        keys: KeyRing,
        replay: ReplayGuard,
        *,
        policy: CollectionPolicy | None = None,
        command_policy: CommandPolicy | None = None,
        downlink: Downlink | None = None,
        track_duties: bool = True,
    ) -> None:
        self.sink = sink
        self.clock = clock
        self.policy = policy or CollectionPolicy()
        self.registry = MeterRegistry.from_meters_table(meters)
        self.keys = keys
        self.replay = replay
        self.decoder = FrameDecoder(self.registry, keys)
        self.downlink = downlink
        self.stats = HesStats()
        self.metrics = HesMetrics()
        n = meters.num_rows
        order = np.argsort(meters.column("meter_key").to_numpy())
        self.meter_class = meters.column("meter_class").to_numpy()[order]
        self.generation = meters.column("generation").to_numpy()[order]
        self.route = np.full(n, -1, dtype=np.int32)  # collector each meter was last heard via
        # when each meter was last heard (any authentic frame), and the power events meters
        # reported, for the outage engine (issue 15; it drains the deque)
        self.heard_us = np.full(n, -1, dtype=np.int64)
        self.power_events: collections.deque[tuple[int, EventCode, int]] = collections.deque(
            maxlen=1_000_000
        )
        self._restored: list[int] = []  # meters that reported their power back since the tick
        self._answered = False  # a command ack or poll response came since the last send
        self.collectors: dict[str, int] = {}
        self.collector_names: list[str] = []
        # collector → where its envelopes come from (an MQTT area), learned from vouched ones
        self.origins: dict[str, str] = {}
        self._vouched_us = -1  # high-water mark of vouched frame times (see vouched_time_us)
        self._malformed_log = MalformedLog()
        now_us = to_epoch_us(clock.now())
        # downlink counters start from the time, so a restarted HES never reuses one (X2)
        self._down_counter = np.full(
            n, max(0, now_us // 1_000_000 - _COUNTER_EPOCH_S) * 4, np.int64
        )
        self.commands = CommandBook(
            # the utility's recording periods (M4): a re-read of older values is refused at once
            MeterSpecs(self.generation, self.meter_class, self.policy.meter_specs()),
            self.route,
            command_policy or HES_COMMAND_POLICY,
        )
        self.polls = PollBook(self.route, HES_POLL_POLICY)
        self.commands.x1 = X1Ceiling(meters)  # its key (to check emergencies): the root's
        self.track_duties = track_duties
        self._observer: tuple[FrameDecoder, MemoryReplayGuard] | None = None
        self.trackers: dict[Duty, SlotTracker] = {}
        if track_duties:
            self._build_trackers(meters, order, now_us)

    # ---- duties ---------------------------------------------------------------------------

    def _build_trackers(self, meters: pa.Table, order: npt.NDArray[np.int64], now_us: int) -> None:
        n = meters.num_rows
        hv = self.meter_class >= MeterClass.HV
        names = meters.column_names
        a2 = meters.column("sampled_5min").to_numpy(zero_copy_only=False)[order].astype(bool)
        a3 = (
            meters.column("realtime_5min").to_numpy(zero_copy_only=False)[order].astype(bool)
            if "realtime_5min" in names
            else np.zeros(n, dtype=bool)
        )
        step30, step5 = Resolution.MIN30.microseconds, Resolution.MIN5.microseconds
        first30 = (now_us // step30 + 1) * step30
        first5 = (now_us // step5 + 1) * step5
        first_day = day_end_us(now_us + 1)
        p = self.policy
        us = dt.timedelta(microseconds=1)
        self.trackers[Duty.A1] = SlotTracker(
            Duty.A1,
            n,
            step30,
            96,
            first30,
            a1_deadlines(hv, p),
            np.ones(n, dtype=bool),
            memory_us=p.recording_period_30_15 // us,
        )
        a3_deadline = np.full(n, int(p.a3_deadline.total_seconds()), dtype=np.int64)
        self.trackers[Duty.A3] = SlotTracker(
            Duty.A3, n, step5, 36, first5, a3_deadline, a3, memory_us=p.recording_period_5 // us
        )
        a2_deadline = np.full(n, int(p.a2_deadline.total_seconds()), dtype=np.int64)
        self.trackers[Duty.A2] = SlotTracker(
            Duty.A2, n, US_PER_DAY, 7, first_day, a2_deadline, a2 & ~a3, phase_us=DAY_PHASE_US
        )

    def _a2_rereads(self) -> tuple[dt.timedelta, ...]:
        p = self.policy
        end = dt.timedelta(hours=p.offpeak_end.hour, minutes=p.offpeak_end.minute)
        first = end + p.a2_reread_after
        return (first, first + dt.timedelta(days=1), first + dt.timedelta(days=2))

    def _duty_cells(
        self, decoded: DecodedFrames
    ) -> list[tuple[Duty, npt.NDArray[np.int32], npt.NDArray[np.int64]]]:
        """(duty, meter keys, slot ends) of the values in ``decoded`` that each duty counts."""
        r = decoded.intervals
        fwd = r.channel == int(Channel.ACTIVE_FORWARD)
        types = r.frame_type
        scheduled_or_resend = (types == FrameType.PUSH_SCHEDULED) | (
            types == FrameType.RESEND_RESPONSE
        )
        a1 = fwd & (r.resolution == 30) & scheduled_or_resend
        five = fwd & (r.resolution == 5)
        a3 = five & ((types == FrameType.PUSH_5MIN_REALTIME) | (types == FrameType.RESEND_RESPONSE))
        # an A2 day counts when its last value (ending at midnight) arrives
        historical = five & (
            (types == FrameType.PUSH_5MIN_HISTORICAL) | (types == FrameType.RESEND_RESPONSE)
        )
        ends = r.interval_end_us[historical]
        midnight = (ends - DAY_PHASE_US) % US_PER_DAY == 0
        return [
            (Duty.A1, r.meter_key[a1], r.interval_end_us[a1]),
            (Duty.A3, r.meter_key[a3], r.interval_end_us[a3]),
            (Duty.A2, r.meter_key[historical][midnight], ends[midnight]),
        ]

    def _record_arrivals(self, decoded: DecodedFrames, now_us: int) -> None:
        for duty, keys, ends in self._duty_cells(decoded):
            self.trackers[duty].record(keys, ends, now_us)

    def retract(self, unconfirmed: Sequence[tuple[bytes, int]]) -> int:
        """Take back the values of observed envelopes (payload, arrival µs) that no worker
        named stored in time (:mod:`kenshin.hes.confirm`): counted when they went by, they
        are in no store, so they count as missing again and are re-read. Returns how many
        values were taken back."""
        if not self.track_duties or not unconfirmed:
            return 0
        decoder = FrameDecoder(self.registry, self.keys)
        taken = 0
        for payload, arrival_us in unconfirmed:
            try:
                envelope = decode_envelope(payload)
            except FrameError:
                continue
            authentic = decoder.authenticate(envelope.frames)
            # authentic frames seen before: their replay windows were judged when they came
            decoded = decoder.parse(authentic, np.ones(len(authentic), dtype=bool))
            for duty, keys, ends in self._duty_cells(decoded):
                taken += self.trackers[duty].retract(keys, ends, arrival_us)
        self.stats.values_retracted += taken
        if taken:
            log.warning(
                "%d values seen in %d envelopes no worker reported stored: counted as missing "
                "again, to be re-read",
                taken,
                len(unconfirmed),
            )
        return taken

    # ---- uplink ---------------------------------------------------------------------------

    def receive_envelope(self, payload: bytes, *, redelivered: bool = False) -> int:
        """Take one collector envelope; returns the number of frames accepted.

        ``redelivered``: the transport says this message may have been delivered before (MQTT
        DUP). Its already-accepted frames then show up as replays; they are counted as
        redeliveries, not as attacks, and change nothing.
        """
        return self.receive_envelopes([payload], redelivered=redelivered)

    def receive_envelopes(
        self,
        payloads: Sequence[bytes],
        *,
        redelivered: bool = False,
        duties: bool = True,
        origins: Sequence[str] | None = None,
        compare: bool = False,
    ) -> int:
        """Take several envelopes at once: one authentication and replay pass, one batch for the
        MDMS (a worker behind MQTT takes what arrived together). Their arrival time is now.

        ``duties=False``: store only; deadlines, routes, acknowledgements and poll answers are
        left to :meth:`observe_envelopes` (several workers: one observes every envelope).
        ``origins``: where each payload came from (for routes back, see :attr:`origins`).
        ``compare``: the pushes too are stored only where they change what their cell holds
        (a worker taking what queued while it was away: the duty worker may have re-read and
        stored those values meanwhile; ``ReadingSink.ingest(late=True)``).
        """
        envelopes, where, _ = self._open_envelopes(payloads, origins, count=True)
        if not envelopes:
            return 0
        decoded, late = decode_keeping_late(
            self.decoder, self.replay, [f for e in envelopes for f in e.frames]
        )
        # with an observer keeping the duties, only it moves a following clock: the deadlines
        # must not run ahead of what it has seen; values are stamped at the vouched time
        now_us = max(
            to_epoch_us(self.clock.now()), self._arrival_us(envelopes, decoded, move_clock=duties)
        )
        if redelivered and decoded.rejected.get(RejectReason.REPLAYED):
            again = decoded.rejected.pop(RejectReason.REPLAYED)
            self.stats.frames_redelivered += again
            self.metrics.frames_redelivered.inc(again)
        for reason, count in decoded.rejected.items():
            self.stats.frames_rejected[reason] += count
            self.metrics.frames_rejected.labels(reason=reason.label).inc(count)
        accepted = decoded.accepted
        self.stats.frames_accepted += accepted
        self.metrics.frames_accepted.inc(accepted)
        if len(decoded.intervals) or len(decoded.registers) or decoded.messages:
            batch = decoded_to_batch(decoded, now_us)
            if compare:  # the values only: register reads and events are facts taken as they come
                empty = batch.registers.schema.empty_table()
                self.sink.ingest(ReadingBatch(batch.readings, empty), late=True)
                self.sink.ingest(
                    ReadingBatch(batch.readings.schema.empty_table(), batch.registers, batch.events)
                )
            else:
                self.sink.ingest(batch)
            self.stats.values_stored += batch.num_rows
            self.metrics.values_stored.inc(batch.num_rows)
        if late is not None:
            self.stats.frames_late += late.accepted
            self.metrics.frames_late.inc(late.accepted)
            if len(late.intervals) or len(late.registers) or late.messages:
                self.sink.ingest(decoded_to_batch(late, now_us), late=True)
        if duties:
            self._after_decode(envelopes, where, decoded, now_us)
        return accepted

    def observe_envelopes(
        self, payloads: Sequence[bytes], *, origins: Sequence[str] | None = None
    ) -> list[int | None]:
        """See envelopes another worker stores: keep deadlines, learn routes, take
        acknowledgements and poll answers. Frames are authenticated against a replay window of
        the observer's own, and nothing is stored or counted as accepted. Returns when each
        payload's values were counted as arrived (epoch µs; None: not an envelope)."""
        envelopes, where, positions = self._open_envelopes(payloads, origins, count=False)
        arrivals: list[int | None] = [None] * len(payloads)
        if not envelopes:
            return arrivals
        if self._observer is None:
            self._observer = (
                FrameDecoder(self.registry, self.keys),
                MemoryReplayGuard(len(self.route)),
            )
        decoder, replay = self._observer
        if not isinstance(self.clock, FollowClock):
            decoded = decode(decoder, replay, [f for e in envelopes for f in e.frames])
            now_us = to_epoch_us(self.clock.now())
            self._after_decode(envelopes, where, decoded, now_us)
            self.stats.frames_observed += decoded.accepted
            self.stats.envelopes_observed += len(envelopes)
            for i in positions:
                arrivals[i] = now_us
            return arrivals
        # behind a simulated fleet, an envelope arrived when its collector says it left (this
        # worker may be behind the fleet's clock), within what its frames vouch for: judge each
        # group at its own time
        by_time: dict[int, list[int]] = collections.defaultdict(list)
        for i, envelope in enumerate(envelopes):
            by_time[envelope.sent_at_us].append(i)
        for sent_us in sorted(by_time):
            group = [envelopes[i] for i in by_time[sent_us]]
            decoded = decode(decoder, replay, [f for e in group for f in e.frames])
            at_us = self._arrival_us(group, decoded, move_clock=True)
            self._after_decode(group, [where[i] for i in by_time[sent_us]], decoded, at_us)
            self.stats.frames_observed += decoded.accepted
            for i in by_time[sent_us]:
                arrivals[positions[i]] = at_us
        self.stats.envelopes_observed += len(envelopes)
        return arrivals

    def _open_envelopes(
        self, payloads: Sequence[bytes], origins: Sequence[str] | None, *, count: bool
    ) -> tuple[list[Envelope], list[str | None], list[int]]:
        """(the envelopes that decode, where each came from, its position in ``payloads``)."""
        envelopes: list[Envelope] = []
        where: list[str | None] = []
        positions: list[int] = []
        malformed: list[str] = []
        for i, payload in enumerate(payloads):
            try:
                envelopes.append(decode_envelope(payload))
            except FrameError as exc:
                malformed.append(str(exc))
                continue
            where.append(origins[i] if origins is not None else None)
            positions.append(i)
        if count:
            self.stats.envelopes += len(payloads)
            if malformed:
                self.stats.malformed_envelopes += len(malformed)
                self.metrics.envelopes_rejected.inc(len(malformed))
                self._malformed_log.report(malformed)
        return envelopes, where, positions

    def _arrival_us(
        self, envelopes: list[Envelope], decoded: DecodedFrames, *, move_clock: bool
    ) -> int:
        """When these envelopes left their collector as far as can be trusted: now, or behind
        a simulated fleet their send time, at most :data:`CLOCK_LEAD_US` past the frame times
        vouched for so far; a following clock moves there if ``move_clock``."""
        now_us = to_epoch_us(self.clock.now())
        if not isinstance(self.clock, FollowClock):
            return now_us
        vouched = vouched_time_us(decoded)
        if vouched is not None:
            self._vouched_us = max(self._vouched_us, vouched)
        if self._vouched_us < 0:
            return now_us  # nothing authentic seen yet: the clock stays where it is
        at_us = min(max(e.sent_at_us for e in envelopes), self._vouched_us + CLOCK_LEAD_US)
        if move_clock and at_us > now_us:
            self.clock.observe(from_epoch_us(at_us))
        return at_us

    def _after_decode(
        self,
        envelopes: list[Envelope],
        origins: list[str | None],
        decoded: DecodedFrames,
        now_us: int,
    ) -> None:
        owner = np.repeat(np.arange(len(envelopes)), [len(e.frames) for e in envelopes])
        collectors = np.array([self._collector_index(e.collector) for e in envelopes], np.int32)
        # route downlink through the collector each meter was last heard via (authentic only)
        heard = owner[decoded.frames.index]
        self.route[decoded.frames.meter_key] = collectors[heard]
        # a last gasp is heard, but says the opposite of "alive": event frames do not count
        spoke = decoded.frames.frame_type != int(FrameType.EVENT)
        self.heard_us[decoded.frames.meter_key[spoke]] = now_us
        for i in np.unique(heard).tolist():
            origin = origins[i]
            if origin is not None:
                self.origins[envelopes[i].collector] = origin
        if self.track_duties:
            for tracker in self.trackers.values():
                tracker.advance(now_us)  # a slot must be open before its values can count
            self._record_arrivals(decoded, now_us)
        for meter_key, message in decoded.messages:
            self._on_message(meter_key, message, now_us)

    def _collector_index(self, collector: str) -> int:
        index = self.collectors.get(collector)
        if index is None:
            index = self.collectors[collector] = len(self.collector_names)
            self.collector_names.append(collector)
        return index

    def _on_message(self, meter_key: int, message: object, now_us: int) -> None:
        if isinstance(message, CommandAck):
            self.commands.on_ack(meter_key, message, now_us)
            self._answered = True
        elif isinstance(message, PollResponse):
            self.polls.on_response(meter_key, message, now_us)
            self._answered = True
        elif isinstance(message, MeterEvent):
            self.stats.events[message.code.name.lower()] += 1
            log.info("meter %d event %s", meter_key, message.code.name)
            if message.code in (EventCode.POWER_FAIL, EventCode.POWER_RESTORE):
                self.power_events.append((meter_key, message.code, message.at_us))
            if message.code is EventCode.POWER_RESTORE:  # it holds what it could not send
                self._restored.append(meter_key)

    # ---- time-driven work -----------------------------------------------------------------

    def tick(self) -> None:
        """Judge deadlines, schedule re-reads, run commands and polls, send what is due."""
        now_us = to_epoch_us(self.clock.now())
        if self.track_duties:
            for tracker in self.trackers.values():
                tracker.advance(now_us)
            self._schedule_rereads(now_us)
        self._restored.clear()
        self.commands.tick(now_us)
        self.polls.tick(now_us)
        self._send_due(now_us)
        self._update_gauges()

    def send_freed(self) -> None:
        """Send what the answers since the last send made room for: a collector's queue then
        drains at the network's pace, not the caller's tick's (docs/network-model.md)."""
        if self._answered:
            self._send_due(to_epoch_us(self.clock.now()))

    def _send_due(self, now_us: int) -> None:
        self._answered = False
        outgoing: list[tuple[int, FrameType, PollRequest | Command]] = []
        outgoing += [
            (rec.meter_key, FrameType.COMMAND, cmd) for rec, cmd in self.commands.due(now_us)
        ]
        outgoing += [(key, FrameType.POLL_REQUEST, req) for key, req in self.polls.due(now_us)]
        if outgoing:
            self._send(outgoing, now_us)

    def _schedule_rereads(self, now_us: int) -> None:
        p = self.policy
        plans = (
            (Duty.A1, Resolution.MIN30, p.a1_rereads, p.late_reread_every),
            (Duty.A3, Resolution.MIN5, p.a3_rereads, p.late_reread_every),
            (Duty.A2, None, self._a2_rereads(), dt.timedelta(days=1)),
        )
        # a meter whose power came back is asked at once for every slot it missed (SPEC R2)
        restored = np.unique(np.array(self._restored, np.int64))
        self._restored.clear()
        for duty, resolution, delays, late in plans:
            tracker = self.trackers[duty]
            keys, ends = tracker.due_rereads(
                now_us, delays, late, restored if resolution is not None else None
            )
            if tracker.old_gaps and resolution is not None:
                old_keys, old_ends = tracker.due_old_gaps(
                    now_us, late // dt.timedelta(microseconds=1)
                )
                keys = np.concatenate([keys, np.array(old_keys, dtype=np.int64)])
                ends = np.concatenate([ends, np.array(old_ends, dtype=np.int64)])
            known = self.route[keys] >= 0 if len(keys) else np.empty(0, dtype=bool)
            keys, ends = keys[known], ends[known]
            if not len(keys):
                continue
            if resolution is None:  # a whole day of 5-min values
                ranges = [
                    (int(k), int(e) - US_PER_DAY + Resolution.MIN5.microseconds, int(e))
                    for k, e in zip(keys, ends, strict=True)
                ]
                res = Resolution.MIN5
            else:
                ranges = coalesce_ranges(keys, ends, resolution.microseconds)
                res = resolution
            for meter_key, first, last in ranges:
                self.commands.request(
                    meter_key,
                    CommandKind.RESEND,
                    (int(res), first // US_PER_MINUTE, last // US_PER_MINUTE),
                    now_us,
                    requested_by=f"reread:{duty.label}",
                )
            self.stats.rereads_requested += len(ranges)
            self.metrics.rereads.labels(duty=duty.label).inc(len(ranges))

    def _send(
        self, outgoing: list[tuple[int, FrameType, PollRequest | Command]], now_us: int
    ) -> None:
        if self.downlink is None:
            return
        by_collector: dict[int, list[bytes]] = collections.defaultdict(list)
        keys = np.array([key for key, _, _ in outgoing], dtype=np.int64)
        devices = self.registry.device_ids_of(keys).tolist()
        for (meter_key, frame_type, body), device in zip(outgoing, devices, strict=True):
            route = int(self.route[meter_key])
            if route < 0:
                continue
            self._down_counter[meter_key] += 1
            counter = int(self._down_counter[meter_key])
            frame = encode_frame(frame_type, device, counter, body, self.keys)
            by_collector[route].append(frame)
        for route, frames in by_collector.items():
            for start in range(0, len(frames), 1000):
                chunk = frames[start : start + 1000]
                envelope = encode_envelope(self.collector_names[route], now_us, 0, chunk)
                self.downlink(self.collector_names[route], envelope)
                self.stats.downlink_frames += len(chunk)

    def _update_gauges(self) -> None:
        for duty, summary in self.latest_slo().items():
            if summary.on_time_share is not None:
                self.metrics.on_time_share.labels(duty=duty.label).set(summary.on_time_share)

    # ---- reporting ------------------------------------------------------------------------

    def slo(self) -> list[DutySummary]:
        """Per duty and JST day: expected, on time, late, never received, delay percentiles."""
        return [s for tracker in self.trackers.values() for s in summarize(tracker)]

    def latest_slo(self) -> dict[Duty, DutySummary]:
        latest: dict[Duty, DutySummary] = {}
        for summary in self.slo():
            if summary.expected:
                latest[summary.duty] = summary
        return latest

    def expect_until(self, end_us: int) -> None:
        """The meters stop at ``end_us`` (a simulation's end): slots ending later are not owed,
        while what they sent before still arrives, is judged and re-read."""
        for tracker in self.trackers.values():
            tracker.open_until_us = end_us

    def slo_totals(self, through: dt.date | None = None) -> dict[Duty, tuple[int, int]]:
        """(on time, expected) per duty over every judged day (up to ``through``)."""
        totals: dict[Duty, tuple[int, int]] = {}
        for s in self.slo():
            if through is not None and s.day > through:
                continue
            on, exp = totals.get(s.duty, (0, 0))
            totals[s.duty] = (on + s.on_time, exp + s.expected)
        return totals
