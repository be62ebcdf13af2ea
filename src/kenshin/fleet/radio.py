"""The A-route side of every simulated meter: what it sends when, and how it answers the head-end.

Each meter owns a device id, a key per direction and frame counters (SPEC X3, X4). After every
5-minute step the radio produces the frames that are due (SPEC A1–A3, A5):

- every 30 min, ``PUSH_SCHEDULED`` from every meter: the 30-min values (reactive too on HV), the two
  15-min values when the meter's soft switch says 15 (A5), and the register reads (M5);
- every 5 min, ``PUSH_5MIN_REALTIME`` from meters with real-time sending on (A3);
- once a day, inside the off-peak window, ``PUSH_5MIN_HISTORICAL`` with the previous day's 5-min
  values from the A2 sample (meters already sending in real time skip it).

Downlink frames are polls and commands; the meter checks them itself (authentic, fresh counter,
within its capabilities) before acting, so a forged or replayed command does nothing (X2).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kenshin.aroute.authorization import refusal
from kenshin.aroute.codec.decode import open_downlink
from kenshin.aroute.codec.encode import encode_frame, encode_interval_frames
from kenshin.aroute.frames import (
    AckStatus,
    Command,
    CommandAck,
    CommandKind,
    FrameType,
    MeterEvent,
    OperatingState,
    PollRequest,
    PollResponse,
)
from kenshin.aroute.keys import KeyRing
from kenshin.aroute.messages import IntervalBlock, RegisterBlock
from kenshin.aroute.registry import MeterRegistry
from kenshin.core.channels import Channel
from kenshin.core.events import EventCode
from kenshin.core.grouping import rank_within
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.switch import SwitchState, Trigger, next_state
from kenshin.core.timeslots import US_PER_DAY, US_PER_MINUTE, Resolution
from kenshin.errors import CapabilityError, FrameError
from kenshin.fleet.faults import LAST_GASP_DELIVERY
from kenshin.fleet.limiter import SwitchEvents
from kenshin.fleet.meters import MeterFleet, snapshot_differences

log = logging.getLogger("kenshin.fleet")

Keys = npt.NDArray[np.int64]
_JST_US = 9 * 60 * US_PER_MINUTE
_FWD, _REV, _Q, _V = (
    Channel.ACTIVE_FORWARD,
    Channel.ACTIVE_REVERSE,
    Channel.REACTIVE,
    Channel.VOLTAGE,
)
MAX_RESEND_SLOTS = 288  # one day of 5-min values fits a frame comfortably


@dataclass(frozen=True, slots=True)
class OutgoingFrames:
    """Frames leaving meters at one instant: ``frames[i]`` comes from ``meter_keys[i]``."""

    meter_keys: Keys
    frames: list[bytes]
    sent_us: int

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def sizes(self) -> npt.NDArray[np.int64]:
        return np.fromiter((len(f) for f in self.frames), dtype=np.int64, count=len(self.frames))


class MeterRadio:
    def __init__(
        self,
        meters: MeterFleet,
        keys: KeyRing,
        a2: npt.NDArray[np.bool_],
        a3: npt.NDArray[np.bool_],
        *,
        send_15min: bool,
        offpeak: tuple[dt.time, dt.time],
        seed: int,
        control_key: Ed25519PublicKey | None = None,
    ) -> None:
        """``control_key``: the business system's public key the meters were provisioned with;
        without one they refuse every switching command (issue 16, ``aroute.authorization``)."""
        pop = meters.population
        n = len(pop)
        self.meters = meters
        self.control_key = control_key
        self.last_nonce = np.zeros(n, dtype=np.uint64)  # of the last switching command done
        self.unauthorized = 0  # switching commands refused for their signature
        self.population = pop
        self.keys = keys
        self.device_ids = pop.device_id.astype(np.uint64)
        self.registry = MeterRegistry(self.device_ids, pop.meter_key)
        self.gen2 = pop.generation == Generation.GEN2
        self.hv = pop.meter_class >= MeterClass.HV
        self.has_switch = meters.has_switch
        self.up_counter = np.zeros(n, dtype=np.int64)  # last counter used
        self.down_seen = np.full(n, -1, dtype=np.int64)  # highest downlink counter accepted
        self.soft_switch_15 = self.gen2 & send_15min
        self.a2 = a2 & self.gen2
        self.realtime = a3 & self.gen2
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x524144]))  # "RAD"
        start_min = offpeak[0].hour * 60 + offpeak[0].minute
        end_min = offpeak[1].hour * 60 + offpeak[1].minute
        span = (end_min - start_min) % 1440 or 1440
        # each A2 meter's send time: a 5-min step inside the off-peak window (JST)
        self.a2_minute = (start_min + 5 * rng.integers(0, max(1, span // 5), n)) % 1440
        self.frames_sent = 0
        # issue 15: a meter without grid power sends and answers nothing
        self.powered = np.ones(n, dtype=bool)
        self.last_gasp_share = np.where(
            self.gen2, LAST_GASP_DELIVERY[Generation.GEN2], LAST_GASP_DELIVERY[Generation.GEN1]
        )
        self._gasp_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x474153]))  # "GAS"
        self.last_gasps = 0
        self.restores = 0

    # ---- power ----------------------------------------------------------------------------

    def power_changes(
        self, dark: npt.NDArray[np.bool_], now_us: int
    ) -> tuple[OutgoingFrames, OutgoingFrames]:
        """Meters losing power at ``now_us`` send a last gasp (``POWER_FAIL``), some of them
        (:data:`LAST_GASP_DELIVERY`); meters whose power is back send ``POWER_RESTORE`` (SPEC
        R1, R2). Returns (last gasps, restores)."""
        failing = np.flatnonzero(self.powered & dark)
        restored = np.flatnonzero(~self.powered & ~dark)
        self.powered = ~dark
        gasping = failing[self._gasp_rng.random(len(failing)) < self.last_gasp_share[failing]]
        self.last_gasps += len(gasping)
        self.restores += len(restored)
        return (
            self._events(gasping, EventCode.POWER_FAIL, now_us),
            self._events(restored, EventCode.POWER_RESTORE, now_us),
        )

    def _events(self, keys: Keys, code: EventCode, now_us: int) -> OutgoingFrames:
        counters = self._next_counters(keys)
        frames = [
            encode_frame(
                FrameType.EVENT,
                int(self.device_ids[k]),
                int(c),
                MeterEvent(code, now_us),
                self.keys,
            )
            for k, c in zip(keys, counters, strict=True)
        ]
        return OutgoingFrames(keys, frames, now_us)

    def switch_event_frames(self, events: SwitchEvents) -> OutgoingFrames:
        """Trips, re-closes and lockouts of the last step (issue 16, SPEC R3), each dated when
        it happened, with the limit in force as detail; sent at the step's end by meters with
        grid power (the meter is fed from the line side of its switch)."""
        sending = self.powered[events.keys]
        keys = events.keys[sending]
        counters = self._next_counters_repeating(keys)  # a trip and its re-close: two frames
        limits = self.meters.limit_in_force(self.meters.now_us)
        frames = [
            encode_frame(
                FrameType.EVENT,
                int(self.device_ids[k]),
                int(c),
                MeterEvent(EventCode(int(code)), int(at), int(limits[k])),
                self.keys,
            )
            for k, c, code, at in zip(
                keys, counters, events.codes[sending], events.at_us[sending], strict=True
            )
        ]
        self.frames_sent += len(frames)
        return OutgoingFrames(keys, frames, self.meters.now_us)

    # ---- uplink ---------------------------------------------------------------------------

    def due(self) -> list[OutgoingFrames]:
        """The frames every meter sends at the current step (call after each 5-min step)."""
        now = self.meters.now_us
        out: list[OutgoingFrames] = []
        if now % Resolution.MIN30.microseconds == 0:
            out.extend(self._scheduled(now))
        rt = np.flatnonzero(self.realtime & self.powered)
        if len(rt):
            out.append(self._five_minute(FrameType.PUSH_5MIN_REALTIME, rt, now, 1))
        minute_of_day = ((now + _JST_US) // US_PER_MINUTE) % 1440
        a2_now = np.flatnonzero(
            self.a2 & ~self.realtime & self.powered & (self.a2_minute == minute_of_day)
        )
        if len(a2_now):
            out.extend(self._historical(a2_now, now))
        out = [o for o in out if len(o)]
        self.frames_sent += sum(len(o) for o in out)
        return out

    def _next_counters(self, keys: Keys) -> npt.NDArray[np.int64]:
        """The next frame counter of each of ``keys`` (distinct meters)."""
        self.up_counter[keys] += 1
        return self.up_counter[keys].copy()

    def _next_counters_repeating(self, keys: Keys) -> npt.NDArray[np.int64]:
        """The same where a meter sends several frames at once: its counters rise in the
        order of ``keys``."""
        counters = self.up_counter[keys] + rank_within(keys) + 1
        np.add.at(self.up_counter, keys, 1)
        return counters

    def _encode(
        self,
        frame_type: FrameType,
        keys: Keys,
        blocks: list[IntervalBlock],
        registers: list[RegisterBlock],
        now: int,
    ) -> OutgoingFrames:
        frames = encode_interval_frames(
            frame_type,
            self.device_ids[keys],
            self._next_counters(keys),
            blocks,
            registers,
            self.keys,
        )
        return OutgoingFrames(keys, frames, now)

    def _interval_block(
        self, resolution: Resolution, channel: Channel, keys: Keys, ends_us: npt.NDArray[np.int64]
    ) -> IntervalBlock:
        ring = self.meters.ring(resolution)
        times = np.concatenate([[ends_us[0] - resolution.microseconds], ends_us])
        rows = ring.rows_for(times)
        snaps = ring.data[channel][rows[:, None], keys[None, :]]  # only the cells needed
        values = snapshot_differences(snaps, channel)
        return IntervalBlock(resolution, channel, keys.astype(np.int32), ends_us, values)

    def _registers(
        self, channels: tuple[Channel, ...], keys: Keys, at_us: int
    ) -> list[RegisterBlock]:
        ring = (
            self.meters.ring30 if at_us % Resolution.MIN30.microseconds == 0 else self.meters.ring5
        )
        row = ring.rows_for(np.array([at_us], dtype=np.int64))[0]
        return [
            RegisterBlock(ch, keys.astype(np.int32), at_us, ring.data[ch][row, keys])
            for ch in channels
        ]

    def _scheduled(self, now: int) -> list[OutgoingFrames]:
        out = []
        end30 = np.array([now], dtype=np.int64)
        m15 = Resolution.MIN15.microseconds
        end15 = np.array([now - m15, now], dtype=np.int64)
        for hv in (False, True):
            for fifteen in (False, True):
                keys = np.flatnonzero(
                    (self.hv == hv) & (self.soft_switch_15 == fifteen) & self.powered
                )
                if not len(keys):
                    continue
                energy = (_FWD, _REV, _Q) if hv else (_FWD, _REV)
                blocks = [self._interval_block(Resolution.MIN30, ch, keys, end30) for ch in energy]
                if fifteen:
                    blocks += [
                        self._interval_block(Resolution.MIN15, ch, keys, end15)
                        for ch in (_FWD, _REV)
                    ]
                registers = self._registers(energy, keys, now)
                out.append(self._encode(FrameType.PUSH_SCHEDULED, keys, blocks, registers, now))
        return out

    def _five_channels(self, keys: Keys) -> list[tuple[Keys, tuple[Channel, ...]]]:
        lv, hv = keys[~self.hv[keys]], keys[self.hv[keys]]
        return [(lv, (_FWD, _REV, _Q, _V)), (hv, (_FWD, _REV, _Q))]

    def _five_minute(
        self, frame_type: FrameType, keys: Keys, last_end: int, count: int
    ) -> OutgoingFrames:
        step = Resolution.MIN5.microseconds
        ends = last_end - np.arange(count - 1, -1, -1, dtype=np.int64) * step
        parts = []
        for group, channels in self._five_channels(keys):
            if len(group):
                blocks = [self._interval_block(Resolution.MIN5, ch, group, ends) for ch in channels]
                registers = self._registers((_FWD, _REV, _Q), group, last_end)
                parts.append(self._encode(frame_type, group, blocks, registers, self.meters.now_us))
        return _concat(parts, self.meters.now_us)

    def _historical(self, keys: Keys, now: int) -> list[OutgoingFrames]:
        """Yesterday's 288 values (JST), if the recorder still holds them."""
        midnight = (now + _JST_US) // US_PER_DAY * US_PER_DAY - _JST_US
        try:
            return [self._five_minute(FrameType.PUSH_5MIN_HISTORICAL, keys, midnight, 288)]
        except CapabilityError:
            log.debug("5-min recorder too short for a day of A2 values; batch skipped")
            return []

    # ---- downlink -------------------------------------------------------------------------

    def receive(self, frame: bytes) -> OutgoingFrames | None:
        """Act on one downlink frame; return the answer frames, or None if the frame is refused."""
        try:
            device_id, counter, body = open_downlink(frame, self.keys)
        except FrameError as exc:
            log.info("meter refused a downlink frame: %s", exc)
            return None
        key = int(self.registry.lookup(np.array([device_id], dtype=np.uint64))[0])
        if key < 0 or not self.powered[key]:
            return None  # not one of ours, or without power: a real meter would not hear it
        if counter <= self.down_seen[key]:
            log.info("meter %d refused a replayed downlink frame (counter %d)", key, counter)
            return None
        self.down_seen[key] = counter
        if isinstance(body, PollRequest):
            return self._single(key, FrameType.POLL_RESPONSE, self._poll(key, body))
        assert isinstance(body, Command)
        ack, data = self._command(key, body)
        answer = self._single(key, FrameType.COMMAND_ACK, ack)
        if data is not None:
            return _concat([data, answer], self.meters.now_us)
        return answer

    def _single(
        self, key: int, frame_type: FrameType, body: PollResponse | CommandAck
    ) -> OutgoingFrames:
        counter = int(self._next_counters(np.array([key]))[0])
        frame = encode_frame(frame_type, int(self.device_ids[key]), counter, body, self.keys)
        self.frames_sent += 1
        return OutgoingFrames(np.array([key], dtype=np.int64), [frame], self.meters.now_us)

    def _poll(self, key: int, request: PollRequest) -> PollResponse:
        m = self.meters
        state = 0
        if m.switch_closed[key]:
            state |= OperatingState.SWITCH_CLOSED | OperatingState.POWER_ON
        if m.switch_state[key] == SwitchState.LOCKED_OUT:
            state |= OperatingState.LOCKED_OUT
        if self.realtime[key]:
            state |= OperatingState.REALTIME_5MIN
        if self.soft_switch_15[key]:
            state |= OperatingState.SOFT_SWITCH_15
        amps = m.instantaneous_current_a(np.array([key]))[:, 0]
        fwd, rev = (
            b.registers[0] for b in self._registers((_FWD, _REV), np.array([key]), m.now_us)
        )
        return PollResponse(
            request_id=request.request_id,
            measured_at_us=m.now_us,
            state=int(state),
            ampere_limit_a=int(m.limit_in_force(m.now_us)[key]) if self.has_switch[key] else 0,
            power_w=round(float(m.power_w[key])),
            current_r_da=round(float(amps[0]) * 10),
            current_t_da=round(float(amps[1]) * 10),
            voltage_dv=0 if self.hv[key] else int(m.voltage_dv[key]),
            forward_register=int(fwd),
            reverse_register=int(rev),
        )

    def _command(self, key: int, cmd: Command) -> tuple[CommandAck, OutgoingFrames | None]:
        def ack(status: AckStatus, detail: int = 0) -> tuple[CommandAck, None]:
            return CommandAck(cmd.command_id, status, detail), None

        spec = self.meters.spec_of(key)  # with the utility's recording periods (M4)
        kind = cmd.kind
        if kind in (
            CommandKind.SET_AMPERE_LIMIT,
            CommandKind.SWITCH_OPEN,
            CommandKind.SWITCH_CLOSE,
        ):
            if not spec.has_switch or spec.max_ampere_limit_a is None:
                return ack(AckStatus.REJECTED_UNSUPPORTED)
            args = (cmd.arg1, cmd.arg2, cmd.arg3)
            last = int(self.last_nonce[key])
            why = refusal(
                self.control_key,
                int(self.device_ids[key]),
                kind,
                args,
                cmd.authorization,
                self.meters.now_us,
                last,
            )
            if why is not None:
                self.unauthorized += 1
                log.warning("meter %d refused %s: %s", key, kind.name, why)
                return ack(AckStatus.REJECTED_UNAUTHORIZED)
            assert cmd.authorization is not None
            if cmd.authorization.nonce == last:  # the same command again (its ack was lost)
                return ack(AckStatus.OK, cmd.arg1 if kind is CommandKind.SET_AMPERE_LIMIT else 0)
            self.last_nonce[key] = cmd.authorization.nonce
            if kind is CommandKind.SET_AMPERE_LIMIT:
                if not 1 <= cmd.arg1 <= spec.max_ampere_limit_a:
                    return ack(AckStatus.REJECTED_OUT_OF_RANGE)
                m = self.meters
                if cmd.arg2 or cmd.arg3:  # an emergency profile: from arg3, for arg2 minutes
                    start = cmd.arg3 * US_PER_MINUTE if cmd.arg3 else m.now_us
                    m.set_profile(key, cmd.arg1, start, start + cmd.arg2 * US_PER_MINUTE)
                else:
                    m.ampere_limit_a[key] = cmd.arg1
                    m.profile_end_us[key] = m.next_end_us[key] = 0  # a lasting limit ends them
                return ack(AckStatus.OK, cmd.arg1)
            trigger = (
                Trigger.REMOTE_RECONNECT
                if kind is CommandKind.SWITCH_CLOSE
                else Trigger.REMOTE_DISCONNECT
            )
            states = self.meters.switch_state
            states[key] = int(next_state(SwitchState(int(states[key])), trigger))
            return ack(AckStatus.OK)
        if kind is CommandKind.SET_SOFT_SWITCH:
            if cmd.arg1 not in (15, 30):
                return ack(AckStatus.REJECTED_OUT_OF_RANGE)
            if cmd.arg1 == 15 and not spec.records(_FWD, Resolution.MIN15):
                return ack(AckStatus.REJECTED_UNSUPPORTED)
            self.soft_switch_15[key] = cmd.arg1 == 15
            return ack(AckStatus.OK, cmd.arg1)
        if kind is CommandKind.SET_REALTIME_5MIN:
            if not spec.records(_FWD, Resolution.MIN5):
                return ack(AckStatus.REJECTED_UNSUPPORTED)
            self.realtime[key] = bool(cmd.arg1)
            return ack(AckStatus.OK, int(bool(cmd.arg1)))
        if kind is CommandKind.RESEND:
            return self._resend(key, cmd, spec.records(_FWD, Resolution.MIN5))
        return ack(AckStatus.REJECTED_UNSUPPORTED)

    def _resend(
        self, key: int, cmd: Command, has_5min: bool
    ) -> tuple[CommandAck, OutgoingFrames | None]:
        try:
            resolution = Resolution(cmd.arg1)
        except ValueError:
            return CommandAck(cmd.command_id, AckStatus.REJECTED_OUT_OF_RANGE), None
        first, last = cmd.arg2 * US_PER_MINUTE, cmd.arg3 * US_PER_MINUTE
        step = resolution.microseconds
        count = (last - first) // step + 1
        bad = first % step or last % step or not 1 <= count <= MAX_RESEND_SLOTS
        if bad or last > self.meters.now_us or resolution is Resolution.MIN1:
            return CommandAck(cmd.command_id, AckStatus.REJECTED_OUT_OF_RANGE), None
        if resolution is not Resolution.MIN30 and not has_5min:
            return CommandAck(cmd.command_id, AckStatus.REJECTED_UNSUPPORTED), None
        if not self.meters.holds(key, resolution, first):
            # older than the meter's recording period (SPEC M4): gone, whatever the ring holds
            return CommandAck(cmd.command_id, AckStatus.REJECTED_NOT_HELD), None
        keys = np.array([key], dtype=np.int64)
        ends = first + np.arange(count, dtype=np.int64) * step
        hv = bool(self.hv[key])
        channels: tuple[Channel, ...]
        if resolution is Resolution.MIN5:
            channels = (_FWD, _REV, _Q) if hv else (_FWD, _REV, _Q, _V)
        elif resolution is Resolution.MIN15:
            channels = (_FWD, _REV)
        else:
            channels = (_FWD, _REV, _Q) if hv else (_FWD, _REV)
        try:
            blocks = [self._interval_block(resolution, ch, keys, ends) for ch in channels]
            registers = (
                self._registers(tuple(c for c in channels if c is not _V), keys, last)
                if last % Resolution.MIN30.microseconds == 0 or resolution is Resolution.MIN5
                else []
            )
        except CapabilityError:
            return CommandAck(cmd.command_id, AckStatus.REJECTED_NOT_HELD), None
        data = self._encode(FrameType.RESEND_RESPONSE, keys, blocks, registers, self.meters.now_us)
        self.frames_sent += 1
        return CommandAck(cmd.command_id, AckStatus.OK, count), data


def _concat(parts: list[OutgoingFrames], now: int) -> OutgoingFrames:
    if not parts:
        return OutgoingFrames(np.empty(0, dtype=np.int64), [], now)
    keys = np.concatenate([p.meter_keys for p in parts])
    frames = [f for p in parts for f in p.frames]
    return OutgoingFrames(keys, frames, now)
