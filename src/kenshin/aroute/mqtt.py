"""The MQTT 5 transport of the A-route (paho-mqtt against a real broker, e.g. Mosquitto); the
in-memory twin with the same semantics is :mod:`kenshin.aroute.link`.

Topics: collectors publish envelopes to ``kenshin/<area>/<collector>/up`` and receive downlink
envelopes on ``kenshin/<area>/<collector>/down`` (docs/protocols/aroute.md). Data goes at QoS 1.

- :class:`MqttLink` is one client: it publishes with a cap on messages in flight (publishing blocks
  until the broker has acknowledged enough), and hands subscribed messages to a callback.
- Head-end workers share the uplink with an MQTT 5 shared subscription (``$share/hes/...``): the
  broker gives each message to one worker. A worker acknowledges a message only after its values
  are stored (``manual_ack``), with a persistent session, so a worker killed mid-stream gets its
  unacknowledged messages again when it comes back, and loses nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kenshin.aroute.link import Delivery
from kenshin.errors import InvalidSetting, TransportError
from kenshin.secrecy import MASK, redact

log = logging.getLogger("kenshin.aroute.mqtt")

SHARE_GROUP = "hes"
TOPIC_ROOT = "kenshin"  # a deployment (or a test) may put its own root in front
MQTT_PASSWORD_ENV = "KENSHIN_MQTT_PASSWORD"  # the password of mqtt://USER@HOST:PORT


def up_topic(area: str, collector: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{area}/{collector}/up"


def down_topic(area: str, collector: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{area}/{collector}/down"


def down_subscription(area: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{area}/+/down"


def shared_up_subscription(area: str = "+", root: str = TOPIC_ROOT) -> str:
    return f"$share/{SHARE_GROUP}/{root}/{area}/+/up"


def progress_topic(worker: str, root: str = TOPIC_ROOT) -> str:
    """Where a head-end worker reports how many envelopes it has stored (flow control)."""
    return f"{root}/hes/progress/{worker}"


def observed_topic(worker: str, root: str = TOPIC_ROOT) -> str:
    """Where the worker keeping the duties reports how many envelopes it has observed."""
    return f"{root}/hes/observed/{worker}"


def stored_topic(worker: str, root: str = TOPIC_ROOT) -> str:
    """Where a head-end worker names the envelopes it has just stored (:func:`envelope_digest`
    of each, concatenated), for the worker keeping the duties: it counts a value as received
    only once it is stored. Outside ``<root>/hes/+/+``, which carries counts."""
    return f"{root}/hes-stored/{worker}"


def stored_subscription(root: str = TOPIC_ROOT) -> str:
    return f"{root}/hes-stored/+"


def is_stored_topic(topic: str) -> bool:
    """True for a worker's stored report (:func:`stored_topic`), whatever the root."""
    parts = topic.rsplit("/", 2)
    return len(parts) == 3 and parts[1] == "hes-stored"


DIGEST_BYTES = 8


def envelope_digest(payload: bytes) -> bytes:
    """8 bytes that name one envelope (BLAKE2b): how stored reports refer to envelopes."""
    return hashlib.blake2b(payload, digest_size=DIGEST_BYTES).digest()


def report_digests(report: bytes) -> list[bytes]:
    """The envelope digests a stored report names (a torn tail is ignored)."""
    return [
        report[i : i + DIGEST_BYTES] for i in range(0, len(report) - DIGEST_BYTES + 1, DIGEST_BYTES)
    ]


def progress_subscription(root: str = TOPIC_ROOT) -> str:
    return f"{root}/hes/+/+"


AGAIN_PROPERTY = ("kenshin-again", "1")
AGAIN = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
AGAIN.UserProperty = [AGAIN_PROPERTY]


def _is_again(msg: mqtt.MQTTMessage) -> bool:
    properties = getattr(msg, "properties", None)
    pairs = getattr(properties, "UserProperty", None) or []
    return AGAIN_PROPERTY in [tuple(p) for p in pairs]


def up_subscription(area: str = "+", root: str = TOPIC_ROOT) -> str:
    """Every uplink message (no sharing): what the worker keeping the duties observes."""
    return f"{root}/{area}/+/up"


def split_topic(topic: str) -> tuple[str, str]:
    """(area, collector) of ``<root>/<area>/<collector>/up|down``."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[3] not in ("up", "down"):
        raise ValueError(f"not an A-route topic: {topic!r}")
    return parts[1], parts[2]


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # X3: never in a repr or message

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtt://[USER[:PASSWORD]@]HOST:PORT`` (port 1883 by default). A user without a
        password in the URL takes ``$KENSHIN_MQTT_PASSWORD``, which ``ps`` does not show."""
        parsed = urlparse(url if "://" in url else f"mqtt://{url}")
        try:
            port = parsed.port or 1883
        except ValueError:  # a port that is not a number, or out of range
            port = 0
        if parsed.scheme != "mqtt" or not parsed.hostname or not port:
            raise InvalidSetting(
                f"expected an MQTT URL like mqtt://127.0.0.1:1883, got {redact(url)!r}"
            )
        username = unquote(parsed.username) if parsed.username else None
        password = unquote(parsed.password) if parsed.password is not None else None
        if username is not None and password is None:
            password = os.environ.get(MQTT_PASSWORD_ENV) or None
        return cls(parsed.hostname, port, username, password)

    def __str__(self) -> str:
        """The URL with the password masked (X3), for messages."""
        user = (self.username or "") + (f":{MASK}" if self.password else "")
        return f"mqtt://{user + '@' if user else ''}{self.host}:{self.port}"


