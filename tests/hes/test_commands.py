import datetime as dt
import itertools
import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.aroute.frames import AckStatus, Command, CommandAck, CommandKind
from kenshin.core.meterspec import Generation, MeterClass
from kenshin.core.timeslots import JST, US_PER_DAY, US_PER_MINUTE, Resolution, to_epoch_us
from kenshin.errors import (
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    InvalidPeriod,
    InvalidSetting,
    UnknownCommand,
    UnknownMeter,
)
from kenshin.hes.command_rules import (
    TRANSITIONS,
    CommandEvent,
    CommandPolicy,
    CommandState,
    MeterSpecs,
    resend_args,
    transition,
)
from kenshin.hes.commands import CommandBook, CommandRecord, MemoryAudit

S = CommandState
K = CommandKind
G1, G2 = Generation.GEN1, Generation.GEN2
NOW = to_epoch_us(dt.datetime(2026, 4, 1, 12, 0, tzinfo=JST))
MIN = US_PER_MINUTE

# key: (generation, class, collector)
METERS = [
    (G1, MeterClass.LV_1P3W, 0),  # 0
    (G2, MeterClass.LV_1P3W, 0),  # 1
    (G1, MeterClass.LV_3P3W, 1),  # 2
    (G2, MeterClass.HV, 1),  # 3
    (G2, MeterClass.EHV, 1),  # 4
    (G1, MeterClass.HV, 1),  # 5
    (G2, MeterClass.LV_3P3W, 1),  # 6
] + [(G2, MeterClass.LV_1P2W, 2)] * 10  # 7..16: one busy collector
BUSY = list(range(7, 17))


def make_book(policy: CommandPolicy | None = None) -> CommandBook:
    gen, cls, col = zip(*METERS, strict=True)
    return CommandBook(MeterSpecs(gen, cls), np.array(col), policy or CommandPolicy())


def trail(book: CommandBook, command_id: int) -> list[tuple[S | None, S]]:
    assert isinstance(book.audit, MemoryAudit)
    return [(e.from_state, e.to_state) for e in book.audit.for_command(command_id)]


def send_one(book: CommandBook, now_us: int) -> tuple[CommandRecord, Command]:
    sent = book.due(now_us)
    assert len(sent) == 1
    return sent[0]


# --- the transition table --------------------------------------------------------------------


def test_transition_follows_the_table_and_refuses_everything_else():
    for state in S:
        for event in CommandEvent:
            if (state, event) in TRANSITIONS:
                assert transition(state, event) is TRANSITIONS[(state, event)]
            else:
                with pytest.raises(IllegalTransition):
                    transition(state, event)
    assert not any(state.is_terminal for state, _ in TRANSITIONS)


def test_the_book_exercises_every_transition_of_the_table():
    policy = CommandPolicy(max_attempts=2, default_expiry=dt.timedelta(minutes=30))
    book = make_book(policy)
    book.request(0, K.SET_AMPERE_LIMIT, (80,), NOW)  # refused (M3)
    ok = book.request(1, K.SET_AMPERE_LIMIT, (40,), NOW)
    nak = book.request(7, K.SWITCH_OPEN, (), NOW)
    lost = book.request(8, K.SWITCH_CLOSE, (), NOW)
    late = book.request(9, K.SWITCH_CLOSE, (), NOW, expires_at_us=NOW + MIN)
    book.request(10, K.SWITCH_CLOSE, (), NOW)
    waiter = book.request(11, K.SWITCH_CLOSE, (), NOW, expires_at_us=NOW + MIN)
    assert len(book.due(NOW)) == 5  # meter 11 waits: collector 2 has 4 on the wire
    book.on_ack(1, CommandAck(ok.command_id, AckStatus.OK), NOW + MIN)
    book.on_ack(7, CommandAck(nak.command_id, AckStatus.REJECTED_OUT_OF_RANGE), NOW + MIN)
    book.tick(NOW + MIN)  # the waiter expires in the queue
    book.tick(NOW + 2 * MIN)  # lost: retry; late: no ack and past expiry
    book.due(NOW + 3 * MIN)
    book.tick(NOW + 5 * MIN)  # lost: give up after 2 attempts
    seen = {(e.from_state, e.to_state) for e in book.audit}
    assert {(s, t) for (s, _), t in TRANSITIONS.items()} <= seen
    assert book.get(waiter.command_id).state is S.EXPIRED
    assert book.get(late.command_id).state is S.EXPIRED
    assert book.get(lost.command_id).state is S.FAILED


