"""The head-end behind the wire: refusals by reason (never stored), commands and polls."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from kenshin.app.system import EmbeddedSystem, build_system
from kenshin.aroute.codec.encode import encode_interval_frames
from kenshin.aroute.codec.envelope import decode_envelope, encode_envelope
from kenshin.aroute.frames import CommandKind, FrameType, OperatingState, RejectReason
from kenshin.aroute.keys import KeyRing
from kenshin.core.channels import Channel
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.quality import Source
from kenshin.core.timeslots import JST, Resolution, to_epoch_us
from kenshin.fleet.simulator import FleetConfig
from kenshin.hes.command_rules import CommandState, resend_args
from kenshin.hes.polling import PollState

START = dt.datetime(2026, 5, 11, tzinfo=JST)


def _system(send_15min: bool = False, **settings: Any) -> EmbeddedSystem:
    s = build_system(
        FleetConfig(n_meters=200, start=START, seed=7, send_15min=send_15min, **settings),
        aroute="wire",
        background_writer=False,
    )
    captured: list[bytes] = []
    receive = s.hes.receive_envelopes  # type: ignore[union-attr]

    def capture(payloads: list[bytes], **kw: bool) -> int:
        captured.extend(payloads)
        return receive(payloads, **kw)

    s.hes.receive_envelopes = capture  # type: ignore[union-attr, method-assign]
    s.captured = captured  # type: ignore[attr-defined]
    s.run(START + dt.timedelta(hours=1))
    return s


@pytest.fixture
def system() -> EmbeddedSystem:
    """The utility's soft switch off, as by default (SPEC A5): 30-min values are sent."""
    return _system()


@pytest.fixture
def system_15() -> EmbeddedSystem:
    """The utility's soft switch on: next-generation meters send 15-min values too."""
    return _system(send_15min=True)


def _rows(system: EmbeddedSystem) -> int:
    return sum(system.store.reading_counts().values())


def _fresh_frames(system: EmbeddedSystem, keys: KeyRing | None = None) -> list[bytes]:
    """New, valid scheduled pushes of five meters, as their radios would build them now."""
    radio = system.field.radio  # type: ignore[union-attr]
    meters = np.arange(5, dtype=np.int64)
    now = system.fleet.meters.now_us
    block = radio._interval_block(
        Resolution.MIN30,
        Channel.ACTIVE_FORWARD,
        meters,
        np.array([now - now % Resolution.MIN30.microseconds]),
    )
    counters = radio.up_counter[meters] + 1
    radio.up_counter[meters] += 1
    return encode_interval_frames(
        FrameType.PUSH_SCHEDULED,
        radio.device_ids[meters],
        counters,
        [block],
        [],
        keys or radio.keys,
    )


def _deliver(system: EmbeddedSystem, frames: list[bytes]) -> int:
    assert system.hes is not None
    envelope = encode_envelope("c00000", system.fleet.meters.now_us, 1, frames)
    return system.hes.receive_envelope(envelope)


