"""A meter's own checks on downlink frames (SPEC X2: no unintended control) and its answers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from kenshin.aroute.codec.decode import FrameDecoder
from kenshin.aroute.codec.encode import encode_frame
from kenshin.aroute.frames import AckStatus, Command, CommandKind, FrameType, PollRequest
from kenshin.aroute.keys import DEV_MASTER_KEY, KeyRing
from kenshin.aroute.registry import MeterRegistry
from kenshin.aroute.replay import MemoryReplayGuard
from kenshin.control.signing import ControlSigner
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.timeslots import JST, US_PER_MINUTE, Resolution
from kenshin.errors import InvalidSetting
from kenshin.fleet.radio import MeterRadio
from kenshin.fleet.simulator import Fleet, FleetConfig

START = dt.datetime(2026, 7, 1, tzinfo=JST)
CONTROL = ControlSigner.generate()  # the business system's key; the meters hold its public half


def _radio(fleet: Fleet, send_15min: bool = True) -> MeterRadio:
    return MeterRadio(
        fleet.meters,
        KeyRing(DEV_MASTER_KEY),
        fleet.sampled,
        fleet.realtime,
        send_15min=send_15min,
        offpeak=(dt.time(1), dt.time(5)),
        seed=3,
        control_key=CONTROL.public_key,
    )


def _signed(radio: MeterRadio, key: int, command_id: int, kind: CommandKind, *args: int) -> Command:
    """A switching command as the business system signs it for this meter, valid an hour."""
    device = int(radio.device_ids[key])
    authorization = CONTROL.authorize(device, kind, args, radio.meters.now_us)
    return Command(command_id, kind, *(*args, 0, 0, 0)[:3], authorization)


@pytest.fixture
def radio() -> MeterRadio:
    fleet = Fleet(FleetConfig(n_meters=60, start=START, seed=3))
    for _ in range(12):  # an hour of values in the recorders
        fleet.step()
    return _radio(fleet)


def _lv_gen2(radio: MeterRadio) -> int:
    pop = radio.population
    ok = (pop.generation == Generation.GEN2) & (pop.meter_class == MeterClass.LV_1P3W)
    return int(np.flatnonzero(ok)[0])


def _down(
    radio: MeterRadio,
    key: int,
    counter: int,
    body: Command | PollRequest,
    keys: KeyRing | None = None,
) -> bytes:
    frame_type = FrameType.COMMAND if isinstance(body, Command) else FrameType.POLL_REQUEST
    return encode_frame(frame_type, int(radio.device_ids[key]), counter, body, keys or radio.keys)


def _ack(radio: MeterRadio, frames: list[bytes]) -> tuple[AckStatus, int]:
    n = len(radio.device_ids)
    registry = MeterRegistry(radio.device_ids, np.arange(n, dtype=np.int32))
    decoder = FrameDecoder(registry, radio.keys)
    authentic = decoder.authenticate(frames)
    admitted = MemoryReplayGuard(n).admit(authentic.meter_key, authentic.counter)
    decoded = decoder.parse(authentic, admitted)
    [(_, ack)] = [m for m in decoded.messages if hasattr(m[1], "status")]
    return ack.status, ack.detail  # type: ignore[union-attr]


def test_a_command_acts_once_and_its_replay_does_nothing(radio) -> None:
    key = _lv_gen2(radio)
    frame = _down(radio, key, 10, _signed(radio, key, 1, CommandKind.SET_AMPERE_LIMIT, 30))
    answer = radio.receive(frame)
    assert answer is not None and _ack(radio, answer.frames) == (AckStatus.OK, 30)
    assert int(radio.meters.ampere_limit_a[key]) == 30
    radio.meters.ampere_limit_a[key] = 40
    assert radio.receive(frame) is None  # the same frame again: refused
    opening = _signed(radio, key, 2, CommandKind.SWITCH_OPEN)
    assert radio.receive(_down(radio, key, 9, opening)) is None  # an old frame counter
    assert int(radio.meters.ampere_limit_a[key]) == 40 and bool(radio.meters.switch_closed[key])


def test_forged_and_misaddressed_frames_do_nothing(radio) -> None:
    key = _lv_gen2(radio)
    forged = _down(radio, key, 50, Command(3, CommandKind.SWITCH_OPEN), KeyRing(bytes(32)))
    assert radio.receive(forged) is None
    flipped = bytearray(_down(radio, key, 51, Command(4, CommandKind.SWITCH_OPEN)))
    flipped[-1] ^= 0x80
    assert radio.receive(bytes(flipped)) is None
    assert bool(radio.meters.switch_closed[key])


def test_resend_returns_the_recorded_values_and_refuses_what_is_not_held(radio) -> None:
    key = _lv_gen2(radio)
    now = radio.meters.now_us
    last = now // Resolution.MIN30.microseconds * Resolution.MIN30.microseconds
    args = (30, last // US_PER_MINUTE, last // US_PER_MINUTE)
    answer = radio.receive(_down(radio, key, 60, Command(5, CommandKind.RESEND, *args)))
    assert answer is not None and _ack(radio, answer.frames) == (AckStatus.OK, 1)
    data = [f for f in answer.frames if f[1] == FrameType.RESEND_RESPONSE]
    assert len(data) == 1
    too_old = (
        30,
        (last - 400 * 86400 * 10**6) // US_PER_MINUTE,
        (last - 400 * 86400 * 10**6) // US_PER_MINUTE,
    )
    answer = radio.receive(_down(radio, key, 61, Command(6, CommandKind.RESEND, *too_old)))
    assert answer is not None and _ack(radio, answer.frames)[0] is AckStatus.REJECTED_NOT_HELD


def test_a_meter_refuses_to_resend_what_is_older_than_its_recording_period() -> None:
    """SPEC M4: with the utility's periods set short (30/15-min values a day, 5-min values two
    days) a meter refuses older values as not held, even where its ring still has them."""
    day = dt.timedelta(days=1)
    config = FleetConfig(
        n_meters=60,
        start=START,
        seed=3,
        recording_period_30_15=day,
        recording_period_5=2 * day,
    )
    fleet = Fleet(config)
    for _ in range(12 * 50):  # 50 hours
        fleet.step()
    radio = _radio(fleet, send_15min=False)
    key = _lv_gen2(radio)
    gen1 = int(np.flatnonzero(radio.population.generation == Generation.GEN1)[0])
    now_min = fleet.meters.now_us // US_PER_MINUTE
    counter = iter(range(100, 200))

    def resend(meter: int, minutes: int, hours_ago: int) -> AckStatus:
        end = (now_min - hours_ago * 60) // minutes * minutes
        command = Command(next(counter), CommandKind.RESEND, minutes, end, end)
        answer = radio.receive(_down(radio, meter, next(counter), command))
        assert answer is not None
        return _ack(radio, answer.frames)[0]

    assert fleet.meters.ring30.depth > 48 * 2  # gen-1 meters keep 45 days: the ring has more
    assert resend(key, 30, 23) is AckStatus.OK
    assert resend(key, 30, 25) is AckStatus.REJECTED_NOT_HELD
    assert resend(key, 15, 23) is AckStatus.OK  # recorded, though the soft switch is off
    assert resend(key, 15, 25) is AckStatus.REJECTED_NOT_HELD
    assert resend(key, 5, 47) is AckStatus.OK
    assert resend(key, 5, 49) is AckStatus.REJECTED_NOT_HELD
    assert resend(gen1, 30, 49) is AckStatus.OK  # gen-1 keeps 45 days (M3)


def test_recording_periods_shorter_than_sending_needs_are_refused() -> None:
    with pytest.raises(InvalidSetting, match="recording_period_5"):
        FleetConfig(n_meters=5, recording_period_5=dt.timedelta(hours=30))
    with pytest.raises(InvalidSetting, match="recording_period_30_15"):
        FleetConfig(n_meters=5, recording_period_30_15=dt.timedelta(hours=12))


def test_hv_meter_refuses_switching_itself(radio) -> None:
    pop = radio.population
    hv = np.flatnonzero(pop.meter_class >= MeterClass.HV)
    assert len(hv), "this seed's fleet has HV meters"
    key = int(hv[0])
    answer = radio.receive(_down(radio, key, 5, Command(7, CommandKind.SWITCH_OPEN)))
    assert answer is not None
    assert _ack(radio, answer.frames)[0] is AckStatus.REJECTED_UNSUPPORTED


# ---- switching commands need the business system's signature (issue 16; SPEC X1, X2) ----------


def _status(radio: MeterRadio, key: int, counter: int, command: Command) -> AckStatus:
    answer = radio.receive(_down(radio, key, counter, command))
    assert answer is not None  # authentic on the A-route: the meter answers
    return _ack(radio, answer.frames)[0]


def test_the_head_end_key_alone_opens_no_switch(radio) -> None:
    """An attacker holding the head-end's A-route key (frames authentic, counters fresh) but not
    the business system's control key changes no switch and no limit."""
    key = _lv_gen2(radio)
    device = int(radio.device_ids[key])
    other = ControlSigner.generate()  # a key the meter was not provisioned with
    now = radio.meters.now_us
    hour = 3_600_000_000
    opening, closing, limiting = (
        CommandKind.SWITCH_OPEN,
        CommandKind.SWITCH_CLOSE,
        CommandKind.SET_AMPERE_LIMIT,
    )

    def command(number: int, kind: CommandKind, arg: int, authorization=None) -> Command:  # type: ignore[no-untyped-def]
        return Command(number, kind, arg, 0, 0, authorization)

    attempts = [
        command(1, opening, 0),  # unsigned
        command(2, opening, 0, other.authorize(device, opening, (), now)),  # another key
        # signed for another meter, or another command, or another limit
        command(3, opening, 0, CONTROL.authorize(device + 1, opening, (), now)),
        command(4, opening, 0, CONTROL.authorize(device, closing, (), now)),
        command(5, limiting, 10, CONTROL.authorize(device, limiting, (30,), now)),
        # out of its window: expired, or not yet valid
        command(6, opening, 0, CONTROL.authorize(device, opening, (), now - 2 * hour)),
        command(7, opening, 0, CONTROL.authorize(device, opening, (), now + hour)),
    ]
    limit = int(radio.meters.ampere_limit_a[key])
    for counter, command in enumerate(attempts, start=100):
        assert _status(radio, key, counter, command) is AckStatus.REJECTED_UNAUTHORIZED, command
    assert bool(radio.meters.switch_closed[key]) and int(radio.meters.ampere_limit_a[key]) == limit
    assert radio.unauthorized == len(attempts)


