"""The envelope link between collectors and head-end workers, and its in-memory twin.

A link publishes envelopes on topics, receives what its subscriptions match in batches, and
acknowledges each delivery once its values are stored. Two implementations share these
semantics:

- :class:`kenshin.aroute.mqtt.MqttLink` over a real broker (Mosquitto), in the service mode;
- :class:`MemoryBroker` / :class:`MemoryLink` here, in one process: ``kenshin up`` and
  ``kenshin simulate --aroute wire`` run the head-end worker over it, and most tests do.

The twin behaves as Mosquitto does for QoS 1 with MQTT 5 (what the service mode relies on):

- topic filters with ``+`` and ``#``; ``$share/<group>/<filter>`` gives each message to one
  member of the group, round-robin over every member session, connected or not;
- a session delivers at most ``receive_maximum`` messages that are not acknowledged yet;
- a *persistent* session outlives its client: while the client is gone its share is queued, and
  what it had received but not acknowledged is delivered again, marked ``redelivered``, when a
  client with the same id connects; a non-persistent session is discarded with its messages.

So a worker killed between receiving and storing, or between storing and acknowledging, gets
its unacknowledged messages again when it comes back: nothing is lost, and the replay windows
stored with the values tell a repeat from a first delivery (``kenshin.hes.worker``).
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Protocol

from kenshin.errors import LinkClosed


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as a subscriber receives it; ``tag`` identifies it for :meth:`ack`."""

    topic: str
    payload: bytes
    tag: int
    qos: int = 1
    redelivered: bool = False
    # the publisher sent this again, not knowing whether the first copy arrived (a broker that
    # may have lost it): its values are compared with the store before they are stored
    again: bool = False


class EnvelopeLink(Protocol):
    def publish(self, topic: str, payload: bytes, again: bool = False) -> None:
        """Send at QoS 1: delivered at least once to every matching subscription. ``again``:
        a copy of what may have arrived before (:attr:`Delivery.again`)."""
        ...

    def publish_status(self, topic: str, payload: bytes) -> None:
        """Fire and forget (QoS 0): progress reports, never queued for absent subscribers."""
        ...

    def receive(self, wait_s: float, limit: int = 256) -> list[Delivery]:
        """What arrived together: the first delivery within ``wait_s``, then whatever is
        waiting, up to ``limit``; an empty list when nothing came."""
        ...

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge a delivery (after its values are stored)."""
        ...

    def close(self) -> None: ...


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching: ``+`` is one level, a final ``#`` any number (zero included)."""
    want = topic_filter.split("/")
    have = topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return i == len(want) - 1
        if i >= len(have) or (part != "+" and part != have[i]):
            return False
    return len(want) == len(have)


def _shared(subscription: str) -> tuple[str | None, str]:
    """(group, filter) of ``$share/group/filter``; (None, filter) otherwise."""
    if subscription.startswith("$share/"):
        _, group, topic_filter = subscription.split("/", 2)
        return group, topic_filter
    return None, subscription


@dataclass
class _Session:
    client_id: str
    persistent: bool
    receive_maximum: int
    queue: collections.deque[Delivery] = field(default_factory=collections.deque)
    in_flight: dict[int, Delivery] = field(default_factory=dict)
    link: MemoryLink | None = None


