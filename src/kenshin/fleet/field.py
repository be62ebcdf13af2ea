"""The field: simulated meters with their radios, the communication network and the collectors.

Frames leave meters at step boundaries, cross the network model (delay, loss, congestion, SPEC A6)
and reach their collector, which bundles what it has every ``collector_flush_s`` seconds into one
envelope for the head-end (end-to-end protected, so the collector only forwards). Downlink
envelopes from the head-end are split by the collector and cross the network to each meter, whose
answers travel back the same way, forwarded within ``ANSWER_FLUSH_S``: the head-end waits for
them (a command's acknowledgement frees its place on the collector for the next one). Everything
is a timed event, so the field runs as fast as possible (simulation, ``kenshin fleet --speed
max``) or in step with a clock (``kenshin up``).
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kenshin.aroute.codec.envelope import decode_envelope, encode_envelope
from kenshin.aroute.keys import KeyRing
from kenshin.aroute.network import Network
from kenshin.errors import FrameError
from kenshin.fleet.faults import FaultSchedule, Level
from kenshin.fleet.radio import MeterRadio, OutgoingFrames
from kenshin.fleet.simulator import Fleet

_UP, _DOWN = 0, 1
_DEVICE_ID = struct.Struct(">Q")  # frame bytes 2..10: the header is readable, the body is not


@dataclass(frozen=True, slots=True)
class UplinkEnvelope:
    at_us: int  # when the collector forwards it (the head-end's arrival time in simulation)
    collector: str
    payload: bytes
    frames: int


@dataclass
class FieldStats:
    frames_sent: int = 0  # by meters, uplink
    frames_lost: int = 0  # lost in the network before reaching a collector
    frames_forwarded: int = 0  # in envelopes to the head-end
    forwarded_by_type: Counter[int] = field(default_factory=Counter)  # frame type → frames
    envelopes: int = 0
    downlink_frames: int = 0
    downlink_lost: int = 0
    downlink_refused: int = 0  # meters refused them (forged, replayed, malformed)


ANSWER_FLUSH_S = 1.0  # a collector forwards answers to the head-end's requests this soon


class Field:
    def __init__(
        self, fleet: Fleet, radio: MeterRadio, network: Network, collector_flush_s: float = 60.0
    ) -> None:
        self.fleet = fleet
        self.radio = radio
        self.network = network
        self.flush_us = max(1, int(collector_flush_s * 1e6))
        self.answer_flush_us = int(min(ANSWER_FLUSH_S, collector_flush_s) * 1e6)
        self.stats = FieldStats()
        self._events: list[tuple[int, int, int, object]] = []
        self._seq = itertools.count()
        self._envelope_seq = itertools.count(1)
        # frames waiting at a collector for its next flush: (collector, flush time) -> frames
        self._bundles: dict[tuple[int, int], list[bytes]] = {}
        self._comm_loss = fleet.config.comm_loss
        self._loss_rng = np.random.default_rng(
            np.random.SeedSequence([fleet.config.seed, 0x4C4F53])
        )
        collector_faults = tuple(f for f in fleet.config.faults if f.level is Level.COLLECTOR)
        self._collector_faults = FaultSchedule(
            collector_faults, fleet.population.topology, len(network.collector_names)
        )

    @property
    def now_us(self) -> int:
        return self.fleet.meters.now_us

    def step(self) -> None:
        """Advance the meters 5 minutes and send what they owe; meters losing power send their
        last gasps first, meters getting it back their restore events (issue 15)."""
        self._power_changes()  # a fault from the very start of the run
        self.fleet.step()
        # before the boundary's pushes: a meter dark from the boundary on gasps and sends
        # nothing more (the push of the slot just ended waits for the power, then a re-read)
        self._power_changes()
        if len(self.fleet.switch_events):  # trips, re-closes, lockouts (issue 16)
            self._send_up(self.radio.switch_event_frames(self.fleet.switch_events))
        for out in self.radio.due():
            self._send_up(out)

    def _power_changes(self) -> None:
        if not self.fleet.faults.any:
            return
        now = self.now_us
        gasps, restores = self.radio.power_changes(self.fleet.dark_at(now), now)
        self._send_up(gasps, answer=True)  # at once: the energy lasts milliseconds
        self._send_up(restores)  # spread like pushes: a whole feeder comes back at once

    def _send_up(self, out: OutgoingFrames, *, answer: bool = False) -> None:
        """Into the network; scheduled pushes wait a random jitter first, answers do not."""
        if not len(out):
            return
        self.stats.frames_sent += len(out)
        delivery = self.network.send_up(out.meter_keys, out.sizes, out.sent_us, jitter=not answer)
        reached = delivery.delivered
        if self._comm_loss:  # random loss on top of the network model (issue 15 drills)
            reached = reached & (self._loss_rng.random(len(reached)) >= self._comm_loss)
        if self._collector_faults.any:  # a failed collector relays nothing (issue 15)
            down = self._collector_faults.collectors_down(out.sent_us)
            reached = reached & ~down[self.network.collector_of[out.meter_keys]]
        delivered = np.flatnonzero(reached)
        self.stats.frames_lost += len(out) - len(delivered)
        collectors = self.network.collector_of[out.meter_keys[delivered]]
        arrival = delivery.arrival_us[delivered]
        flush = self.answer_flush_us if answer else self.flush_us
        flush_at = -(-arrival // flush) * flush
        for i, collector, at in zip(delivered, collectors, flush_at, strict=True):
            key = (int(collector), int(at))
            bundle = self._bundles.get(key)
            if bundle is None:
                bundle = self._bundles[key] = []
                heapq.heappush(self._events, (int(at), next(self._seq), _UP, key))
            bundle.append(out.frames[i])

    @property
    def frames_in_flight(self) -> int:
        """Frames sent and still on their way to the head-end (in collectors' bundles)."""
        return sum(len(frames) for frames in self._bundles.values())

    def receive_downlink(self, collector: str, payload: bytes, now_us: int) -> None:
        """A downlink envelope reached ``collector`` at ``now_us``: forward each frame to its
        meter."""
        try:
            envelope = decode_envelope(payload)
        except FrameError:
            self.stats.downlink_refused += 1
            return
        frames = [bytes(f) for f in envelope.frames if len(f) >= 10]
        if not frames:
            return
        ids = np.fromiter(
            (_DEVICE_ID.unpack_from(f, 2)[0] for f in frames), dtype=np.uint64, count=len(frames)
        )
        keys = self.radio.registry.lookup(ids).astype(np.int64)
        known = keys >= 0
        keys = keys[known]
        frames = [f for f, k in zip(frames, known, strict=True) if k]
        self.stats.downlink_frames += len(frames)
        sizes = np.fromiter((len(f) for f in frames), dtype=np.int64, count=len(frames))
        delivery = self.network.send_down(keys, sizes, now_us)
        reached = delivery.delivered
        if self._collector_faults.any:
            down = self._collector_faults.collectors_down(now_us)
            reached = reached & ~down[self.network.collector_of[keys]]
        for i in np.flatnonzero(reached):
            at = int(delivery.arrival_us[i])
            heapq.heappush(self._events, (at, next(self._seq), _DOWN, frames[i]))
        self.stats.downlink_lost += int((~reached).sum())

    def due(self, until_us: int) -> Iterator[UplinkEnvelope]:
        """Envelopes reaching the head-end up to ``until_us``, in time order; meters answer
        downlink frames that reach them on the way."""
        while self._events and self._events[0][0] <= until_us:
            at, _, kind, item = heapq.heappop(self._events)
            if kind == _DOWN:
                assert isinstance(item, bytes)
                answer = self.radio.receive(item)
                if answer is None:
                    self.stats.downlink_refused += 1
                else:
                    self._send_up(OutgoingFrames(answer.meter_keys, answer.frames, at), answer=True)
                continue
            assert isinstance(item, tuple)
            frames = self._bundles.pop(item)
            collector = self.network.collector_names[item[0]]
            for start in range(0, len(frames), 2000):
                chunk = frames[start : start + 2000]
                payload = encode_envelope(collector, at, next(self._envelope_seq), chunk)
                self.stats.frames_forwarded += len(chunk)
                self.stats.forwarded_by_type.update(f[1] for f in chunk)
                self.stats.envelopes += 1
                yield UplinkEnvelope(at, collector, payload, len(chunk))


def build_field(
    fleet: Fleet,
    keys: KeyRing,
    network: Network,
    *,
    send_15min: bool,
    offpeak: tuple[dt.time, dt.time],
    control_key: Ed25519PublicKey | None = None,
) -> Field:
    """Radios for every meter of ``fleet`` (A2/A3 samples as the fleet chose them), on
    ``network``; ``control_key``: the business system's public key the meters check switching
    commands with (none: they refuse them)."""
    radio = MeterRadio(
        fleet.meters,
        keys,
        fleet.sampled,
        fleet.realtime,
        send_15min=send_15min,
        offpeak=offpeak,
        seed=fleet.config.seed,
        control_key=control_key,
    )
    return Field(fleet, radio, network)
