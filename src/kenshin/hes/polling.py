"""On-demand polls of chosen meters: operating state and instantaneous values (SPEC A4).

A batch of polls is requested for a list of meters; :meth:`PollBook.due` hands out the poll
requests to put on the wire, at most ``max_in_flight_per_collector`` per collector at a time
(the others wait their turn); the response is matched by its request id *and* the meter it came
from; a poll not answered within its timeout (counted from when it was sent) is timed out.
Pure logic: no I/O, no clock; callers pass ``now_us`` (epoch µs).
"""

from __future__ import annotations

import builtins
import datetime as dt
import heapq
import logging
from collections import Counter, deque
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from kenshin.aroute.frames import PollRequest, PollResponse
from kenshin.errors import InvalidInput, InvalidSetting, KenshinError, NotFound, UnknownMeter

logger = logging.getLogger(__name__)

U32_MAX = 0xFFFF_FFFF


class PollState(IntEnum):
    PENDING = 1  # waiting for its turn or on the wire
    ANSWERED = 2
    TIMED_OUT = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class PollPolicy:
    timeout: dt.timedelta = dt.timedelta(minutes=1)  # from send to response
    max_in_flight_per_collector: int = 4
    # a batch whose polls have all finished is forgotten this long after its last one did, so
    # a long-running head-end's memory stays bounded (the API then answers 404 for it)
    keep_finished: dt.timedelta = dt.timedelta(hours=24)

    def __post_init__(self) -> None:
        if self.timeout <= dt.timedelta(0):
            raise InvalidSetting("poll timeout must be positive")
        if self.keep_finished < self.timeout:
            raise InvalidSetting("keep_finished must be at least the poll timeout")
        if self.max_in_flight_per_collector < 1:
            raise InvalidSetting("max_in_flight_per_collector must be at least 1")


@dataclass(frozen=True, slots=True)
class PollResult:
    meter_key: int
    request_id: int
    state: PollState
    sent_at_us: int | None
    response: PollResponse | None
    round_trip_us: int | None  # send → response, answered polls only


@dataclass(frozen=True, slots=True)
class PollSummary:
    batch_id: int
    requested: int
    pending: int
    answered: int
    timed_out: int
    p50_round_trip_us: int | None  # over answered polls; None when none answered
    p99_round_trip_us: int | None

    @property
    def done(self) -> bool:
        return self.pending == 0


@dataclass(frozen=True, slots=True)
class PollBatchResult:
    batch_id: int
    requested_at_us: int
    polls: tuple[PollResult, ...]  # in request order
    summary: PollSummary


class _Poll:
    __slots__ = (
        "answered_at_us",
        "batch_id",
        "collector",
        "meter_key",
        "request_id",
        "response",
        "sent_at_us",
        "state",
        "timeout_us",
    )

    def __init__(
        self, request_id: int, batch_id: int, meter_key: int, collector: int, timeout_us: int
    ) -> None:
        self.request_id = request_id
        self.batch_id = batch_id
        self.meter_key = meter_key
        self.collector = collector
        self.timeout_us = timeout_us
        self.state = PollState.PENDING
        self.sent_at_us: int | None = None
        self.answered_at_us: int | None = None
        self.response: PollResponse | None = None

    def result(self) -> PollResult:
        rtt = None
        if self.answered_at_us is not None and self.sent_at_us is not None:
            rtt = self.answered_at_us - self.sent_at_us
        return PollResult(
            self.meter_key, self.request_id, self.state, self.sent_at_us, self.response, rtt
        )


@dataclass(slots=True)
class _Batch:
    requested_at_us: int
    request_ids: builtins.list[int]
    pending: int = 0  # polls not answered nor timed out yet