class MemoryBroker:
    """An in-process broker with the semantics described in the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._sessions: dict[str, _Session] = {}
        self._plain: dict[str, set[str]] = {}  # client id → filters
        self._groups: dict[tuple[str, str], list[str]] = {}  # (group, filter) → members
        self._turn: dict[tuple[str, str], int] = {}
        self._tags = itertools.count(1)
        self.published = 0

    def connect(
        self,
        client_id: str,
        subscriptions: tuple[str, ...] = (),
        *,
        persistent: bool = False,
        receive_maximum: int = 64,
    ) -> MemoryLink:
        """A client; with ``persistent`` and an existing session, it takes that session over
        (its queued and unacknowledged messages included)."""
        with self._lock:
            session = self._sessions.get(client_id)
            if session is not None and session.link is not None:
                session.link._detach()  # a second client with the same id takes over
                self._disconnect(client_id)
                session = self._sessions.get(client_id)
            if session is None or not persistent:
                if session is not None:
                    self._forget(client_id)
                session = _Session(client_id, persistent, receive_maximum)
                self._sessions[client_id] = session
            session.receive_maximum = receive_maximum
            session.persistent = persistent
            link = MemoryLink(self, client_id)
            session.link = link
            for subscription in subscriptions:
                group, topic_filter = _shared(subscription)
                if group is None:
                    self._plain.setdefault(client_id, set()).add(topic_filter)
                else:
                    members = self._groups.setdefault((group, topic_filter), [])
                    if client_id not in members:
                        members.append(client_id)
            self._lock.notify_all()
            return link

    def kill(self, client_id: str) -> None:
        """The client dies without a word: its session keeps what it had not acknowledged."""
        with self._lock:
            session = self._sessions.get(client_id)
            if session is not None and session.link is not None:
                session.link._detach()
            self._disconnect(client_id)

    def publish(self, topic: str, payload: bytes, qos: int = 1, again: bool = False) -> None:
        with self._lock:
            self.published += 1
            for client_id, filters in self._plain.items():
                if any(topic_matches(f, topic) for f in filters):
                    self._enqueue(client_id, topic, payload, qos, again)
            for key, members in self._groups.items():
                if not members or not topic_matches(key[1], topic):
                    continue
                turn = self._turn.get(key, 0)
                self._turn[key] = turn + 1
                self._enqueue(members[turn % len(members)], topic, payload, qos, again)
            self._lock.notify_all()

    def pending(self, client_id: str) -> int:
        """Messages of a session not acknowledged yet (queued or in flight)."""
        with self._lock:
            session = self._sessions.get(client_id)
            return 0 if session is None else len(session.queue) + len(session.in_flight)

    # ---- under the lock

    def _enqueue(
        self, client_id: str, topic: str, payload: bytes, qos: int, again: bool = False
    ) -> None:
        session = self._sessions[client_id]
        if qos == 0 and session.link is None:
            return  # QoS 0 is not queued for an absent client
        session.queue.append(Delivery(topic, payload, next(self._tags), qos, again=again))

    def _take(self, client_id: str, limit: int) -> list[Delivery]:
        session = self._sessions.get(client_id)
        if session is None:
            return []
        room = min(limit, session.receive_maximum - len(session.in_flight))
        taken = []
        while session.queue and room > 0:
            delivery = session.queue.popleft()
            if delivery.qos:
                session.in_flight[delivery.tag] = delivery
            taken.append(delivery)
            room -= 1
        return taken

    def _ack(self, client_id: str, tag: int) -> None:
        session = self._sessions.get(client_id)
        if session is not None:
            session.in_flight.pop(tag, None)
            self._lock.notify_all()

    def _disconnect(self, client_id: str) -> None:
        session = self._sessions.get(client_id)
        if session is None:
            return
        session.link = None
        if not session.persistent:
            self._forget(client_id)
            return
        # delivered again, first and marked, when the client is back (MQTT 5 §4.4)
        again = [replace(d, redelivered=True) for d in session.in_flight.values()]
        session.in_flight.clear()
        session.queue.extendleft(reversed(again))

    def _forget(self, client_id: str) -> None:
        self._sessions.pop(client_id, None)
        self._plain.pop(client_id, None)
        for members in self._groups.values():
            if client_id in members:
                members.remove(client_id)


class MemoryLink:
    """One client of a :class:`MemoryBroker` (see :class:`EnvelopeLink`)."""

    def __init__(self, broker: MemoryBroker, client_id: str) -> None:
        self._broker = broker
        self.client_id = client_id
        self._attached = True
        self.published = 0

    def _detach(self) -> None:
        self._attached = False

    def _check(self) -> None:
        if not self._attached:
            raise LinkClosed(f"link {self.client_id} is closed")

    def publish(self, topic: str, payload: bytes, again: bool = False) -> None:
        self._check()
        self._broker.publish(topic, payload, qos=1, again=again)
        self.published += 1

    def publish_status(self, topic: str, payload: bytes) -> None:
        self._check()
        self._broker.publish(topic, payload, qos=0)

    def receive(self, wait_s: float, limit: int = 256) -> list[Delivery]:
        broker = self._broker
        deadline = time.monotonic() + wait_s
        with broker._lock:
            while True:
                self._check()
                taken = broker._take(self.client_id, limit)
                remaining = deadline - time.monotonic()
                if taken or remaining <= 0:
                    return taken
                broker._lock.wait(remaining)

    def ack(self, delivery: Delivery) -> None:
        self._check()
        with self._broker._lock:
            self._broker._ack(self.client_id, delivery.tag)

    def close(self) -> None:
        """A clean disconnect: a persistent session keeps its messages, as with :meth:`kill`."""
        with self._broker._lock:
            if self._attached:
                self._attached = False
                self._broker._disconnect(self.client_id)