def test_a_captured_envelope_replayed_is_refused_and_changes_nothing(system) -> None:
    hes = system.hes
    before_rows, before_ok = _rows(system), hes.stats.frames_accepted
    captured = system.captured[len(system.captured) // 2]
    n_frames = len(decode_envelope(captured).frames)
    assert _deliver_raw(system, captured) == 0
    assert hes.stats.frames_rejected[RejectReason.REPLAYED] == n_frames
    assert _rows(system) == before_rows and hes.stats.frames_accepted == before_ok
    assert f'reason="replayed"}} {float(n_frames)}' in hes.metrics.exposition().decode()


def _deliver_raw(system: EmbeddedSystem, payload: bytes) -> int:
    system.mdms.flush()
    accepted = system.hes.receive_envelope(payload)
    system.mdms.flush()
    return accepted


def test_a_byte_flipped_by_a_collector_is_refused_the_rest_accepted(system) -> None:
    frames = _fresh_frames(system)
    bad = bytearray(frames[2])
    bad[20] ^= 0x01  # inside the ciphertext
    frames[2] = bytes(bad)
    rows = _rows(system)
    assert _deliver(system, frames) == 4
    system.mdms.flush()
    assert system.hes.stats.frames_rejected[RejectReason.AUTH_FAILED] == 1
    assert _rows(system) == rows + 4  # one forward value per accepted frame, none from the bad one


def test_the_head_end_asks_its_replay_guard_about_authentic_frames_only(system) -> None:
    hes = system.hes
    asked: list[tuple[list[int], list[int]]] = []
    admit = hes.replay.admit

    def spy(
        meter_keys: np.ndarray, counters: np.ndarray, *, late: np.ndarray | None = None
    ) -> np.ndarray:
        asked.append((meter_keys.tolist(), counters.tolist()))
        return admit(meter_keys, counters, late=late)

    hes.replay.admit = spy
    frames = _fresh_frames(system)
    frames[2] = frames[2][:-1] + bytes([frames[2][-1] ^ 1])  # the tag
    assert _deliver(system, frames) == 4
    counters = system.field.radio.up_counter[[0, 1, 3, 4]].tolist()
    assert asked == [([0, 1, 3, 4], counters)]


def test_a_wrong_key_is_refused(system) -> None:
    forged = _fresh_frames(system, KeyRing(bytes(range(32))))
    rows = _rows(system)
    assert _deliver(system, forged) == 0
    system.mdms.flush()
    assert system.hes.stats.frames_rejected[RejectReason.AUTH_FAILED] == 5
    assert _rows(system) == rows


def test_an_unknown_meter_is_refused(system) -> None:
    frames = _fresh_frames(system)
    stranger = bytearray(frames[0])
    stranger[2:10] = (123456789).to_bytes(8, "big")
    assert _deliver(system, [bytes(stranger)]) == 0
    assert system.hes.stats.frames_rejected[RejectReason.UNKNOWN_METER] == 1


def test_garbage_envelope_is_counted_not_fatal(system) -> None:
    assert system.hes.receive_envelope(b"\x00garbage") == 0
    assert system.hes.stats.malformed_envelopes == 1


def _meter(system: EmbeddedSystem, generation: Generation, classes: tuple[MeterClass, ...]) -> int:
    pop = system.fleet.population
    ok = (pop.generation == generation) & np.isin(pop.meter_class, [int(c) for c in classes])
    return int(np.flatnonzero(ok)[0])


def _now(system: EmbeddedSystem) -> int:
    return to_epoch_us(system.clock.now())


def test_ampere_limit_command_reaches_the_meter_and_is_acknowledged(system) -> None:
    key = _meter(system, Generation.GEN2, (MeterClass.LV_1P3W,))
    kind = CommandKind.SET_AMPERE_LIMIT
    signed = system.authorize(key, kind, (50,))  # by the business system (issue 16)
    record = system.hes.commands.request(key, kind, (50,), _now(system), authorization=signed)
    assert record.state is CommandState.QUEUED
    system.run(system.now + dt.timedelta(minutes=30))
    done = system.hes.commands.get(record.command_id)
    assert done.state is CommandState.ACKNOWLEDGED, done
    assert int(system.fleet.meters.ampere_limit_a[key]) == 50
    states = [e.to_state for e in system.hes.commands.audit.for_command(record.command_id)]
    assert states[-1] is CommandState.ACKNOWLEDGED and CommandState.SENT in states


@pytest.mark.parametrize(
    ("generation", "classes", "kind", "args", "why"),
    [
        (Generation.GEN2, (MeterClass.HV, MeterClass.EHV), CommandKind.SWITCH_OPEN, (), "switch"),
        (Generation.GEN1, (MeterClass.LV_1P3W,), CommandKind.SET_AMPERE_LIMIT, (70,), "60"),
        (Generation.GEN1, (MeterClass.LV_1P3W,), CommandKind.SET_REALTIME_5MIN, (1,), "5-min"),
    ],
)
def test_commands_the_meter_cannot_do_are_refused_at_once(
    system, generation, classes, kind, args, why
) -> None:
    key = _meter(system, generation, classes)
    sent = system.hes.stats.downlink_frames
    record = system.hes.commands.request(key, kind, args, _now(system))
    assert record.state is CommandState.REJECTED and why in record.reason
    system.run(system.now + dt.timedelta(minutes=10))
    assert system.hes.commands.get(record.command_id).attempts == 0
    assert system.hes.stats.downlink_frames - sent < 100  # only re-reads went out, not this


def test_a_command_that_never_gets_through_fails_after_retries(system) -> None:
    key = _meter(system, Generation.GEN2, (MeterClass.LV_1P3W,))
    field = system.field
    device = int(system.fleet.population.device_id[key])
    forward = field.receive_downlink

    def lose_this_meters_frames(collector: str, payload: bytes, now_us: int) -> None:
        env = decode_envelope(payload)
        keep = [f for f in env.frames if int.from_bytes(f[2:10], "big") != device]
        forward(collector, encode_envelope(collector, env.sent_at_us, 0, keep), now_us)

    field.receive_downlink = lose_this_meters_frames  # type: ignore[method-assign]
    signed = system.authorize(key, CommandKind.SWITCH_OPEN)
    record = system.hes.commands.request(
        key, CommandKind.SWITCH_OPEN, (), _now(system), authorization=signed
    )
    system.run(system.now + dt.timedelta(hours=1))
    done = system.hes.commands.get(record.command_id)
    assert done.state is CommandState.FAILED and done.attempts == 3
    assert bool(system.fleet.meters.switch_closed[key])  # the meter never heard it


def test_poll_returns_the_meters_state(system) -> None:
    keys = [0, 1, 2]
    batch = system.hes.polls.request(keys, _now(system))
    system.run(system.now + dt.timedelta(minutes=15))
    result = system.hes.polls.result(batch)
    assert result.summary.answered == 3
    ring = system.fleet.meters.ring5
    for poll in result.polls:
        assert poll.state is PollState.ANSWERED and poll.response is not None
        row = ring.rows_for(np.array([poll.response.measured_at_us]))[0]
        fwd = int(ring.data[Channel.ACTIVE_FORWARD][row, poll.meter_key])
        assert poll.response.forward_register == fwd


def _values_since(
    system: EmbeddedSystem, key: int, resolution: int, since_us: int
) -> list[tuple[int, int, int]]:
    """(interval end [µs], value, source) of one meter's forward values stored after a time."""
    system.mdms.flush()
    con = system.store._cursor()
    return con.execute(
        "SELECT epoch_us(interval_end), value, source FROM readings "
        "WHERE meter_key = $k AND resolution = $r AND channel = 1 AND epoch_us(tx_time) > $t "
        "ORDER BY 1",
        {"k": key, "r": resolution, "t": since_us},
    ).fetchall()


def test_soft_switch_is_off_by_default_and_no_15min_values_are_sent(system) -> None:
    """SPEC A5, M1: next-generation meters record 15-min values but send 30-min ones."""
    system.mdms.flush()
    assert system.store.reading_counts().get(15, 0) == 0
    assert not system.field.radio.soft_switch_15.any()
    assert system.schedule is not None and Resolution.MIN15 not in system.schedule.resolutions


def test_soft_switch_to_15_on_one_meter_starts_its_15min_values(system) -> None:
    """SPEC A5 per meter: SET_SOFT_SWITCH 15 makes one meter's pushes carry 15-min values."""
    key, other = np.flatnonzero(
        (system.fleet.population.generation == Generation.GEN2)
        & (system.fleet.population.meter_class == MeterClass.LV_1P3W)
    )[:2]
    record = system.hes.commands.request(int(key), CommandKind.SET_SOFT_SWITCH, (15,), _now(system))
    system.run(system.now + dt.timedelta(minutes=30))
    assert system.hes.commands.get(record.command_id).state is CommandState.ACKNOWLEDGED
    switched = _now(system)
    system.run(system.now + dt.timedelta(hours=2))
    assert len(_values_since(system, int(key), 15, switched)) >= 6
    assert _values_since(system, int(other), 15, switched) == []
    polled = system.hes.polls.request([int(key), int(other)], _now(system))
    system.run(system.now + dt.timedelta(minutes=15))
    flags = {p.meter_key: p.response.state for p in system.hes.polls.result(polled).polls}
    assert flags[int(key)] & OperatingState.SOFT_SWITCH_15
    assert not flags[int(other)] & OperatingState.SOFT_SWITCH_15


def test_15min_values_are_reread_from_meter_memory_with_the_switch_off(system) -> None:
    """SPEC A5, M1, M4: with the switch off the meter still records 15-min values; a RESEND
    gets them from its memory, and two of them make its 30-min value."""
    key = _meter(system, Generation.GEN2, (MeterClass.LV_1P3W,))
    now = _now(system)
    last = now - now % Resolution.MIN30.microseconds
    first = last - 3 * Resolution.MIN15.microseconds
    record = system.hes.commands.request(
        key, CommandKind.RESEND, resend_args(Resolution.MIN15, first, last), now
    )
    assert record.state is CommandState.QUEUED
    system.run(system.now + dt.timedelta(minutes=30))
    assert system.hes.commands.get(record.command_id).state is CommandState.ACKNOWLEDGED
    got = _values_since(system, key, 15, now)
    step = Resolution.MIN15.microseconds
    assert [end for end, _, _ in got] == [first + i * step for i in range(4)]
    assert {source for _, _, source in got} == {Source.REREAD}
    thirty = {end: value for end, value, _ in _values_since(system, key, 30, 0)}
    assert got[0][1] + got[1][1] == thirty[first + step]
    assert got[2][1] + got[3][1] == thirty[last]
    # forward and reverse of the four slots: no meter sent 15-min values on its own
    assert system.store.reading_counts()[15] == 8


def test_gen1_meters_have_no_15min_values_to_reread(system) -> None:
    key = _meter(system, Generation.GEN1, (MeterClass.LV_1P3W,))
    now = _now(system)
    last = now - now % Resolution.MIN30.microseconds
    args = resend_args(Resolution.MIN15, last - Resolution.MIN15.microseconds, last)
    record = system.hes.commands.request(key, CommandKind.RESEND, args, now)
    assert record.state is CommandState.REJECTED and "15-min" in record.reason


def test_the_head_end_knows_the_meters_recording_periods() -> None:
    """SPEC M4: the utility's recording periods reach the head-end with the fleet's: a re-read
    of values the meters no longer keep is refused at once, not sent."""
    system = _system(recording_period_30_15=dt.timedelta(days=1))
    assert system.hes.policy.recording_period_30_15 == dt.timedelta(days=1)
    key = _meter(system, Generation.GEN2, (MeterClass.LV_1P3W,))
    now = _now(system)
    last = now - now % Resolution.MIN30.microseconds
    for hours, state in ((23, CommandState.QUEUED), (25, CommandState.REJECTED)):
        end = last - hours * 3_600_000_000
        args = resend_args(Resolution.MIN30, end, end)
        record = system.hes.commands.request(key, CommandKind.RESEND, args, now)
        assert record.state is state
    assert "memory (30-min values: 1 d)" in record.reason


def test_soft_switch_to_30_stops_15min_values(system_15) -> None:
    """SPEC A5 per meter: after SET_SOFT_SWITCH 30 the meter's pushes carry no 15-min values."""
    system = system_15
    key = _meter(system, Generation.GEN2, (MeterClass.LV_1P3W,))
    assert len(_values_since(system, key, 15, 0)) >= 2  # the utility's switch is on
    record = system.hes.commands.request(key, CommandKind.SET_SOFT_SWITCH, (30,), _now(system))
    system.run(system.now + dt.timedelta(minutes=30))
    assert system.hes.commands.get(record.command_id).state is CommandState.ACKNOWLEDGED
    switched = _now(system)
    system.run(system.now + dt.timedelta(hours=2))
    assert _values_since(system, key, 15, switched) == []
    assert len(_values_since(system, key, 30, switched)) >= 3
