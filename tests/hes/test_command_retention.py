"""Retention of the command book: tick() forgets final commands after ``keep_finished``."""

from __future__ import annotations

import datetime as dt

import pytest

from kenshin.aroute.frames import AckStatus, CommandAck, CommandKind
from kenshin.errors import UnknownCommand
from kenshin.hes.command_rules import CommandPolicy, CommandState
from kenshin.hes.commands import AuditEntry, CommandBook, MemoryAudit
from tests.hes.test_commands import BUSY, MIN, NOW, make_book

S = CommandState
K = CommandKind
HOUR = 60 * MIN


def test_tick_forgets_final_commands_after_keep_finished():
    book = make_book(CommandPolicy(keep_finished=dt.timedelta(hours=1)))
    audit = book.audit
    assert isinstance(audit, MemoryAudit)
    done = book.request(0, K.SET_AMPERE_LIMIT, (80,), NOW, idempotency_key="k")  # refused at once
    live = book.request(1, K.SWITCH_OPEN, (), NOW, expires_at_us=NOW + 3 * HOUR)  # never sent
    book.tick(NOW + HOUR)
    assert book.get(done.command_id).state is S.REJECTED  # final for exactly keep_finished
    book.tick(NOW + HOUR + MIN)
    with pytest.raises(UnknownCommand, match="no longer kept"):
        book.get(done.command_id)
    assert audit.for_command(done.command_id) == []
    assert book.list(meter_key=0) == []
    book.tick(NOW + 2 * HOUR + MIN)  # not final: kept however old
    assert book.get(live.command_id).state is S.QUEUED
    assert [e.to_state for e in audit.for_command(live.command_id)] == [S.REQUESTED, S.QUEUED]
    book.tick(NOW + 3 * HOUR)
    assert book.get(live.command_id).state is S.EXPIRED
    book.tick(NOW + 4 * HOUR + MIN)
    assert len(book) == len(audit) == 0 and book.pruned == 2
    assert sum(book.counts().values()) == 0
    again = book.request(0, K.SET_AMPERE_LIMIT, (60,), NOW + 4 * HOUR, idempotency_key="k")
    assert again.command_id > live.command_id  # the key was forgotten with its command


def test_pruning_runs_at_most_every_prune_every():
    policy = CommandPolicy(keep_finished=dt.timedelta(0), prune_every=dt.timedelta(minutes=10))
    book = make_book(policy)
    book.tick(NOW)
    refused = book.request(0, K.SET_AMPERE_LIMIT, (80,), NOW + MIN)
    book.tick(NOW + 5 * MIN)
    assert book.get(refused.command_id).state is S.REJECTED
    book.tick(NOW + 10 * MIN)
    with pytest.raises(UnknownCommand):
        book.get(refused.command_id)


def test_unknown_and_forgotten_commands_are_told_apart():
    book = make_book(CommandPolicy(keep_finished=dt.timedelta(hours=24)))
    refused = book.request(0, K.SET_AMPERE_LIMIT, (80,), NOW)
    book.tick(NOW + 25 * HOUR)
    with pytest.raises(UnknownCommand, match="forgotten 24 h after they finish"):
        book.get(refused.command_id)
    with pytest.raises(UnknownCommand, match="no command with id"):
        book.get(refused.command_id + 1)


def test_a_sink_without_forget_keeps_everything():
    entries: list[AuditEntry] = []

    class ListSink:
        def append(self, entry: AuditEntry) -> None:
            entries.append(entry)

    base = make_book()
    policy = CommandPolicy(keep_finished=dt.timedelta(0))
    book = CommandBook(base.meter_specs, base.collector_of, policy, audit=ListSink())
    book.request(0, K.SET_AMPERE_LIMIT, (80,), NOW)
    book.tick(NOW + MIN)
    assert len(book) == 0 and len(entries) == 2
    assert book.held()["audit_entries"] == -1


def test_a_long_run_holds_a_bounded_number_of_commands():
    """Three simulated days, three commands a minute: some refused, most acknowledged, some
    never answered (retried, failed) and some left to expire in the queue."""
    keep = dt.timedelta(hours=2)
    book = make_book(CommandPolicy(keep_finished=keep))
    minutes = 3 * 24 * 60
    per_minute = 3
    # a command lives at most its expiry (1 h) and is then kept for `keep`
    bound = per_minute * (keep // dt.timedelta(minutes=1) + 60 + 2)
    peak: dict[str, int] = {}
    for minute in range(minutes):
        now = NOW + minute * MIN
        book.request(0, K.SET_AMPERE_LIMIT, (80,), now, idempotency_key=f"k{minute}")  # refused
        for i in range(per_minute - 1):
            book.request(BUSY[(2 * minute + i) % len(BUSY)], K.SWITCH_OPEN, (), now)
        book.tick(now)
        for record, command in book.due(now):
            if record.meter_key % 3:  # meters 7 and 10, 13, 16 never answer
                book.on_ack(record.meter_key, CommandAck(command.command_id, AckStatus.OK), now)
        if minute >= 24 * 60:  # after a day the book must be in its steady state
            for name, value in book.held().items():
                peak[name] = max(peak.get(name, 0), value)
    states = {r.state for r in book.list(limit=bound)}
    assert {S.ACKNOWLEDGED, S.REJECTED} <= states and states & {S.FAILED, S.EXPIRED}
    assert book.pruned > 8 * bound  # most of the 12,960 commands are gone
    assert peak["records"] <= bound
    assert peak["audit_entries"] <= 8 * bound  # at most 8 transitions per command
    assert peak["idempotency_keys"] <= bound // per_minute
    assert peak["meter_index"] <= bound
    assert peak["queues"] <= 2 * bound
    assert sum(book.counts().values()) == len(book)