def test_state_changes_only_through_the_table(monkeypatch: pytest.MonkeyPatch):
    book = make_book()
    record = book.request(1, K.SWITCH_OPEN, (), NOW)
    with pytest.raises(AttributeError):
        record.state = S.ACKNOWLEDGED
    monkeypatch.delitem(TRANSITIONS, (S.QUEUED, CommandEvent.SEND))
    with pytest.raises(IllegalTransition):
        book.due(NOW)
    assert book.get(record.command_id).state is S.QUEUED


# --- capability checks -----------------------------------------------------------------------

D30 = int(Resolution.MIN30)


def resend(res: Resolution, first_us: int, last_us: int) -> tuple[int, ...]:
    return (int(res), first_us // MIN, last_us // MIN)


@pytest.mark.parametrize(
    ("meter", "kind", "args", "reason"),
    [
        (0, K.SET_AMPERE_LIMIT, (70,), "up to 60 A (M3)"),
        (0, K.SET_AMPERE_LIMIT, (80,), "up to 60 A (M3)"),
        (1, K.SET_AMPERE_LIMIT, (150,), "up to 120 A (M6)"),
        (1, K.SET_AMPERE_LIMIT, (35,), "not an ampere step"),
        (3, K.SWITCH_OPEN, (), "hv meters have no switch"),
        (5, K.SWITCH_CLOSE, (), "(R5)"),
        (4, K.SET_AMPERE_LIMIT, (30,), "(R5)"),
        (2, K.SWITCH_OPEN, (), "three-phase meters have no built-in switch"),
        (6, K.SET_AMPERE_LIMIT, (30,), "three-phase"),
        (0, K.SET_SOFT_SWITCH, (15,), "no 15-min values"),
        (1, K.SET_SOFT_SWITCH, (20,), "15 or 30"),
        (0, K.SET_REALTIME_5MIN, (1,), "no 5-min values"),
        (1, K.SET_REALTIME_5MIN, (2,), "1 (on) or 0 (off)"),
        (0, K.RESEND, resend(Resolution.MIN5, NOW - 60 * MIN, NOW), "no 5-min values"),
        (5, K.RESEND, resend(Resolution.MIN15, NOW - 60 * MIN, NOW), "no 15-min values"),
        (1, K.RESEND, resend(Resolution.MIN5, NOW - 11 * US_PER_DAY, NOW), "meter's memory"),
        (0, K.RESEND, resend(Resolution.MIN30, NOW - 46 * US_PER_DAY, NOW), "meter's memory"),
        (1, K.RESEND, resend(Resolution.MIN30, NOW - 75 * MIN, NOW), "slot boundaries"),
        (1, K.RESEND, resend(Resolution.MIN30, NOW, NOW - 30 * MIN), "empty"),
        (1, K.RESEND, resend(Resolution.MIN30, NOW, NOW + 30 * MIN), "future"),
        (1, K.RESEND, (7, NOW // MIN, NOW // MIN), "no 7-min resolution"),
        (1, K.SWITCH_OPEN, (1,), "takes 0 argument"),
        (1, K.SET_AMPERE_LIMIT, (-30,), "u32"),
    ],
)
def test_capability_refusal(meter: int, kind: K, args: tuple[int, ...], reason: str):
    book = make_book()
    record = book.request(meter, kind, args, NOW)
    assert record.state is S.REJECTED
    assert reason in record.reason
    assert trail(book, record.command_id) == [(None, S.REQUESTED), (S.REQUESTED, S.REJECTED)]
    assert book.due(NOW) == []


@pytest.mark.parametrize(
    ("meter", "kind", "args"),
    [
        (0, K.SET_AMPERE_LIMIT, (60,)),
        (1, K.SET_AMPERE_LIMIT, (120,)),
        (0, K.SWITCH_OPEN, ()),
        (1, K.SET_SOFT_SWITCH, (15,)),
        (3, K.SET_SOFT_SWITCH, (30,)),
        (3, K.SET_REALTIME_5MIN, (1,)),
        (3, K.RESEND, resend(Resolution.MIN5, NOW - 9 * US_PER_DAY, NOW)),
        (0, K.RESEND, resend(Resolution.MIN30, NOW - 44 * US_PER_DAY, NOW - 30 * MIN)),
    ],
)
def test_capability_accepted(meter: int, kind: K, args: tuple[int, ...]):
    book = make_book()
    record = book.request(meter, kind, args, NOW)
    assert record.state is S.QUEUED, record.reason
    ((sent, command),) = book.due(NOW)
    assert command == Command(record.command_id, kind, *args, *[0] * (3 - len(args)))
    assert sent.state is S.SENT


def test_resend_args_are_epoch_minutes():
    first = NOW - 60 * MIN
    assert resend_args(Resolution.MIN30, first, NOW) == (30, first // MIN, NOW // MIN)
    with pytest.raises(InvalidPeriod):
        resend_args(Resolution.MIN30, first + 1, NOW)


def test_utility_retention_moves_the_memory_limit():
    from kenshin.core.meterspec import SPEC_TABLE, meter_spec

    table = dict(SPEC_TABLE)
    table[(G2, MeterClass.LV_1P3W)] = meter_spec(
        G2, MeterClass.LV_1P3W, retention_5=dt.timedelta(days=20)
    )
    book = CommandBook(MeterSpecs([G2], [MeterClass.LV_1P3W], table), np.array([0]))
    args = resend(Resolution.MIN5, NOW - 15 * US_PER_DAY, NOW)
    assert book.request(0, K.RESEND, args, NOW).state is S.QUEUED


def test_bad_requests_raise():
    book = make_book()
    with pytest.raises(UnknownMeter):
        book.request(len(METERS), K.SWITCH_OPEN, (), NOW)
    with pytest.raises(UnknownMeter):
        book.request_many([1, -1], K.SWITCH_OPEN, (), NOW)
    with pytest.raises(InvalidInput):
        book.request(1, K.SWITCH_OPEN, (), NOW, expires_at_us=NOW)
    with pytest.raises(InvalidInput):
        book.request(1, K.RESEND, (30, 1, 2, 3), NOW)
    with pytest.raises(InvalidInput):
        CommandBook(MeterSpecs([G2], [MeterClass.HV]), np.array([0, 1]))
    assert len(book) == 0


# --- idempotency -----------------------------------------------------------------------------


def test_same_idempotency_key_returns_the_same_command():
    book = make_book()
    first = book.request(1, K.SET_AMPERE_LIMIT, (30,), NOW, idempotency_key="k1")
    again = book.request(1, K.SET_AMPERE_LIMIT, (30,), NOW + MIN, idempotency_key="k1")
    assert again == first
    assert len(book) == 1
    assert len(book.audit.for_command(first.command_id)) == 2
    refused = book.request(0, K.SET_AMPERE_LIMIT, (80,), NOW, idempotency_key="k2")
    assert book.request(0, K.SET_AMPERE_LIMIT, (80,), NOW, idempotency_key="k2") == refused


def test_conflicting_idempotency_key_raises():
    book = make_book()
    book.request(1, K.SET_AMPERE_LIMIT, (30,), NOW, idempotency_key="k1")
    with pytest.raises(IdempotencyConflict):
        book.request(1, K.SET_AMPERE_LIMIT, (40,), NOW, idempotency_key="k1")
    with pytest.raises(IdempotencyConflict):
        book.request(0, K.SET_AMPERE_LIMIT, (30,), NOW, idempotency_key="k1")
    assert len(book) == 1


def test_campaign_idempotency_is_per_meter():
    book = make_book()
    first = book.request_many(BUSY, K.SET_AMPERE_LIMIT, (30,), NOW, idempotency_key="c")
    again = book.request_many(BUSY, K.SET_AMPERE_LIMIT, (30,), NOW, idempotency_key="c")
    assert again == first
    assert len(book) == len(BUSY)
    assert book.get(first[0].command_id).idempotency_key == f"c/{BUSY[0]}"


# --- retries, expiry -------------------------------------------------------------------------


def test_retries_with_backoff_then_failed():
    book = make_book()
    record = book.request(1, K.SWITCH_OPEN, (), NOW)
    assert send_one(book, NOW)[0].attempts == 1
    assert book.tick(NOW + 2 * MIN - 1) == []
    (retry,) = book.tick(NOW + 2 * MIN)
    assert (retry.state, retry.not_before_us) == (S.QUEUED, NOW + 3 * MIN)
    assert book.due(NOW + 3 * MIN - 1) == []
    assert send_one(book, NOW + 3 * MIN)[0].attempts == 2
    (retry,) = book.tick(NOW + 5 * MIN)
    assert retry.not_before_us == NOW + 7 * MIN  # ×2
    assert send_one(book, NOW + 7 * MIN)[0].attempts == 3
    (failed,) = book.tick(NOW + 9 * MIN)
    assert failed.state is S.FAILED
    assert "3 attempt" in failed.reason
    assert failed.completed_at_us == NOW + 9 * MIN
    assert book.due(NOW + 60 * MIN) == []
    assert [t for _, t in trail(book, record.command_id)] == [
        S.REQUESTED, S.QUEUED, S.SENT, S.QUEUED, S.SENT, S.QUEUED, S.SENT, S.FAILED,
    ]  # fmt: skip


def test_backoff_is_capped():
    policy = CommandPolicy(retry_cap=dt.timedelta(minutes=5))
    assert [policy.backoff_us(n) // MIN for n in range(1, 6)] == [1, 2, 4, 5, 5]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"ack_timeout": dt.timedelta(0)},
        {"retry_factor": 0.5},
        {"max_in_flight_per_collector": 0},
        {"sends_per_minute_per_collector": 0},
        {"keep_finished": dt.timedelta(seconds=-1)},
        {"prune_every": dt.timedelta(0)},
    ],
)
def test_policy_validation(kwargs: dict[str, object]):
    with pytest.raises(InvalidSetting):
        CommandPolicy(**kwargs)


def test_queued_command_expires():
    book = make_book(CommandPolicy(max_in_flight_per_collector=1))
    book.request(7, K.SWITCH_OPEN, (), NOW)
    waiting = book.request(8, K.SWITCH_OPEN, (), NOW, expires_at_us=NOW + MIN)
    send_one(book, NOW)
    assert book.tick(NOW + MIN - 1) == []
    (expired,) = book.tick(NOW + MIN)  # the first is still within its ack timeout
    assert expired.command_id == waiting.command_id
    assert (expired.state, expired.reason) == (S.EXPIRED, "expired")


def test_default_expiry_and_no_send_after_expiry():
    book = make_book()
    record = book.request(1, K.SWITCH_OPEN, (), NOW)
    assert record.expires_at_us == NOW + 60 * MIN
    assert book.due(NOW + 60 * MIN) == []  # due itself refuses to send it
    assert book.get(record.command_id).state is S.EXPIRED


def test_sent_command_past_expiry_is_not_retried():
    book = make_book()
    record = book.request(1, K.SWITCH_OPEN, (), NOW, expires_at_us=NOW + MIN)
    send_one(book, NOW)
    assert book.tick(NOW + MIN) == []  # on the wire: waits for its ack
    (expired,) = book.tick(NOW + 2 * MIN)
    assert expired.state is S.EXPIRED
    assert book.on_ack(1, CommandAck(record.command_id, AckStatus.OK), NOW + 3 * MIN) is None
    assert book.ignored_acks["late"] == 1


# --- throttling and ordering -----------------------------------------------------------------


def test_in_flight_limit_per_collector():
    book = make_book(CommandPolicy(max_in_flight_per_collector=4))
    records = book.request_many(BUSY, K.SET_AMPERE_LIMIT, (40,), NOW)
    book.request(1, K.SWITCH_OPEN, (), NOW)  # another collector is not held up
    first = book.due(NOW)
    assert sorted(r.collector for r, _ in first) == [0, 2, 2, 2, 2]
    assert book.in_flight(2) == 4
    assert book.due(NOW + 1) == []
    rec, cmd = first[1]
    book.on_ack(rec.meter_key, CommandAck(cmd.command_id, AckStatus.OK), NOW + 2)
    (nxt,) = book.due(NOW + 3)
    assert nxt[0].collector == 2
    for rec, cmd in [*first, nxt]:
        book.on_ack(rec.meter_key, CommandAck(cmd.command_id, AckStatus.OK), NOW + 4)
    sent = 6
    t = NOW + 5
    while book.counts()[S.QUEUED]:
        assert t < NOW + 100
        for rec, cmd in book.due(t):
            sent += 1
            assert book.in_flight(rec.collector) <= 4
            book.on_ack(rec.meter_key, CommandAck(cmd.command_id, AckStatus.OK), t)
        t += 1
    assert sent == len(BUSY) + 1
    assert all(book.get(r.command_id).state is S.ACKNOWLEDGED for r in records)


def test_sends_per_minute_per_collector():
    book = make_book(
        CommandPolicy(max_in_flight_per_collector=10, sends_per_minute_per_collector=3)
    )
    book.request_many(BUSY, K.SWITCH_CLOSE, (), NOW)
    assert len(book.due(NOW)) == 3
    assert book.due(NOW + 59 * 1_000_000) == []
    assert len(book.due(NOW + MIN)) == 3


def test_one_command_per_meter_on_the_wire_in_request_order():
    book = make_book()
    first = book.request(1, K.SET_AMPERE_LIMIT, (30,), NOW)
    second = book.request(1, K.SET_AMPERE_LIMIT, (40,), NOW)
    assert [r.command_id for r, _ in book.due(NOW)] == [first.command_id]
    book.tick(NOW + 2 * MIN)  # first times out and waits for its retry
    assert book.due(NOW + 2 * MIN) == []  # the second does not overtake it
    assert send_one(book, NOW + 3 * MIN)[0].command_id == first.command_id
    book.on_ack(1, CommandAck(first.command_id, AckStatus.OK), NOW + 4 * MIN)
    assert send_one(book, NOW + 4 * MIN)[0].command_id == second.command_id


def test_expired_head_lets_the_next_command_go():
    book = make_book()
    first = book.request(1, K.SET_AMPERE_LIMIT, (30,), NOW, expires_at_us=NOW + MIN)
    second = book.request(1, K.SET_AMPERE_LIMIT, (40,), NOW)
    third = book.request(1, K.SWITCH_OPEN, (), NOW, expires_at_us=NOW + MIN)
    book.tick(NOW + MIN)  # first (head) and third (behind) expire in the queue
    assert book.get(first.command_id).state is S.EXPIRED
    assert book.get(third.command_id).state is S.EXPIRED
    assert send_one(book, NOW + MIN)[0].command_id == second.command_id


# --- acks ------------------------------------------------------------------------------------


def test_acks_from_the_wrong_meter_or_unknown_or_late_are_ignored(
    caplog: pytest.LogCaptureFixture,
):
    book = make_book()
    record = book.request(1, K.SWITCH_OPEN, (), NOW)
    send_one(book, NOW)
    ack = CommandAck(record.command_id, AckStatus.OK)
    with caplog.at_level(logging.WARNING):
        assert book.on_ack(0, ack, NOW + 1) is None  # X2: another meter
        assert book.on_ack(1, CommandAck(999, AckStatus.OK), NOW + 1) is None
    assert book.get(record.command_id).state is S.SENT
    assert "wrong_meter" in caplog.text
    done = book.on_ack(1, ack, NOW + 2)
    assert done is not None
    assert (done.state, done.ack_status) == (S.ACKNOWLEDGED, AckStatus.OK)
    assert book.on_ack(1, ack, NOW + 3) is None  # duplicate
    assert book.ignored_acks == {"wrong_meter": 1, "unknown": 1, "late": 1}


def test_ack_after_timeout_is_late():
    book = make_book()
    record = book.request(1, K.SWITCH_OPEN, (), NOW)
    send_one(book, NOW)
    book.tick(NOW + 2 * MIN)
    assert book.on_ack(1, CommandAck(record.command_id, AckStatus.OK), NOW + 2 * MIN) is None
    assert book.get(record.command_id).state is S.QUEUED


@pytest.mark.parametrize(
    "status",
    [AckStatus.REJECTED_UNSUPPORTED, AckStatus.REJECTED_NOT_HELD, AckStatus.FAILED],
)
def test_negative_ack_rejects(status: AckStatus):
    book = make_book()
    record = book.request(1, K.SET_AMPERE_LIMIT, (30,), NOW)
    send_one(book, NOW)
    done = book.on_ack(1, CommandAck(record.command_id, status, 7), NOW + 1)
    assert done is not None
    assert (done.state, done.ack_status, done.ack_detail) == (S.REJECTED, status, 7)
    assert status.name.lower() in done.reason
    assert book.in_flight(0) == 0


# --- audit and queries -----------------------------------------------------------------------


def test_audit_trail_of_a_command_life(caplog: pytest.LogCaptureFixture):
    audit = MemoryAudit()
    gen, cls, col = zip(*METERS, strict=True)
    book = CommandBook(MeterSpecs(gen, cls), np.array(col), audit=audit)
    with caplog.at_level(logging.INFO, logger="kenshin.hes.commands"):
        record = book.request(1, K.SET_AMPERE_LIMIT, (40,), NOW, requested_by="operator:7")
        send_one(book, NOW)
        book.tick(NOW + 2 * MIN)
        send_one(book, NOW + 3 * MIN)
        book.on_ack(1, CommandAck(record.command_id, AckStatus.OK, 40), NOW + 4 * MIN)
    entries = audit.for_command(record.command_id)
    assert [(e.from_state, e.to_state) for e in entries] == [
        (None, S.REQUESTED),
        (S.REQUESTED, S.QUEUED),
        (S.QUEUED, S.SENT),
        (S.SENT, S.QUEUED),
        (S.QUEUED, S.SENT),
        (S.SENT, S.ACKNOWLEDGED),
    ]
    assert [e.at_us for e in entries] == [
        NOW,
        NOW,
        NOW,
        NOW + 2 * MIN,
        NOW + 3 * MIN,
        NOW + 4 * MIN,
    ]
    assert {(e.meter_key, e.kind, e.requested_by) for e in entries} == {
        (1, K.SET_AMPERE_LIMIT, "operator:7")
    }
    assert entries[0].detail == "SET_AMPERE_LIMIT 40"
    assert caplog.text.count(f"command {record.command_id} ") == len(entries)


def test_get_list_and_counts():
    book = make_book()
    a = book.request(1, K.SWITCH_OPEN, (), NOW)
    b = book.request(0, K.SET_AMPERE_LIMIT, (80,), NOW)
    c = book.request(1, K.SWITCH_CLOSE, (), NOW)
    assert (a.command_id, b.command_id, c.command_id) == (1, 2, 3)
    assert book.get(b.command_id) == b
    with pytest.raises(UnknownCommand):
        book.get(99)
    assert [r.command_id for r in book.list()] == [3, 2, 1]
    assert [r.command_id for r in book.list(meter_key=1)] == [3, 1]
    assert [r.command_id for r in book.list(state=S.REJECTED)] == [2]
    assert [r.command_id for r in book.list(limit=1)] == [3]
    assert book.counts()[S.QUEUED] == 2
    assert book.counts()[S.REJECTED] == 1
    assert sum(book.counts().values()) == len(book)


def test_command_ids_resume_from_first_command_id():
    gen, cls, col = zip(*METERS, strict=True)
    book = CommandBook(MeterSpecs(gen, cls), np.array(col), first_command_id=0xFFFF_FFFE)
    assert book.request(1, K.SWITCH_OPEN, (), NOW).command_id == 0xFFFF_FFFE
    assert book.request(1, K.SWITCH_OPEN, (), NOW).command_id == 0xFFFF_FFFF
    with pytest.raises(Exception, match="exhausted"):
        book.request(1, K.SWITCH_OPEN, (), NOW)


def test_area_campaign():
    n = 20_000
    rng = np.random.default_rng(1)
    gen = rng.choice([G1, G2], n)
    cls = rng.choice(
        [MeterClass.LV_1P3W, MeterClass.LV_3P3W, MeterClass.HV], n, p=[0.9, 0.07, 0.03]
    )
    book = CommandBook(MeterSpecs(gen, cls), np.arange(n) // 200)
    records = book.request_many(np.arange(n), K.SET_AMPERE_LIMIT, (30,), NOW, requested_by="dr")
    queued = (cls == MeterClass.LV_1P3W).sum()
    assert book.counts()[S.QUEUED] == queued
    assert book.counts()[S.REJECTED] == n - queued
    assert len(book.due(NOW)) == 4 * (n // 200)
    hv = next(r for r in records if cls[r.meter_key] == MeterClass.HV)
    assert "(R5)" in hv.reason


# --- property: states only move along the table, in-flight never exceeds the limit -----------

LIMIT = 2
N_METERS = 6

op = st.one_of(
    st.tuples(
        st.just("request"),
        st.integers(0, N_METERS - 1),
        st.sampled_from(
            [(K.SWITCH_OPEN, ()), (K.SET_AMPERE_LIMIT, (30,)), (K.SET_AMPERE_LIMIT, (80,))]
        ),
        st.integers(1, 120),
    ),
    st.tuples(st.just("due")),
    st.tuples(
        st.just("ack"),
        st.integers(0, 5),
        st.sampled_from(["right", "right", "wrong_meter", "unknown"]),
        st.sampled_from([AckStatus.OK, AckStatus.OK, *AckStatus]),
    ),
    st.tuples(st.just("advance"), st.integers(0, 300)),  # then tick
)


@settings(max_examples=150, deadline=None)
@given(st.lists(op, min_size=5, max_size=80))
def test_random_event_sequences_follow_the_table(ops: list[tuple]):
    gen = [G1, G2, G2, G1, G2, G2]
    book = CommandBook(
        MeterSpecs(gen, [MeterClass.LV_1P3W] * N_METERS),
        np.array([0, 0, 0, 1, 1, 1]),
        CommandPolicy(max_in_flight_per_collector=LIMIT, max_attempts=2),
    )
    now = NOW
    for o in ops:
        if o[0] == "request":
            _, meter, (kind, args), expiry_min = o
            book.request(meter, kind, args, now, expires_at_us=now + expiry_min * MIN)
        elif o[0] == "due":
            book.due(now)
        elif o[0] == "ack":
            _, pick, mode, status = o
            on_wire = book.list(state=S.SENT, limit=10_000)
            if on_wire and mode != "unknown":
                record = on_wire[pick % len(on_wire)]
                meter = record.meter_key
                if mode == "wrong_meter":
                    meter = (meter + 1) % N_METERS
                book.on_ack(meter, CommandAck(record.command_id, status), now)
            else:
                book.on_ack(0, CommandAck(10_000 + pick, status), now)
        else:
            now += o[1] * 1_000_000
            book.tick(now)
        records = book.list(limit=10_000)
        sent = [r for r in records if r.state is S.SENT]
        for collector in (0, 1):
            count = sum(r.collector == collector for r in sent)
            assert count <= LIMIT
            assert book.in_flight(collector) == count
        assert len({r.meter_key for r in sent}) == len(sent)  # one per meter
    allowed = {(s, t) for (s, _), t in TRANSITIONS.items()}
    for record in book.list(limit=10_000):
        states = trail(book, record.command_id)
        assert states[0] == (None, S.REQUESTED)
        for (_, before), (after_from, after_to) in itertools.pairwise(states):
            assert after_from == before
            assert (after_from, after_to) in allowed
        assert states[-1][1] is record.state
    assert sum(book.counts().values()) == len(book)


def test_prune_forgets_finished_commands():
    book = make_book()
    done = book.request(0, K.SET_AMPERE_LIMIT, (80,), NOW, idempotency_key="k")  # refused
    live = book.request(1, K.SWITCH_OPEN, (), NOW)
    assert book.prune(NOW) == 0
    assert book.prune(NOW + 1) == 1
    with pytest.raises(UnknownCommand):
        book.get(done.command_id)
    assert book.list(meter_key=0) == []
    assert book.get(live.command_id).state is S.QUEUED
    assert sum(book.counts().values()) == len(book) == 1
    again = book.request(0, K.SET_AMPERE_LIMIT, (60,), NOW + 2, idempotency_key="k")
    assert again.command_id > live.command_id


def test_ack_with_an_unknown_status_is_ignored():
    book = make_book()
    record = book.request(1, K.SWITCH_OPEN, (), NOW)
    send_one(book, NOW)
    assert book.on_ack(1, CommandAck(record.command_id, 77), NOW + 1) is None
    assert book.ignored_acks["bad_status"] == 1
    assert book.get(record.command_id).state is S.SENT
