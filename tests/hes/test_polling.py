import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenshin.aroute.frames import OperatingState, PollRequest, PollResponse
from kenshin.errors import InvalidInput, InvalidSetting, NotFound, UnknownMeter
from kenshin.hes.polling import PollBook, PollPolicy, PollState

NOW = 1_775_000_000_000_000
SEC = 1_000_000
# meters 0..9 on collector 0, 10..11 on collector 1
COLLECTOR_OF = np.array([0] * 10 + [1] * 2, dtype=np.int32)


def response(request_id: int, power_w: int = 500) -> PollResponse:
    state = OperatingState.SWITCH_CLOSED | OperatingState.POWER_ON
    return PollResponse(request_id, NOW, int(state), 40, power_w, 50, 0, 1010, 123, 0)


def test_concurrency_per_collector_and_results():
    book = PollBook(COLLECTOR_OF, PollPolicy(max_in_flight_per_collector=4))
    batch = book.request(range(12), NOW)
    first = book.due(NOW)
    assert sorted(k for k, _ in first) == [0, 1, 2, 3, 10, 11]
    assert all(isinstance(req, PollRequest) for _, req in first)
    assert book.in_flight(0) == 4
    assert book.due(NOW + SEC) == []
    for i, (key, req) in enumerate(first):
        assert book.on_response(key, response(req.request_id, power_w=i), NOW + (i + 1) * SEC)
    second = book.due(NOW + 10 * SEC)
    assert [k for k, _ in second] == [4, 5, 6, 7]
    summary = book.summary(batch)
    assert (summary.requested, summary.answered, summary.pending, summary.done) == (
        12,
        6,
        6,
        False,
    )
    assert summary.p50_round_trip_us == 3 * SEC
    assert summary.p99_round_trip_us == 6 * SEC
    result = book.result(batch)
    assert [p.meter_key for p in result.polls] == list(range(12))
    answered = result.polls[10]
    assert answered.state is PollState.ANSWERED
    assert answered.response is not None
    assert answered.response.power_w == 4
    assert answered.round_trip_us == 5 * SEC
    assert result.polls[9].state is PollState.PENDING
    assert result.polls[9].sent_at_us is None


def test_timeouts_free_the_collector_and_late_responses_are_ignored():
    book = PollBook(COLLECTOR_OF, PollPolicy(timeout=dt.timedelta(seconds=30)))
    batch = book.request([0, 1, 2, 3, 4], NOW)
    sent = book.due(NOW)
    assert len(sent) == 4
    assert book.tick(NOW + 30 * SEC - 1) == 0
    assert book.tick(NOW + 30 * SEC) == 4
    assert book.in_flight(0) == 0
    key, req = sent[0]
    assert not book.on_response(key, response(req.request_id), NOW + 31 * SEC)
    assert book.ignored_responses["late"] == 1
    ((last_key, last_req),) = book.due(NOW + 31 * SEC)
    assert last_key == 4
    assert book.on_response(4, response(last_req.request_id), NOW + 33 * SEC)
    summary = book.summary(batch)
    assert (summary.answered, summary.timed_out, summary.pending, summary.done) == (1, 4, 0, True)
    assert summary.p50_round_trip_us == summary.p99_round_trip_us == 2 * SEC
    assert book.result(batch).polls[0].state is PollState.TIMED_OUT


def test_batch_timeout_overrides_the_policy():
    book = PollBook(COLLECTOR_OF)
    book.request([0], NOW, timeout_us=5 * SEC)
    book.due(NOW)
    assert book.tick(NOW + 5 * SEC) == 1


def test_unknown_and_wrong_meter_responses_are_ignored():
    book = PollBook(COLLECTOR_OF)
    batch = book.request([0, 1], NOW)
    (k0, r0), _ = book.due(NOW)
    assert not book.on_response(0, response(9999), NOW + SEC)
    assert not book.on_response(1, response(r0.request_id), NOW + SEC)  # meter 1 answers 0's poll
    assert book.result(batch).polls[0].state is PollState.PENDING
    assert book.on_response(k0, response(r0.request_id), NOW + SEC)
    assert not book.on_response(k0, response(r0.request_id), NOW + SEC)  # duplicate
    assert book.ignored_responses == {"unknown": 1, "wrong_meter": 1, "late": 1}


def test_response_before_send_is_ignored():
    book = PollBook(COLLECTOR_OF, PollPolicy(max_in_flight_per_collector=1))
    batch = book.request([0, 1], NOW)
    book.due(NOW)
    waiting_id = book.result(batch).polls[1].request_id
    assert not book.on_response(1, response(waiting_id), NOW)


def test_summary_without_answers():
    book = PollBook(COLLECTOR_OF)
    batch = book.request([0], NOW)
    summary = book.summary(batch)
    assert summary.p50_round_trip_us is None
    assert summary.pending == 1