def test_a_signed_command_replayed_or_retried(radio) -> None:
    key = _lv_gen2(radio)
    first = _signed(radio, key, 1, CommandKind.SET_AMPERE_LIMIT, 20)
    second = _signed(radio, key, 2, CommandKind.SET_AMPERE_LIMIT, 30)
    assert _status(radio, key, 200, second) is AckStatus.OK
    assert int(radio.meters.ampere_limit_a[key]) == 30
    # the older one, in a fresh frame: its nonce is behind the last one done
    assert _status(radio, key, 201, first) is AckStatus.REJECTED_UNAUTHORIZED
    assert int(radio.meters.ampere_limit_a[key]) == 30
    # the same command retried (its ack was lost): acknowledged, not done again
    radio.meters.ampere_limit_a[key] = 40  # (as if changed on site since)
    assert _status(radio, key, 202, second) is AckStatus.OK
    assert int(radio.meters.ampere_limit_a[key]) == 40
    # a meter provisioned with no control key refuses every switching command
    radio.control_key = None
    assert _status(radio, key, 203, _signed(radio, key, 3, CommandKind.SWITCH_OPEN)) is (
        AckStatus.REJECTED_UNAUTHORIZED
    )
    assert bool(radio.meters.switch_closed[key])


def test_an_emergency_profile_starts_ends_and_follows_by_itself(radio) -> None:
    """SET_AMPERE_LIMIT with minutes and a start (the DLMS emergency profile): in force for its
    period only, the meter goes back by itself; a second one given while the first runs waits
    for its own start."""
    key = _lv_gen2(radio)
    m = radio.meters
    base = int(m.ampere_limit_a[key])
    now_min = m.now_us // US_PER_MINUTE
    start, end = (now_min + 10) * US_PER_MINUTE, (now_min + 40) * US_PER_MINUTE
    limit = CommandKind.SET_AMPERE_LIMIT
    assert _status(radio, key, 300, _signed(radio, key, 1, limit, 20, 30, now_min + 10)) is (
        AckStatus.OK
    )
    assert int(m.ampere_limit_a[key]) == base  # the lasting limit is untouched
    at = m.limit_in_force
    assert at(start - 1)[key] == base and at(start)[key] == 20 and at(end - 1)[key] == 20
    assert at(end)[key] == base  # back by itself
    # while it runs, a follower from its 30th minute
    m.now_us = start + 5 * US_PER_MINUTE
    follow = _signed(radio, key, 2, limit, 15, 60, now_min + 40)
    assert _status(radio, key, 301, follow) is AckStatus.OK
    assert at(start + 6 * US_PER_MINUTE)[key] == 20 and at(end)[key] == 15
    assert at(end + 60 * US_PER_MINUTE)[key] == base


def test_the_head_end_refuses_profiles_out_of_bounds() -> None:
    from kenshin.core.meterspec import meter_spec
    from kenshin.hes.command_rules import refusal

    spec = meter_spec(Generation.GEN2, MeterClass.LV_1P3W)
    now = 1_780_000_000_000_000
    now_min = now // US_PER_MINUTE
    limit = CommandKind.SET_AMPERE_LIMIT
    assert refusal(spec, limit, (20, 120, now_min + 20), now) is None
    assert "at most 1440 minutes" in str(refusal(spec, limit, (20, 1441, 0), now))
    assert "needs a duration" in str(refusal(spec, limit, (20, 0, now_min + 20), now))
    assert "within a day" in str(refusal(spec, limit, (20, 60, now_min + 3000), now))