class MqttLink:
    """One MQTT 5 client with bounded publishing and optional manual acknowledgements.

    It rides out a broker restart: paho reconnects by itself (every 1 s at first, backing off to
    ``reconnect_max_s``) and resubscribes on every connect; :meth:`publish` keeps a message paho
    could not send yet (paho sends it once connected again) and blocks only when
    ``max_in_flight`` messages await the broker, raising :class:`TransportError` after
    ``publish_timeout_s``. With ``persistent`` the broker keeps the session (subscriptions and
    what was not acknowledged) for ``session_expiry_s`` while the client is away -- across a
    broker restart too, when the broker persists its state.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        on_message: Callable[[Delivery], None] | None = None,
        on_retained: Callable[[Delivery], None] | None = None,
        subscriptions: tuple[str, ...] = (),
        max_in_flight: int = 64,
        receive_maximum: int = 64,
        manual_ack: bool = False,
        persistent: bool = False,
        session_expiry_s: int = 3600,
        connect_timeout_s: float = 10.0,
        publish_timeout_s: float = 60.0,
        reconnect_max_s: int = 5,
    ) -> None:
        self.address = BrokerAddress.parse(url)
        self.client_id = client_id
        self.publish_timeout_s = publish_timeout_s
        self._on_message = on_message
        self._on_retained = on_retained  # a status given at subscription (see publish_status)
        self._inbox: queue.Queue[Delivery] = queue.Queue()  # without on_message: receive()
        self._subscriptions = subscriptions
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._max_in_flight = max_in_flight
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self._status: dict[str, bytes] = {}  # the last status per topic, sent again on connect
        self._generation = 0  # connections so far; a delivery's tag carries its connection's
        self._stale_below = 0  # tags of earlier connections whose session the broker dropped
        self._down_since: float | None = None
        self._closing = False
        # message ids of QoS 1 publishes holding a slot, of QoS 0 ones (no slot), and of those
        # paho reported sent before publish() returned (its network thread may be quicker)
        self._waiting: set[int] = set()
        self._quiet: set[int] = set()
        self._early: set[int] = set()
        self.published = 0
        self.received = 0
        self.reconnects = 0
        self.connected_at = time.monotonic()  # of the last (re)connection
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        if self.address.username is not None:
            self._client.username_pw_set(self.address.username, self.address.password)
        self._client.max_inflight_messages_set(max_in_flight)
        self._client.max_queued_messages_set(0)  # bounded by our slots instead
        self._client.reconnect_delay_set(1, reconnect_max_s)
        self._client.on_connect = self._handle_connect
        self._client.on_publish = self._handle_publish
        self._client.on_message = self._handle_message
        self._client.on_subscribe = self._handle_subscribe
        self._client.on_disconnect = self._handle_disconnect
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = receive_maximum
        if persistent:
            props.SessionExpiryInterval = session_expiry_s
        try:
            # paho reuses clean_start and these properties on every reconnect
            self._client.connect(
                self.address.host,
                self.address.port,
                keepalive=30,
                clean_start=not persistent,
                properties=props,
            )
        except OSError as exc:
            raise TransportError(f"cannot reach the MQTT broker at {self.address}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(connect_timeout_s):
            self._client.loop_stop()
            raise TransportError(
                f"no answer from the MQTT broker at {self.address} within {connect_timeout_s} s"
            )
        if subscriptions and not self._subscribed.wait(connect_timeout_s):
            raise TransportError(f"the broker did not confirm subscriptions {subscriptions}")

    # ---- callbacks (paho's network thread) --------------------------------------------------

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: object,
        props: object,
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.error("MQTT connect refused: %s", reason)
            return
        with self._lock:
            self._generation += 1
            self.connected_at = time.monotonic()
            if self._generation > 1:
                self.reconnects += 1
                if not flags.session_present:
                    # a new session: message ids of the old one name other messages now
                    self._stale_below = self._generation
            statuses = list(self._status.items())
            down_since, self._down_since = self._down_since, None
        if down_since is not None:
            log.warning(
                "MQTT client %s reconnected after %.1f s (session %s)",
                self.client_id,
                time.monotonic() - down_since,
                "kept" if flags.session_present else "new",
            )
        # subscribe on every connect: a persistent session keeps its subscriptions, but a broker
        # that lost its state (no persistence, or a clean session) has none
        if self._subscriptions:
            result, _ = client.subscribe([(topic, 1) for topic in self._subscriptions])
            if result != mqtt.MQTT_ERR_SUCCESS:
                log.error("MQTT subscribe failed: %s", result)
        for topic, payload in statuses:  # what a report lost in the outage said, and more
            self._status_publish(topic, payload)
        self._connected.set()

    def _handle_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: object, props: object
    ) -> None:
        self._subscribed.set()

    def _handle_publish(
        self, client: mqtt.Client, userdata: object, mid: int, reason: object, props: object
    ) -> None:
        with self._lock:
            if mid in self._waiting:
                self._waiting.discard(mid)
                release = True
            elif mid in self._quiet:
                self._quiet.discard(mid)
                release = False
            else:
                self._early.add(mid)
                release = False
        if release:
            self._slots.release()

    def _sent(self, mid: int, *, qos1: bool) -> None:
        """Book a publish paho accepted (called without paho's locks held: its network thread
        calls ``_handle_publish`` holding them)."""
        with self._lock:
            if mid in self._early:
                self._early.discard(mid)
                done = True
            else:
                (self._waiting if qos1 else self._quiet).add(mid)
                done = False
        if done and qos1:
            self._slots.release()

    def _status_publish(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=0, retain=True)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:  # otherwise paho dropped it and will report nothing
            self._sent(info.mid, qos1=False)

    def _handle_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        tag = self._generation << 16 | msg.mid  # MQTT message ids are 16 bits
        delivery = Delivery(
            msg.topic, bytes(msg.payload), tag, msg.qos, bool(msg.dup), again=_is_again(msg)
        )
        if msg.retain and self._on_retained is not None:
            self._on_retained(delivery)
        elif self._on_message is not None:
            self._on_message(delivery)
        else:
            self._inbox.put(delivery)

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        self._connected.clear()
        if self._closing:
            return
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
        log.warning("MQTT client %s disconnected (%s); reconnecting", self.client_id, reason)

    # ---- API ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def publish(
        self, topic: str, payload: bytes, again: bool = False, timeout_s: float | None = None
    ) -> None:
        """Publish at QoS 1; blocks while ``max_in_flight`` messages await the broker's PUBACK
        (also while the broker is away: paho keeps those and sends them when reconnected).
        ``again``: a copy of what may have arrived before, said in an MQTT 5 user property
        (``kenshin-again``) that subscribers see as :attr:`Delivery.again`."""
        timeout_s = self.publish_timeout_s if timeout_s is None else timeout_s
        if not self._slots.acquire(timeout=timeout_s):
            where = f"{self.address.host}:{self.address.port}"
            if self._connected.is_set():
                raise TransportError(
                    f"the MQTT broker at {where} acknowledged nothing for {timeout_s:g} s"
                )
            raise TransportError(
                f"the MQTT broker at {where} has been unreachable for {timeout_s:g} s or more; "
                f"{self._max_in_flight} messages wait to be sent"
            )
        info = self._client.publish(topic, payload, qos=1, properties=AGAIN if again else None)
        # NO_CONN: paho keeps the message and sends it once connected again
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._slots.release()
            raise TransportError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        self._sent(info.mid, qos1=True)
        self.published += 1

    def publish_status(self, topic: str, payload: bytes) -> None:
        """A status, e.g. a head-end's progress count: QoS 0 and retained (the broker gives the
        last one to whoever subscribes later), kept and sent again after a reconnect, so a
        status lost while the broker was away is made good; never blocks."""
        with self._lock:
            self._status[topic] = payload
        self._status_publish(topic, payload)

    def receive(self, wait_s: float, limit: int = 256) -> list[Delivery]:
        """What arrived together (see :class:`kenshin.aroute.link.EnvelopeLink`)."""
        try:
            batch = [self._inbox.get(timeout=wait_s) if wait_s > 0 else self._inbox.get_nowait()]
        except queue.Empty:
            return []
        while len(batch) < limit:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def ack(self, message: Delivery) -> None:
        """Acknowledge a message received with ``manual_ack`` (after its values are stored).

        Across a reconnect that kept the session, the broker sends what was not acknowledged
        again under the same message id, so acknowledging the old delivery is right; when the
        session was lost, the old id may name another message now, so nothing is sent (what
        the broker still holds comes again)."""
        generation, mid = message.tag >> 16, message.tag & 0xFFFF
        with self._lock:
            if generation < self._stale_below:
                return
        self._client.ack(mid, message.qos)

    def drain(self, timeout_s: float | None = None) -> None:
        """Wait until every published message is acknowledged by the broker."""
        timeout_s = self.publish_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        taken = 0
        try:
            while taken < self._max_in_flight:
                if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    raise TransportError(
                        f"the MQTT broker at {self.address.host}:{self.address.port} did not "
                        f"acknowledge every message within {timeout_s:g} s"
                    )
                taken += 1
        finally:
            for _ in range(taken):
                self._slots.release()

    def close(self) -> None:
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()
