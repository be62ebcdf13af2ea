"""The head-end's command book: queueing, throttling, retries, audit and retention.

A command is requested, checked against the meter's specification (:func:`refusal`), queued,
sent by :meth:`CommandBook.due`, acknowledged or rejected by the meter's ack (:meth:`on_ack`),
retried or given up after ack timeouts and expired when its time ran out (:meth:`tick`); the
states, transitions, policy and the meters' rules are in :mod:`kenshin.hes.command_rules`.

Every state change goes through :data:`~kenshin.hes.command_rules.TRANSITIONS` and is written to
the audit sink and the log ``kenshin.hes.commands`` (X2, X5). The book is pure logic: it does no
I/O and never reads the clock; callers pass ``now_us`` (epoch µs).

Safety rules (X2, no unintended control):

- a meter has at most one command on the wire, and its commands go out in request order, so a
  retry of an older command can never overtake a newer one (two ampere limits land in order);
- an ack completes a command only if it comes from the meter the command was sent to and the
  command is on the wire; anything else is ignored, logged and counted;
- a command past its expiry is never (re)sent.

Retention: :meth:`CommandBook.tick` forgets commands that reached a final state more than
``CommandPolicy.keep_finished`` ago (24 h by default), with their idempotency keys and their
entries in a :class:`MemoryAudit`, so a long-running head-end holds a bounded number of records;
commands not yet final are never forgotten. The log gets every transition for good (campaigns'
per-command entries at DEBUG).
"""

from __future__ import annotations

import builtins
import datetime as dt
import heapq
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence, Sized
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from kenshin.aroute.frames import AckStatus, Authorization, Command, CommandAck, CommandKind
from kenshin.core.timeslots import US_PER_MINUTE
from kenshin.errors import (
    IdempotencyConflict,
    InvalidInput,
    InvalidSetting,
    KenshinError,
    UnknownCommand,
    UnknownMeter,
)
from kenshin.hes.command_audit import AuditEntry, AuditSink, MemoryAudit
from kenshin.hes.command_rules import (
    ARG_COUNT,
    U32_MAX,
    CommandEvent,
    CommandPolicy,
    CommandState,
    MeterSpecs,
    micros,
    refusal,
    transition,
)
from kenshin.hes.x1 import X1Ceiling

__all__ = [  # with the policy and specs a head-end needs to build a book
    "AuditEntry",
    "AuditSink",
    "CommandBook",
    "CommandPolicy",
    "CommandRecord",
    "MemoryAudit",
    "MeterSpecs",
]

logger = logging.getLogger(__name__)

E = CommandEvent


class CommandRecord(NamedTuple):
    """One command and where it stands. Immutable: the book replaces it on every transition
    (a named tuple: creating and replacing one is several times cheaper than a dataclass)."""

    command_id: int
    meter_key: int
    collector: int  # where the command goes on the wire
    kind: CommandKind
    args: tuple[int, int, int]  # (arg1, arg2, arg3)
    state: CommandState
    requested_at_us: int
    requested_by: str
    expires_at_us: int
    idempotency_key: str | None = None
    attempts: int = 0  # times sent
    not_before_us: int = 0  # earliest (re)send: the backoff
    sent_at_us: int | None = None  # last send
    completed_at_us: int | None = None  # reached a final state
    ack_status: AckStatus | None = None
    ack_detail: int | None = None
    reason: str = ""  # why refused, rejected, failed or expired
    # a switching command's signature by the business system, carried as it came (issue 16)
    authorization: Authorization | None = None

    @property
    def command(self) -> Command:
        return Command(self.command_id, self.kind, *self.args, self.authorization)


_ACK_STATUSES = frozenset(int(s) for s in AckStatus)
_IN_QUEUE = frozenset({CommandState.QUEUED, CommandState.SENT})
_TERMINAL = frozenset(s for s in CommandState if s.is_terminal)