def test_ids_are_unique_and_increasing():
    book = PollBook(COLLECTOR_OF)
    a = book.request([0, 1], NOW)
    b = book.request([2], NOW)
    assert b == a + 1
    ids = [req.request_id for _, req in book.due(NOW)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


def test_bad_requests():
    book = PollBook(COLLECTOR_OF)
    with pytest.raises(UnknownMeter):
        book.request([0, 12], NOW)
    with pytest.raises(InvalidInput):
        book.request([], NOW)
    with pytest.raises(InvalidInput):
        book.request([0], NOW, timeout_us=0)
    with pytest.raises(NotFound):
        book.result(1)
    with pytest.raises(InvalidSetting):
        PollPolicy(max_in_flight_per_collector=0)


def test_forget_drops_a_batch():
    book = PollBook(COLLECTOR_OF, PollPolicy(max_in_flight_per_collector=1))
    batch = book.request([0, 1], NOW)
    ((key, req),) = book.due(NOW)
    book.forget(batch)
    assert book.in_flight(0) == 0
    assert book.due(NOW) == []
    assert not book.on_response(key, response(req.request_id), NOW + SEC)
    with pytest.raises(NotFound):
        book.summary(batch)


op = st.one_of(
    st.tuples(st.just("request"), st.lists(st.integers(0, 11), min_size=1, max_size=8)),
    st.tuples(st.just("due")),
    st.tuples(st.just("respond"), st.integers(0, 20), st.booleans()),
    st.tuples(st.just("advance"), st.integers(0, 90)),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(op, min_size=5, max_size=60))
def test_in_flight_never_exceeds_the_limit(ops: list[tuple]):
    limit = 3
    book = PollBook(COLLECTOR_OF, PollPolicy(max_in_flight_per_collector=limit))
    now = NOW
    on_wire: dict[int, int] = {}  # request id → meter
    batches = []
    for o in ops:
        if o[0] == "request":
            batches.append(book.request(o[1], now))
        elif o[0] == "due":
            for key, req in book.due(now):
                on_wire[req.request_id] = key
        elif o[0] == "respond" and on_wire:
            request_id = sorted(on_wire)[o[1] % len(on_wire)]
            key = on_wire[request_id]
            book.on_response(key if o[2] else key + 1, response(request_id), now)
        elif o[0] == "advance":
            now += o[1] * SEC
            book.tick(now)
        for collector in (0, 1):
            assert 0 <= book.in_flight(collector) <= limit
    for batch in batches:
        result = book.result(batch)
        states = [p.state for p in result.polls]
        assert result.summary.pending == states.count(PollState.PENDING)
        for p in result.polls:
            assert (p.state is PollState.ANSWERED) == (p.response is not None)
            if p.round_trip_us is not None:
                assert p.round_trip_us >= 0
    pending_sent = sum(
        1
        for b in batches
        for p in book.result(b).polls
        if p.state is PollState.PENDING and p.sent_at_us is not None
    )
    assert pending_sent == book.in_flight(0) + book.in_flight(1)


def test_finished_batches_are_forgotten_after_keep_finished_and_pending_ones_stay():
    book = PollBook(np.zeros(10, np.int32), PollPolicy(keep_finished=dt.timedelta(hours=1)))
    hour = 3_600 * SEC
    answered = book.request([1], 0)
    ((_, request),) = book.due(0)
    assert book.on_response(1, response(request.request_id), 10)
    book.tick(hour + 9)
    assert book.summary(answered).answered == 1  # answered at 10 µs: not yet an hour ago
    book.tick(hour + 10)
    with pytest.raises(NotFound, match="forgotten"):
        book.summary(answered)
    assert book.forgotten == 1
    # a batch still pending is never forgotten, however old
    pending = book.request([2], hour)
    book.tick(10 * hour)
    assert book.summary(pending).pending == 1
    book.due(10 * hour)  # sent now: it times out a minute later, and goes an hour after that
    book.tick(10 * hour + 2 * 60 * SEC)
    assert book.summary(pending).timed_out == 1
    book.tick(11 * hour)
    assert book.summary(pending).timed_out == 1  # finished less than an hour ago
    book.tick(12 * hour)
    with pytest.raises(NotFound):
        book.summary(pending)


def test_memory_of_polls_stays_bounded_over_a_long_run():
    book = PollBook(np.zeros(4, np.int32), PollPolicy(keep_finished=dt.timedelta(hours=2)))
    minute = 60_000_000
    held = []
    for m in range(24 * 60):
        now = m * minute
        book.request([m % 4], now)
        for key, req in book.due(now):
            book.on_response(key, response(req.request_id), now + 1)
        book.tick(now + 2)
        held.append(len(book._batches))
    assert max(held[-600:]) <= 2 * 60 + 2  # about two hours of batches, not a day's
    assert book.forgotten > 20 * 60
