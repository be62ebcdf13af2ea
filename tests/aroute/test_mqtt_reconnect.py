"""A broker restart against a private Mosquitto (its own port, persistence in a tmp dir): the
MQTT link rides it out, and ``kenshin fleet`` neither lets the broker drop what no worker took
nor reports success when the workers did not store everything."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kenshin.app.drill_servers import Broker, mosquitto_binary
from kenshin.aroute.backlog import Backlog
from kenshin.aroute.link import Delivery
from kenshin.aroute.mqtt import MqttLink, TransportError, shared_up_subscription, up_topic
from tests.conftest import services_required

pytestmark = pytest.mark.slow

KEY = "11" * 32  # a test master key (the fleet refuses to guess one)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """The fault drill's private broker (kenshin.app.drill_servers.Broker): its own port,
    persistence in a tmp dir with a snapshot after every change, killable and restartable."""
    binary = mosquitto_binary()
    if binary is None:
        if services_required():
            pytest.fail("the mosquitto binary is missing; KENSHIN_REQUIRE_SERVICES=1 demands it")
        pytest.skip("the mosquitto binary is missing")
    broker = Broker(tmp_path, binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


def test_a_publisher_and_a_persistent_subscriber_ride_out_kill_9(mosquitto: Broker) -> None:
    root = f"kt-{uuid.uuid4().hex[:8]}"
    topic = up_topic("03", "c00001", root)
    got: list[tuple[float, bytes]] = []
    lock = threading.Lock()

    def on(message: Delivery) -> None:
        with lock:
            got.append((time.monotonic(), message.payload))

    sub = MqttLink(
        mosquitto.url, f"{root}-sub", on_message=on, subscriptions=(topic,), persistent=True
    )
    pub = MqttLink(mosquitto.url, f"{root}-pub", max_in_flight=16, publish_timeout_s=30)
    sent = [f"value {i}".encode() for i in range(3000)]
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            for payload in sent:
                pub.publish(topic, payload)
                time.sleep(0.001)
            pub.drain()
        except BaseException as exc:
            errors.append(exc)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        deadline = time.monotonic() + 20
        # the subscriber's session is in a snapshot (every second) before the kill
        time.sleep(1.5)
        while len(got) < 500:
            assert time.monotonic() < deadline, "nothing arrives before the kill"
            time.sleep(0.01)
        mosquitto.kill(signal.SIGKILL)  # mid-stream, no goodbye
        time.sleep(1.0)
        before = len(got)
        restarted = time.monotonic()
        mosquitto.start()
        publisher.join(timeout=45)
        assert not publisher.is_alive(), "the publisher is stuck"
        assert errors == [], f"the publisher raised: {errors}"
        deadline = time.monotonic() + 20
        while len({p for _, p in got}) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        publisher.join(timeout=5)
        sub.close()
        pub.close()
    distinct = {p for _, p in got}
    assert len(distinct) == len(sent) and distinct == set(sent)  # at least once, each of them
    assert before < len(sent)  # the kill really was mid-stream
    assert pub.reconnects >= 1 and sub.reconnects >= 1
    recovered = min(t for t, _ in got[before:]) - restarted
    print(f"first message after the restart {recovered:.2f} s after it; {len(got)} deliveries")
    assert recovered < 30  # the bound; paho retries every 1-5 s here


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill-9"])
def test_an_offline_persistent_session_keeps_its_messages_over_a_restart(
    mosquitto: Broker, how: signal.Signals
) -> None:
    """A worker away while the broker restarts gets what was queued for it, when the broker
    persists: on a clean stop always, after kill -9 what its last snapshot held."""
    root = f"kt-{uuid.uuid4().hex[:8]}"
    subscription = shared_up_subscription(root=root)
    worker = MqttLink(mosquitto.url, f"{root}-w", subscriptions=(subscription,), persistent=True)
    worker.close()  # away, its session kept by the broker
    pub = MqttLink(mosquitto.url, f"{root}-pub")
    sent = [f"envelope {i}".encode() for i in range(300)]
    for i, payload in enumerate(sent):
        pub.publish(up_topic("03", f"c{i % 5:05d}", root), payload)
    pub.drain()
    pub.close()
    if how == signal.SIGKILL:
        time.sleep(2.5)  # past the next snapshot (autosave_interval 1)
    mosquitto.kill(how)
    mosquitto.start()
    worker = MqttLink(mosquitto.url, f"{root}-w", subscriptions=(subscription,), persistent=True)
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 15
        while len(set(got)) < len(sent) and time.monotonic() < deadline:
            got += [m.payload for m in worker.receive(0.2)]
    finally:
        worker.close()
    assert set(got) == set(sent)


def test_the_backlog_waits_for_workers_that_never_reported() -> None:
    backlog = Backlog(limit=10)
    stop = threading.Event()
    backlog.published = 9
    backlog.wait(stop)  # under the limit: no wait
    backlog.published = 10
    t = time.monotonic()
    with pytest.raises(TransportError, match="10 envelopes published and not stored"):
        backlog.wait(stop, stall_s=0.3)  # nobody reports: it waits, then gives up
    assert time.monotonic() - t >= 0.3


def test_the_backlog_counts_only_this_runs_envelopes() -> None:
    backlog = Backlog(limit=10)
    backlog.on_progress("w1", 5000, retained=True)  # earlier runs: a baseline
    backlog.on_progress("w2", 700)  # heard before we published: a baseline too
    backlog.published = 40
    backlog.on_progress("w1", 5030)
    backlog.on_progress("w2", 705)
    assert backlog.stored == 35 and backlog.pending == 5
    backlog.on_progress("w1", 4000, retained=True)  # a stale retained count: ignored
    assert backlog.stored == 35
    backlog.on_progress("w2", 3)  # w2 restarted and counts from 0
    assert backlog.stored == 38 and backlog.unaccounted == 2
    backlog.on_report("kenshin/hes/progress/w3", b"garbage")  # ignored, never raised
    backlog.on_progress("w3", 10_000)  # a newcomer's first count: never more than published
    assert backlog.stored == 40 and backlog.unaccounted == 0
    stop = threading.Event()
    assert backlog.settle(stop, timeout_s=0.1) == 0


def _fleet_config(meters: int) -> object:
    from kenshin.fleet.simulator import FleetConfig

    return FleetConfig(
        n_meters=meters, start=dt.datetime.fromisoformat("2026-04-01T00:00:00+09:00"), seed=3
    )


def test_a_fleet_without_workers_stops_at_what_the_broker_keeps(mosquitto: Broker) -> None:
    """The workers' persistent session exists but nobody takes from it: the fleet publishes
    ``max_backlog`` envelopes, waits, fails, and the broker still holds every one of them."""
    from kenshin.app.services import run_fleet

    root = f"kt-{uuid.uuid4().hex[:8]}"
    subscription = shared_up_subscription(root=root)
    MqttLink(mosquitto.url, f"{root}-w", subscriptions=(subscription,), persistent=True).close()
    lines: list[str] = []
    t = time.monotonic()
    with pytest.raises(TransportError, match="50 envelopes published and not stored"):
        run_fleet(
            mosquitto.url,
            _fleet_config(200),  # type: ignore[arg-type]
            0.5,
            master_key=KEY,
            topic_root=root,
            client_id=f"{root}-fleet",
            max_backlog=50,
            worker_timeout_s=1.5,
            on_wait=lines.append,
        )
    assert time.monotonic() - t < 30
    assert lines and "waiting for the head-end workers" in lines[0]  # progress was visible
    worker = MqttLink(mosquitto.url, f"{root}-w", subscriptions=(subscription,), persistent=True)
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < 50 and time.monotonic() < deadline:
            got += [m.payload for m in worker.receive(0.2)]
        got += [m.payload for m in worker.receive(0.5)]  # nothing beyond the limit
    finally:
        worker.close()
    assert len(set(got)) == 50


def test_kenshin_fleet_without_workers_exits_non_zero(mosquitto: Broker, tmp_path: Path) -> None:
    root = f"kt-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "kenshin", "fleet", "--mqtt", mosquitto.url]
    command += ["--meters", "20", "--days", "0.05", "--start", "2026-04-01"]
    command += ["--topic-root", root, "--worker-timeout", "1"]
    command += ["--state", str(tmp_path / "fleet.npz")]
    env = {**os.environ, "KENSHIN_AROUTE_MASTER_KEY": KEY, "COLUMNS": "200"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=50)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    error = [line for line in output.splitlines() if "kenshin: error:" in line]
    assert len(error) == 1 and "envelopes unaccounted for" in error[0], output
    published = int(error[0].split(" of ")[1].split()[0].replace(",", ""))
    assert published > 0 and error[0].split("error: ")[1].startswith(f"{published:,} of")


def test_a_restarted_worker_is_told_apart_by_its_incarnation() -> None:
    """A worker killed early (its last count 50) whose successor's first report is already 256:
    counts alone would take the new process for the old one carrying on and lose 50 (the fault
    drill's fleets reported stored envelopes as missing); the incarnation says it restarted."""
    backlog = Backlog(limit=10_000)
    backlog.published = 1_000
    backlog.on_report("kenshin/hes/progress/w1", b"50 1000")
    backlog.on_report("kenshin/hes/progress/w1", b"256 2000")  # restarted: counts from 0
    assert backlog.stored == 306
    backlog.on_report("kenshin/hes/progress/w1", b"60 1000", retained=True)  # the old one, late
    backlog.on_report("kenshin/hes/progress/w1", b"200 2000")  # reordered: not below the last
    assert backlog.stored == 306
    backlog.on_report("kenshin/hes/progress/w1", b"300 2000")
    assert backlog.stored == 350
    backlog.on_report("kenshin/hes/progress/w1", b"1 2 3")  # malformed: ignored, never raised
    assert backlog.stored == 350


def test_named_envelopes_are_accounted_exactly() -> None:
    """Workers name what they stored: each of our envelopes is accounted once, whichever
    process names it and however often (a redelivery is named again); others' are ignored;
    one never named stays unaccounted (a killed worker that never reported its count once
    left a whole batch unaccounted for although it was stored)."""
    from kenshin.aroute.mqtt import envelope_digest

    backlog = Backlog(limit=10)
    ours = [f"envelope {i}".encode() for i in range(5)]
    for payload in ours:
        backlog.sent(payload)
    backlog.on_progress("w1", 10_000)  # counts no longer decide once names arrive
    backlog.on_stored(b"".join(envelope_digest(p) for p in ours[:3]))
    assert (backlog.stored, backlog.unaccounted, backlog.pending) == (3, 2, 2)
    backlog.on_stored(envelope_digest(ours[1]) + envelope_digest(b"someone else's"))
    assert backlog.stored == 3  # named twice, counted once; another publisher's ignored
    backlog.on_stored(envelope_digest(ours[3]) + b"\x00\x01")  # a torn tail is ignored
    assert (backlog.stored, backlog.unaccounted) == (4, 1)


def test_what_a_restarted_broker_may_have_lost_is_handed_out_once_per_reconnect() -> None:
    """A broker killed between acknowledging a message and its next snapshot lost it: the
    publisher keeps a copy of each envelope until a worker names it stored, and after a
    reconnect hands out the ones published before it, once."""
    from kenshin.aroute.mqtt import envelope_digest

    backlog = Backlog(limit=10)
    for i in range(3):
        backlog.sent(f"before {i}".encode(), f"t/{i}", epoch=0, frames=10 + i)
    backlog.on_stored(envelope_digest(b"before 0"))  # stored: no copy needed any more
    backlog.sent(b"after", "t/after", epoch=1)  # published after the reconnect
    assert backlog.resend(0) == []  # no reconnect yet
    assert sorted(backlog.resend(1)) == [("t/1", b"before 1"), ("t/2", b"before 2")]
    assert backlog.resend(1) == []  # once per reconnect
    assert backlog.resent_frames == 11 + 12
    backlog.on_stored(envelope_digest(b"before 1"))
    assert backlog.resend(2) == [("t/2", b"before 2"), ("t/after", b"after")]
    # a copy named stored twice (the resent one refused as a replay is named again)
    backlog.on_stored(envelope_digest(b"before 2") * 2)
    assert (backlog.unaccounted, backlog.resend(3)) == (1, [("t/after", b"after")])


def test_workers_tell_the_publisher_what_they_refused() -> None:
    """A progress report's third field counts the frames a worker refused since it started,
    the fourth the values of old frames it held already: the publisher adds up what was
    refused during its run (a baseline given retained before it
    published counts for nothing; a restarted worker counts from 0)."""
    backlog = Backlog(limit=10)
    backlog.on_report("k/hes/progress/w1", b"5 100 40", retained=True)  # before this run
    backlog.sent(b"one")
    backlog.on_report("k/hes/progress/w1", b"6 100 52")
    assert backlog.refused == 12
    backlog.on_report("k/hes/progress/w1", b"1 200 3")  # w1 restarted: counts from 0
    backlog.on_report("k/hes/progress/w2", b"2 300")  # a worker that does not say
    assert backlog.refused == 15
    backlog.on_report("k/hes/progress/w2", b"2 300 -1")  # malformed: ignored
    backlog.on_report("k/hes/progress/w2", b"2 300 1 9 9")
    assert (backlog.refused, backlog.held) == (15, 0)
    # the fourth field: values of old frames the store held already (a replay past the windows)
    backlog.on_report("k/hes/progress/w2", b"3 300 1 9")
    assert (backlog.refused, backlog.held) == (16, 9)


def test_envelopes_passed_by_newer_stored_ones_are_handed_out_again() -> None:
    """A broker back before the workers drops what is published for them in between (seen in
    the fault drill: 706 envelopes after the publisher's reconnect, before the workers'): an
    envelope still unnamed while one published after it was named is handed out again, every
    ``after_s`` until named; never while the workers have named nothing newer."""
    from kenshin.aroute.mqtt import envelope_digest

    backlog = Backlog(limit=10)
    for name in (b"a", b"b", b"c"):
        backlog.sent(name, f"t/{name.decode()}", epoch=1, frames=5)
    assert backlog.resend_passed(0.0) == []  # nothing newer named: the workers may be slow
    backlog.on_stored(envelope_digest(b"c"))
    assert backlog.resend_passed(0.0) == [("t/a", b"a"), ("t/b", b"b")]
    assert backlog.resend_passed(60.0) == []  # just handed out: not again before 60 s
    backlog.on_stored(envelope_digest(b"a"))
    assert backlog.resend_passed(0.0) == [("t/b", b"b")]
    assert backlog.resent_frames == 15
    backlog.on_stored(envelope_digest(b"b"))
    assert (backlog.unaccounted, backlog.resend_passed(0.0)) == (0, [])


def test_a_copy_sent_again_is_marked_on_both_links(mosquitto: Broker) -> None:
    """``publish(..., again=True)`` reaches a subscriber as ``Delivery.again`` (an MQTT 5 user
    property through Mosquitto; a flag in the memory twin); ordinary messages are not marked."""
    from kenshin.aroute.link import MemoryBroker

    root = f"ka-{uuid.uuid4().hex[:8]}"
    topic = up_topic("03", "c00001", root)
    got: list[Delivery] = []
    arrived = threading.Event()

    def on(message: Delivery) -> None:
        got.append(message)
        if len(got) == 2:
            arrived.set()

    sub = MqttLink(mosquitto.url, f"{root}-sub", on_message=on, subscriptions=(topic,))
    pub = MqttLink(mosquitto.url, f"{root}-pub")
    try:
        pub.publish(topic, b"first")
        pub.publish(topic, b"copy", again=True)
        assert arrived.wait(10)
    finally:
        pub.close()
        sub.close()
    assert [(m.payload, m.again) for m in got] == [(b"first", False), (b"copy", True)]

    twin = MemoryBroker()
    reader = twin.connect("r", (topic,))
    writer = twin.connect("w")
    writer.publish(topic, b"first")
    writer.publish(topic, b"copy", again=True)
    assert [(m.payload, m.again) for m in reader.receive(0.0)] == [
        (b"first", False),
        (b"copy", True),
    ]