class PollBook:
    """Poll batches of a fleet: request, send (:meth:`due`), match responses, time out."""

    def __init__(
        self,
        collector_of: npt.ArrayLike,
        policy: PollPolicy | None = None,
        first_id: int = 1,
    ) -> None:
        self.collector_of = np.asarray(collector_of, dtype=np.int32)
        self.policy = policy or PollPolicy()
        if not 1 <= first_id <= U32_MAX:
            raise InvalidSetting("first_id must be a u32 above 0")
        self._next_request_id = first_id
        self._next_batch_id = first_id
        self._timeout_us = self.policy.timeout // dt.timedelta(microseconds=1)
        self._polls: dict[int, _Poll] = {}  # request id → poll
        self._batches: dict[int, _Batch] = {}
        self._waiting: dict[int, deque[int]] = {}  # collector → request ids not yet sent
        self._in_flight: Counter[int] = Counter()
        self._deadlines: builtins.list[tuple[int, int]] = []  # (deadline, request id)
        self.ignored_responses: Counter[str] = Counter()  # unknown / wrong_meter / late
        self._keep_us = self.policy.keep_finished // dt.timedelta(microseconds=1)
        self._finished: deque[tuple[int, int]] = deque()  # (finished at, batch id), in order
        self.forgotten = 0  # finished batches dropped after keep_finished

    def request(self, meter_keys: npt.ArrayLike, now_us: int, timeout_us: int | None = None) -> int:
        """Poll each of ``meter_keys``; returns the batch id. ``timeout_us`` counts from the send
        (default: the policy's)."""
        keys = np.asarray(meter_keys, dtype=np.int64).ravel()
        if not keys.size:
            raise InvalidInput("a poll batch needs at least one meter")
        bad = (keys < 0) | (keys >= len(self.collector_of))
        if bad.any():
            raise UnknownMeter(f"no meter with key {keys[bad][0]}")
        timeout = self._timeout_us if timeout_us is None else timeout_us
        if timeout <= 0:
            raise InvalidInput("poll timeout must be positive")
        if self._next_batch_id > U32_MAX or self._next_request_id + keys.size - 1 > U32_MAX:
            raise KenshinError("poll ids exhausted (u32)")
        batch_id = self._next_batch_id
        self._next_batch_id += 1
        first = self._next_request_id
        self._next_request_id += keys.size
        ids = builtins.list(range(first, first + keys.size))
        collectors = self.collector_of[keys].tolist()
        for request_id, key, collector in zip(ids, keys.tolist(), collectors, strict=True):
            self._polls[request_id] = _Poll(request_id, batch_id, key, collector, timeout)
            self._waiting.setdefault(collector, deque()).append(request_id)
        self._batches[batch_id] = _Batch(now_us, ids, len(ids))
        logger.info("poll batch %d: %d meters", batch_id, keys.size)
        return batch_id

    def due(self, now_us: int) -> builtins.list[tuple[int, PollRequest]]:
        """(meter key, request) pairs to put on the wire now, at most
        ``max_in_flight_per_collector`` per collector on the wire at any time."""
        out: builtins.list[tuple[int, PollRequest]] = []
        limit = self.policy.max_in_flight_per_collector
        for collector in builtins.list(self._waiting):
            waiting = self._waiting[collector]
            while waiting and self._in_flight[collector] < limit:
                poll = self._polls.get(waiting.popleft())
                if poll is None or poll.state is not PollState.PENDING:
                    continue  # forgotten with its batch
                poll.sent_at_us = now_us
                self._in_flight[collector] += 1
                heapq.heappush(self._deadlines, (now_us + poll.timeout_us, poll.request_id))
                out.append((poll.meter_key, PollRequest(poll.request_id)))
            if not waiting:
                del self._waiting[collector]
        return out

    def on_response(self, meter_key: int, response: PollResponse, now_us: int) -> bool:
        """Record a response; False when it is ignored (unknown request id, another meter's
        poll, or not on the wire: late or duplicate)."""
        poll = self._polls.get(response.request_id)
        if poll is None:
            why = "unknown"
        elif poll.meter_key != meter_key:
            why = "wrong_meter"
        elif poll.state is not PollState.PENDING or poll.sent_at_us is None:
            why = "late"
        else:
            poll.state = PollState.ANSWERED
            poll.response = response
            poll.answered_at_us = now_us
            self._in_flight[poll.collector] -= 1
            self._finish(poll, now_us)
            return True
        self.ignored_responses[why] += 1
        logger.warning(
            "ignored %s poll response %d from meter %d", why, response.request_id, meter_key
        )
        return False

    def tick(self, now_us: int) -> int:
        """Time out polls sent more than their timeout ago; returns how many."""
        timed_out = 0
        while self._deadlines and self._deadlines[0][0] <= now_us:
            _, request_id = heapq.heappop(self._deadlines)
            poll = self._polls.get(request_id)
            if poll is None or poll.state is not PollState.PENDING:
                continue
            poll.state = PollState.TIMED_OUT
            self._in_flight[poll.collector] -= 1
            self._finish(poll, now_us)
            timed_out += 1
        if timed_out:
            logger.info("%d polls timed out", timed_out)
        self._forget_finished(now_us)
        return timed_out

    def _finish(self, poll: _Poll, now_us: int) -> None:
        batch = self._batches.get(poll.batch_id)
        if batch is not None:
            batch.pending -= 1
            if batch.pending == 0:
                self._finished.append((now_us, poll.batch_id))

    def _forget_finished(self, now_us: int) -> None:
        """Drop the batches whose last poll finished more than ``keep_finished`` ago."""
        cutoff = now_us - self._keep_us
        while self._finished and self._finished[0][0] <= cutoff:
            _, batch_id = self._finished.popleft()
            if batch_id in self._batches:  # not forgotten by hand already
                self.forget(batch_id)
                self.forgotten += 1

    def in_flight(self, collector: int) -> int:
        return self._in_flight[collector]

    def _batch(self, batch_id: int) -> _Batch:
        try:
            return self._batches[batch_id]
        except KeyError:
            raise NotFound(
                f"no poll batch {batch_id} (finished batches are forgotten "
                f"{self.policy.keep_finished} after their last poll finished)"
            ) from None

    def summary(self, batch_id: int) -> PollSummary:
        polls = [self._polls[i] for i in self._batch(batch_id).request_ids]
        states = Counter(p.state for p in polls)
        rtts = np.array(
            [
                p.answered_at_us - p.sent_at_us
                for p in polls
                if p.answered_at_us is not None and p.sent_at_us is not None
            ],
            dtype=np.int64,
        )
        p50 = p99 = None
        if rtts.size:
            p50 = int(np.percentile(rtts, 50, method="nearest"))
            p99 = int(np.percentile(rtts, 99, method="nearest"))
        return PollSummary(
            batch_id,
            len(polls),
            states[PollState.PENDING],
            states[PollState.ANSWERED],
            states[PollState.TIMED_OUT],
            p50,
            p99,
        )

    def result(self, batch_id: int) -> PollBatchResult:
        batch = self._batch(batch_id)
        return PollBatchResult(
            batch_id,
            batch.requested_at_us,
            tuple(self._polls[i].result() for i in batch.request_ids),
            self.summary(batch_id),
        )

    def forget(self, batch_id: int) -> None:
        """Drop a batch and its polls (pending ones are never sent; late answers are ignored)."""
        for request_id in self._batch(batch_id).request_ids:
            poll = self._polls.pop(request_id)
            if poll.state is PollState.PENDING and poll.sent_at_us is not None:
                self._in_flight[poll.collector] -= 1
        del self._batches[batch_id]
