"""A broker restart against a private Mosquitto (its own port, persistence in a tmp dir): the
MQTT link rides it out."""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kenshin.aroute.link import Delivery
from kenshin.aroute.mqtt import MqttLink, shared_up_subscription, up_topic
from tests.conftest import services_required

pytestmark = pytest.mark.slow


class Mosquitto:
    """A private broker that can be killed and started again on the same port."""

    def __init__(self, workdir: Path, binary: str) -> None:
        self.workdir = workdir
        self.binary = binary
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.config = workdir / "mosquitto.conf"
        # persistence by snapshot every second: what a kill -9 can lose is the last second
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # as root, mosquitto would drop to a user that cannot write the tmp dir
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "persistence_file kenshin.db\n"
            "autosave_interval 1\n"
            f"log_dest file {workdir}/mosquitto.log\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.workdir / "mosquitto.stderr").open("ab") as err:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stderr=err)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                assert self.process.poll() is None, "mosquitto exited: see mosquitto.log"
                assert time.monotonic() < deadline, "mosquitto did not listen within 10 s"
                time.sleep(0.05)

    def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    binary = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )
    if binary is None:
        if services_required():
            pytest.fail("the mosquitto binary is missing; KENSHIN_REQUIRE_SERVICES=1 demands it")
        pytest.skip("the mosquitto binary is missing")
    broker = Mosquitto(tmp_path, binary)
    broker.start()
    try:
        yield broker
    finally:
        if broker.process is not None:
            broker.stop()


def test_a_publisher_and_a_persistent_subscriber_ride_out_kill_9(mosquitto: Mosquitto) -> None:
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
        mosquitto.stop(signal.SIGKILL)  # mid-stream, no goodbye
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
    mosquitto: Mosquitto, how: signal.Signals
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
    mosquitto.stop(how)
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
