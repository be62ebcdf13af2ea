"""Values seen but never reported stored are taken back (kenshin.hes.confirm, issue 12):
the ledger of observed envelopes, and the tracker's figures after a value is taken back,
hand-computed on a tiny fleet (the tracker of tests/hes/test_duties.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from kenshin.aroute.mqtt import envelope_digest, is_stored_topic, stored_topic
from kenshin.hes.confirm import StoredLedger
from tests.hes.test_duties import MIN, STEP, T0, tracker

DELAYS = (dt.timedelta(minutes=10),)
LATE = dt.timedelta(hours=1)


def test_a_named_envelope_is_confirmed_whichever_comes_first() -> None:
    ledger = StoredLedger(confirm_within_s=60)
    ledger.seen(b"first", 1, now_s=0.0)
    ledger.stored(envelope_digest(b"first") + envelope_digest(b"second"), now_s=1.0)
    ledger.seen(b"second", 2, now_s=2.0)  # its report came before it
    assert (len(ledger), ledger.confirmed) == (0, 2)
    assert ledger.expired(now_s=1000.0) == []


def test_an_unnamed_envelope_is_handed_back_after_the_wait() -> None:
    ledger = StoredLedger(confirm_within_s=60)
    ledger.seen(b"lost", 7, now_s=0.0)
    ledger.seen(b"later", 8, now_s=30.0)
    assert ledger.expired(now_s=59.0) == []
    [back] = ledger.expired(now_s=61.0)
    assert (back.payload, back.arrival_us) == (b"lost", 7)
    assert len(ledger) == 1  # "later" still has time
    # a report for an envelope handed back changes nothing (its values are re-read)
    ledger.stored(envelope_digest(b"lost"), now_s=62.0)
    assert ledger.confirmed == 0


def test_the_ledger_refuses_a_wait_of_nothing() -> None:
    with pytest.raises(ValueError, match="positive"):
        StoredLedger(confirm_within_s=0)


def test_stored_reports_are_told_from_envelopes_by_topic() -> None:
    assert is_stored_topic(stored_topic("w1", "kenshin"))
    assert not is_stored_topic("kenshin/03/c00001/up")
    assert not is_stored_topic("kenshin/hes/progress/w1")


def test_a_value_taken_back_in_the_window_is_missing_and_re_read() -> None:
    t = tracker(window=8)
    end = T0 + STEP
    t.advance(end)
    t.record(np.array([0, 1]), np.array([end, end]), end + 5 * MIN)
    t.advance(end + 61 * MIN)  # judged: both on time
    [day] = t.days.values()
    assert (day.expected, day.on_time, int(day.delay_counts.sum())) == (3, 2, 2)
    taken = t.retract(np.array([1]), np.array([end]), end + 5 * MIN)
    assert taken == 1
    assert (day.on_time, int(day.delay_counts.sum())) == (1, 1)
    keys, ends = t.due_rereads(end + 61 * MIN, DELAYS, LATE)
    assert sorted(keys[ends == end].tolist()) == [1, 2]  # meter 2 never sent; 1 taken back


def test_a_value_counted_by_an_earlier_arrival_stays() -> None:
    t = tracker(window=8)
    end = T0 + STEP
    t.advance(end)
    t.record(np.array([0]), np.array([end]), end + 2 * MIN)  # stored: named in time
    t.record(np.array([0]), np.array([end]), end + 9 * MIN)  # a second copy, never named
    assert t.retract(np.array([0]), np.array([end]), end + 9 * MIN) == 0
    assert t.delay_s[t._row(np.array([end]))[0], 0] == 120


def test_a_value_taken_back_after_its_slot_left_the_window() -> None:
    """Behind a fleet at --speed max the window moves on before the wait is over: the value
    is then never received in its day's figures, and a gap the meter may still hold."""
    t = tracker(window=2, memory_us=10 * STEP)
    end = T0 + STEP
    t.advance(end)
    t.record(np.array([2]), np.array([end]), end + 50 * MIN)  # HV meter: late (30 min)
    t.advance(end + 3 * STEP)  # evicted (with the next slot, which nobody sent)
    [day] = t.days.values()
    before = (day.on_time, day.received_late, day.never_received, int(day.delay_counts.sum()))
    assert before == (0, 1, 5, 1)
    assert t.retract(np.array([2]), np.array([end]), end + 50 * MIN) == 1
    assert (day.on_time, day.received_late, day.never_received) == (0, 0, 6)
    assert int(day.delay_counts.sum()) == 0
    assert (2, end) in t.old_gaps
    # a value that arrived after its slot had left the window was never counted: stays out
    assert t.retract(np.array([0]), np.array([end]), end + 4 * STEP) == 0
    assert day.never_received == 6