class CommandBook:
    """Commands of a fleet: request, send (:meth:`due`), acknowledge, time out, audit."""

    def __init__(
        self,
        meter_specs: MeterSpecs,
        collector_of: npt.ArrayLike,
        policy: CommandPolicy | None = None,
        audit: AuditSink | None = None,
        first_command_id: int = 1,
    ) -> None:
        self.meter_specs = meter_specs
        self.collector_of = np.asarray(collector_of, dtype=np.int32)
        self.x1: X1Ceiling | None = None  # the head-end sets its X1 ceiling (hes.x1)
        if self.collector_of.shape != (len(meter_specs),):
            raise InvalidInput("collector_of must give one collector per meter")
        self.policy = policy or CommandPolicy()
        self.audit: AuditSink = audit if audit is not None else MemoryAudit()
        forget = getattr(self.audit, "forget", None)
        self._forget_audit: Callable[[builtins.list[int]], object] | None = forget
        if not 1 <= first_command_id <= U32_MAX:
            raise InvalidSetting("first_command_id must be a u32 above 0")
        self._first_id = first_command_id
        self._next_id = first_command_id
        self._ack_timeout_us = micros(self.policy.ack_timeout)
        self._default_expiry_us = micros(self.policy.default_expiry)
        self._attempt_detail = {
            n: f"attempt {n}/{self.policy.max_attempts}"
            for n in range(1, self.policy.max_attempts + 1)
        }
        self._records: dict[int, CommandRecord] = {}
        self._by_meter: dict[int, builtins.list[int]] = {}
        self._idempotency: dict[str, int] = {}
        self._counts: Counter[CommandState] = Counter()
        # a meter's queued or sent commands in request order: only the head may be sent
        self._head: dict[int, int] = {}  # meter → its oldest queued or sent command
        self._waiting: dict[int, builtins.list[int]] = {}  # meter → the queued ones behind it
        # per collector: (not_before_us, command_id) of meter-queue heads waiting to be sent
        self._ready: dict[int, builtins.list[tuple[int, int]]] = {}
        self._in_flight: Counter[int] = Counter()
        self._recent_sends: dict[int, deque[int]] = {}
        self._timeouts: builtins.list[tuple[int, int, int]] = []  # (deadline, id, attempt)
        self._expiries: builtins.list[tuple[int, int]] = []  # (expires_at, id)
        # (completed_at_us, id) of final commands in completion order: what prune() forgets
        self._finished: deque[tuple[int, int]] = deque()
        self._next_prune_us = 0
        self.pruned = 0  # commands forgotten so far
        self.ignored_acks: Counter[str] = Counter()  # unknown / bad_status / wrong_meter / late

    # --- requests ---------------------------------------------------------------------------

    def request(
        self,
        meter_key: int,
        kind: CommandKind,
        args: Sequence[int],
        now_us: int,
        *,
        idempotency_key: str | None = None,
        requested_by: str = "api",
        expires_at_us: int | None = None,
        authorization: Authorization | None = None,
    ) -> CommandRecord:
        """Check and queue one command (``args``: up to three u32, see :class:`CommandKind`).

        A command the meter cannot take comes back REJECTED with ``reason`` set. A repeated
        ``idempotency_key`` returns the first record, or raises :class:`IdempotencyConflict` when
        the meter, kind or arguments differ.
        """
        meter_key = int(meter_key)
        if not 0 <= meter_key < len(self.meter_specs):
            raise UnknownMeter(f"no meter with key {meter_key}")
        kind, args3, expires, detail = self._prepare(kind, args, now_us, expires_at_us)
        spec = self.meter_specs.spec(meter_key)
        why = refusal(spec, kind, args3, now_us)
        if why is None and self.x1 is not None:  # the head-end's own X1 ceiling (issue 16)
            why = self.x1.refusal(kind, meter_key, args3, now_us)
        return self._create(
            meter_key,
            int(self.collector_of[meter_key]),
            kind,
            args3,
            why,
            now_us,
            idempotency_key,
            requested_by,
            expires,
            detail,
            bulk=False,
            authorization=authorization,
        )

    def request_many(
        self,
        meter_keys: npt.ArrayLike,
        kind: CommandKind,
        args: Sequence[int],
        now_us: int,
        *,
        idempotency_key: str | None = None,
        requested_by: str = "api",
        expires_at_us: int | None = None,
    ) -> builtins.list[CommandRecord]:
        """One command for each meter (a campaign). Checks run once per generation × class.

        With an idempotency key, meter ``k`` uses ``f"{idempotency_key}/{k}"``. Per-command audit
        entries are logged at debug level and the campaign at info level.
        """
        keys = np.asarray(meter_keys, dtype=np.int64).ravel()
        if keys.size and (keys.min() < 0 or keys.max() >= len(self.meter_specs)):
            bad = keys[(keys < 0) | (keys >= len(self.meter_specs))][0]
            raise UnknownMeter(f"no meter with key {bad}")
        kind, args3, expires, detail = self._prepare(kind, args, now_us, expires_at_us)
        codes = self.meter_specs.codes[keys]
        collectors = self.collector_of[keys]
        reasons = {
            int(c): refusal(self.meter_specs.spec_of_code(int(c)), kind, args3, now_us)
            for c in np.unique(codes)
        }
        records = [
            self._create(
                key,
                collector,
                kind,
                args3,
                reasons[code],
                now_us,
                None if idempotency_key is None else f"{idempotency_key}/{key}",
                requested_by,
                expires,
                detail,
                bulk=True,
            )
            for key, collector, code in zip(
                keys.tolist(), collectors.tolist(), codes.tolist(), strict=True
            )
        ]
        logger.info(
            "%s requested %s for %d meters: %d queued, %d refused",
            requested_by,
            detail,
            len(records),
            sum(r.state is CommandState.QUEUED for r in records),
            sum(r.state is CommandState.REJECTED for r in records),
        )
        return records

    def _prepare(
        self,
        kind: CommandKind,
        args: Sequence[int],
        now_us: int,
        expires_at_us: int | None,
    ) -> tuple[CommandKind, tuple[int, int, int], int, str]:
        kind = CommandKind(kind)
        if len(args) > 3:
            raise InvalidInput(f"a command has at most 3 arguments, got {len(args)}")
        padded = [int(a) for a in args] + [0] * (3 - len(args))
        args3 = (padded[0], padded[1], padded[2])
        if expires_at_us is None:
            expires_at_us = now_us + self._default_expiry_us
        elif expires_at_us <= now_us:
            raise InvalidInput("a command's expiry must be after its request")
        # the arguments given (an ampere limit without a profile is one number)
        shown = args3[: ARG_COUNT[kind]]
        while len(shown) > 1 and shown[-1] == 0 and kind is CommandKind.SET_AMPERE_LIMIT:
            shown = shown[:-1]
        detail = f"{kind.name} {', '.join(map(str, shown))}".strip()
        return kind, args3, expires_at_us, detail

    def _create(
        self,
        meter_key: int,
        collector: int,
        kind: CommandKind,
        args: tuple[int, int, int],
        reason: str | None,
        now_us: int,
        idempotency_key: str | None,
        requested_by: str,
        expires_at_us: int,
        detail: str,
        bulk: bool,
        authorization: Authorization | None = None,
    ) -> CommandRecord:
        if idempotency_key is not None and idempotency_key in self._idempotency:
            existing = self._records[self._idempotency[idempotency_key]]
            if (existing.meter_key, existing.kind, existing.args) != (meter_key, kind, args):
                raise IdempotencyConflict(
                    f"idempotency key {idempotency_key!r} was used for command "
                    f"{existing.command_id} with other parameters"
                )
            return existing
        if self._next_id > U32_MAX:
            raise KenshinError("command ids exhausted (u32)")
        command_id = self._next_id
        self._next_id += 1
        record = CommandRecord(
            command_id,
            meter_key,
            collector,
            kind,
            args,
            CommandState.REQUESTED,
            now_us,
            requested_by,
            expires_at_us,
            idempotency_key,
            not_before_us=now_us,
            authorization=authorization,
        )
        self._records[command_id] = record
        self._by_meter.setdefault(meter_key, []).append(command_id)
        if idempotency_key is not None:
            self._idempotency[idempotency_key] = command_id
        self._counts[CommandState.REQUESTED] += 1
        self._log(
            AuditEntry(
                now_us,
                command_id,
                meter_key,
                kind,
                None,
                CommandState.REQUESTED,
                detail,
                requested_by,
            ),
            bulk,
        )
        if reason is not None:
            return self._move(record, E.REFUSE, now_us, reason, bulk, reason=reason)
        record = self._move(record, E.ACCEPT, now_us, "capability checks passed", bulk)
        heapq.heappush(self._expiries, (expires_at_us, command_id))
        return record

    # --- the state machine ------------------------------------------------------------------

    def _move(
        self,
        record: CommandRecord,
        event: CommandEvent,
        now_us: int,
        detail: str,
        bulk: bool = False,
        **changes: Any,
    ) -> CommandRecord:
        """The only place a command's state changes: via the table, with an audit entry."""
        old = record.state
        new = transition(old, event)
        terminal = new in _TERMINAL
        if terminal:
            changes["completed_at_us"] = now_us
            self._finished.append((now_us, record.command_id))
        record = record._replace(state=new, **changes)
        self._records[record.command_id] = record
        self._counts[old] -= 1
        self._counts[new] += 1
        if old is CommandState.SENT:
            self._in_flight[record.collector] -= 1
        if new is CommandState.SENT:
            self._in_flight[record.collector] += 1
        self._log(
            AuditEntry(
                now_us,
                record.command_id,
                record.meter_key,
                record.kind,
                old,
                new,
                detail,
                record.requested_by,
            ),
            bulk,
        )
        meter = record.meter_key
        if old is CommandState.REQUESTED and new is CommandState.QUEUED:
            if meter in self._head:
                self._waiting.setdefault(meter, []).append(record.command_id)
            else:
                self._head[meter] = record.command_id
                self._make_ready(record)
        elif old is CommandState.SENT and new is CommandState.QUEUED:
            self._make_ready(record)  # still the head of its meter's queue
        elif terminal and old in _IN_QUEUE:
            waiting = self._waiting.get(meter)
            if self._head[meter] != record.command_id:
                assert waiting is not None  # only heads are sent
                waiting.remove(record.command_id)
            elif waiting:
                self._head[meter] = waiting.pop(0)
                self._make_ready(self._records[self._head[meter]])
            else:
                del self._head[meter]
            if waiting is not None and not waiting:
                del self._waiting[meter]
        return record

    def _make_ready(self, record: CommandRecord) -> None:
        heap = self._ready.setdefault(record.collector, [])
        heapq.heappush(heap, (record.not_before_us, record.command_id))

    def _log(self, entry: AuditEntry, bulk: bool) -> None:
        self.audit.append(entry)
        level = logging.DEBUG if bulk else logging.INFO
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "command %d meter %d %s: %s → %s (%s) by %s",
                entry.command_id,
                entry.meter_key,
                entry.kind.name,
                entry.from_state.label if entry.from_state else "-",
                entry.to_state.label,
                entry.detail,
                entry.requested_by,
            )

    # --- the wire ---------------------------------------------------------------------------

    def due(self, now_us: int) -> builtins.list[tuple[CommandRecord, Command]]:
        """Commands to put on the wire now, marked SENT. Per collector: at most
        ``max_in_flight_per_collector`` on the wire and ``sends_per_minute_per_collector`` sends
        in any minute; per meter: one at a time, in request order, after its backoff."""
        out: builtins.list[tuple[CommandRecord, Command]] = []
        limit = self.policy.max_in_flight_per_collector
        self._route_waiting(now_us)
        for collector in builtins.list(self._ready):
            if collector < 0:
                continue  # no route to these meters yet: nothing could carry them
            heap = self._ready[collector]
            while heap and heap[0][0] <= now_us:
                if self._in_flight[collector] >= limit or not self._rate_ok(collector, now_us):
                    break
                _, command_id = heapq.heappop(heap)
                record = self._records.get(command_id)
                if record is None or record.state is not CommandState.QUEUED:
                    continue  # stale: expired while waiting (and maybe forgotten since)
                if now_us >= record.expires_at_us:
                    self._move(record, E.EXPIRE, now_us, "expired before it could be sent")
                    continue
                attempt = record.attempts + 1
                record = self._move(
                    record,
                    E.SEND,
                    now_us,
                    self._attempt_detail[attempt],
                    attempts=attempt,
                    sent_at_us=now_us,
                )
                deadline = now_us + self._ack_timeout_us
                heapq.heappush(self._timeouts, (deadline, command_id, attempt))
                if self.policy.sends_per_minute_per_collector is not None:
                    self._recent_sends.setdefault(collector, deque()).append(now_us)
                out.append((record, record.command))
            if not heap:
                del self._ready[collector]
        return out

    def _route_waiting(self, now_us: int) -> None:
        """Commands for meters the head-end had not heard from yet (collector -1, no route)
        wait, unsent and with no attempt counted, until a frame of the meter names its
        collector; then they join that collector's queue."""
        waiting = self._ready.get(-1)
        if not waiting:
            return
        still: builtins.list[tuple[int, int]] = []
        for due_us, command_id in waiting:
            record = self._records.get(command_id)
            if record is None or record.state is not CommandState.QUEUED:
                continue
            if now_us >= record.expires_at_us:
                self._move(record, E.EXPIRE, now_us, "expired: the meter was never heard from")
                continue
            collector = int(self.collector_of[record.meter_key])
            if collector < 0:
                still.append((due_us, command_id))
                continue
            self._records[command_id] = record._replace(collector=collector)
            heapq.heappush(self._ready.setdefault(collector, []), (due_us, command_id))
        if still:
            heapq.heapify(still)
            self._ready[-1] = still
        else:
            del self._ready[-1]

    def _rate_ok(self, collector: int, now_us: int) -> bool:
        rate = self.policy.sends_per_minute_per_collector
        if rate is None:
            return True
        sends = self._recent_sends.get(collector)
        while sends and sends[0] <= now_us - US_PER_MINUTE:
            sends.popleft()
        return sends is None or len(sends) < rate

    def on_ack(self, meter_key: int, ack: CommandAck, now_us: int) -> CommandRecord | None:
        """Apply a meter's ack; returns the updated record, or None when the ack is ignored
        (unknown command, another meter's command, or not on the wire: late or duplicate)."""
        record = self._records.get(ack.command_id)
        if record is None:
            why = "unknown"
        elif ack.status not in _ACK_STATUSES:
            why = "bad_status"
        elif record.meter_key != meter_key:
            why = "wrong_meter"  # X2: a meter cannot complete another meter's command
        elif record.state is not CommandState.SENT:
            why = "late"
        else:
            status = AckStatus(ack.status)
            ok = status is AckStatus.OK
            return self._move(
                record,
                E.ACK_OK if ok else E.ACK_REJECT,
                now_us,
                f"ack {status.name.lower()} detail={ack.detail}",
                ack_status=status,
                ack_detail=ack.detail,
                reason="" if ok else f"meter answered {status.name.lower()}",
            )
        self.ignored_acks[why] += 1
        # a late or unknown ack is routine (a retry crossed it, a head-end restarted); an ack
        # naming another meter's command is not (X2)
        logger.log(
            logging.WARNING if why in ("wrong_meter", "bad_status") else logging.INFO,
            "ignored %s ack for command %d from meter %d (status %s)",
            why,
            ack.command_id,
            meter_key,
            ack.status,
        )
        return None

    def tick(self, now_us: int) -> builtins.list[CommandRecord]:
        """Ack timeouts (retry with backoff, FAILED after the last attempt, EXPIRED when past
        expiry) and expiry of queued commands; every ``prune_every``, forget the commands final
        for longer than ``keep_finished`` (:meth:`prune`). Returns the records that changed."""
        changed: builtins.list[CommandRecord] = []
        policy = self.policy
        while self._timeouts and self._timeouts[0][0] <= now_us:
            _, command_id, attempt = heapq.heappop(self._timeouts)
            record = self._records.get(command_id)
            if record is None or (record.state, record.attempts) != (CommandState.SENT, attempt):
                continue  # answered in time (and maybe forgotten since), or a stale deadline
            if now_us >= record.expires_at_us:
                record = self._move(
                    record, E.EXPIRE, now_us, "no ack and past expiry", reason="expired"
                )
            elif attempt >= policy.max_attempts:
                why = f"no ack after {attempt} attempt(s)"
                record = self._move(record, E.GIVE_UP, now_us, why, reason=why)
            else:
                wait = policy.backoff_us(attempt)
                record = self._move(
                    record,
                    E.RETRY,
                    now_us,
                    f"no ack, retry in {wait / 1e6:g} s",
                    not_before_us=now_us + wait,
                )
            changed.append(record)
        while self._expiries and self._expiries[0][0] <= now_us:
            _, command_id = heapq.heappop(self._expiries)
            record = self._records.get(command_id)
            if record is not None and record.state is CommandState.QUEUED:
                changed.append(
                    self._move(record, E.EXPIRE, now_us, "expired in the queue", reason="expired")
                )
        flush = getattr(self.audit, "flush", None)  # a sink that keeps them for good
        if flush is not None:
            flush()
        if now_us >= self._next_prune_us:  # retention: cheap, at most every prune_every
            self._next_prune_us = now_us + micros(policy.prune_every)
            self.prune(now_us - micros(policy.keep_finished))
        return changed

    # --- queries ----------------------------------------------------------------------------

    def get(self, command_id: int) -> CommandRecord:
        try:
            return self._records[command_id]
        except KeyError:
            if self._first_id <= command_id < self._next_id:
                hours = self.policy.keep_finished / dt.timedelta(hours=1)
                raise UnknownCommand(
                    f"command {command_id} is no longer kept: finished commands are forgotten "
                    f"{hours:g} h after they finish"
                ) from None
            raise UnknownCommand(f"no command with id {command_id}") from None

    def counts(self) -> dict[CommandState, int]:
        return {state: self._counts[state] for state in CommandState}

    def in_flight(self, collector: int) -> int:
        return self._in_flight[collector]

    def __len__(self) -> int:
        return len(self._records)

    def held(self) -> dict[str, int]:
        """What the book holds, by kind: records, audit entries (a sized sink), idempotency keys,
        meter index entries, and queue entries (ack timeouts, expiries, send queues, retention)."""
        return {
            "records": len(self._records),
            "audit_entries": len(self.audit) if isinstance(self.audit, Sized) else -1,
            "idempotency_keys": len(self._idempotency),
            "meter_index": sum(map(len, self._by_meter.values())),
            "queues": len(self._timeouts)
            + len(self._expiries)
            + sum(map(len, self._ready.values()))
            + len(self._finished),
        }

    def prune(self, completed_before_us: int) -> int:
        """Forget commands that reached a final state before ``completed_before_us``, with their
        idempotency keys and (in a sink with ``forget``) their audit entries; commands not yet
        final stay. :meth:`tick` calls it. Costs one step per forgotten command. Returns how
        many."""
        finished = self._finished
        gone: dict[int, builtins.list[int]] = {}  # meter → its forgotten commands
        while finished and finished[0][0] < completed_before_us:
            _, command_id = finished.popleft()
            record = self._records.pop(command_id)
            self._counts[record.state] -= 1
            if record.idempotency_key is not None:
                del self._idempotency[record.idempotency_key]
            gone.setdefault(record.meter_key, []).append(command_id)
        forgotten: builtins.list[int] = []
        for meter, ids in gone.items():
            forgotten += ids
            dropped = set(ids)
            kept = [i for i in self._by_meter[meter] if i not in dropped]
            if kept:
                self._by_meter[meter] = kept
            else:
                del self._by_meter[meter]
        if forgotten and self._forget_audit is not None:
            self._forget_audit(forgotten)
        self.pruned += len(forgotten)
        return len(forgotten)

    def list(
        self,
        meter_key: int | None = None,
        state: CommandState | None = None,
        limit: int = 100,
        kind: CommandKind | None = None,
    ) -> builtins.list[CommandRecord]:
        """Newest first: of one meter, in one state, of one kind when given."""
        ids: Iterable[int] = (
            reversed(self._records)
            if meter_key is None
            else reversed(self._by_meter.get(meter_key, []))
        )
        out: builtins.list[CommandRecord] = []
        for command_id in ids:
            if len(out) >= limit:
                break
            record = self._records[command_id]
            if (state is None or record.state is state) and (kind is None or record.kind is kind):
                out.append(record)
        return out
