"""Service mode against a real Mosquitto: shared subscriptions, and a head-end worker killed
mid-stream that loses nothing and stores nothing twice."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import duckdb
import pytest

from kenshin.app.stores import DATA_DIR
from kenshin.aroute.frames import FrameType
from kenshin.aroute.link import Delivery
from kenshin.aroute.mqtt import MqttLink, shared_up_subscription, up_topic
from tests import live_api
from tests.conftest import require_service

pytestmark = pytest.mark.slow


@pytest.fixture
def broker() -> str:
    host, port = require_service("mosquitto")
    return f"mqtt://{host}:{port}"


def test_shared_subscription_splits_the_load_and_loses_nothing(broker) -> None:
    root = f"kt-{uuid.uuid4().hex[:8]}"
    got: dict[str, list[bytes]] = {"a": [], "b": []}
    lock = threading.Lock()

    def sink(name: str):
        def on(message: Delivery) -> None:
            with lock:
                got[name].append(message.payload)

        return on

    subs = [
        MqttLink(
            broker,
            f"{root}-{n}",
            on_message=sink(n),
            subscriptions=(shared_up_subscription(root=root),),
        )
        for n in ("a", "b")
    ]
    pub = MqttLink(broker, f"{root}-pub", max_in_flight=8)
    sent = [f"envelope {i}".encode() for i in range(400)]
    for i, payload in enumerate(sent):
        pub.publish(up_topic("03", f"c{i % 7:05d}", root), payload)
    pub.drain()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(map(len, got.values())) < len(sent):
        time.sleep(0.05)
    for link in [*subs, pub]:
        link.close()
    received = got["a"] + got["b"]
    assert sorted(received) == sorted(sent)  # each message once, none lost
    assert got["a"] and got["b"]  # both workers took a share


def _metric(port: int, name: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return -1.0
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rows_of_pushes(backend: str, db: Path, dsn: str) -> tuple[int, int]:
    query = (
        "SELECT count(*), count(DISTINCT (meter_key, interval_end)) FROM {}readings "
        "WHERE resolution = 30 AND channel = 1 AND source = 1"
    )
    if backend == "duckdb":
        with duckdb.connect(str(db), read_only=True) as con:
            rows, distinct = con.execute(query.format("")).fetchall()[0]
    else:
        import psycopg

        with psycopg.connect(dsn) as conn:
            rows, distinct = conn.execute(query.format("kenshin.")).fetchone()  # type: ignore[misc]
    return int(rows), int(distinct)


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_a_worker_killed_mid_stream_loses_nothing(broker, tmp_path: Path, backend: str) -> None:
    """DuckDB: the only worker is killed and restarted. PostgreSQL: one of two workers is killed
    while the other goes on, then restarted. Every push the collectors forwarded is stored
    exactly once."""
    import datetime as dt

    from kenshin.app.services import run_fleet
    from kenshin.fleet.simulator import FleetConfig

    root = f"kt-{uuid.uuid4().hex[:8]}"
    db = tmp_path / "hes.duckdb"
    dsn = ""
    if backend == "duckdb":
        store_args, n_workers = ["--db", str(db)], 1
    else:
        import psycopg

        host, port = require_service("postgresql")
        name = f"kenshin_{root.replace('-', '_')}"
        with psycopg.connect(
            f"postgresql://postgres@{host}:{port}/postgres", autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        dsn = f"postgresql://postgres@{host}:{port}/{name}"
        store_args, n_workers = ["--postgres", dsn], 2
    admin_dir = tmp_path if backend == "duckdb" else DATA_DIR  # where the API keeps its admin
    kenshin = [sys.executable, "-m", "kenshin"]
    common = ["--meters", "300", "--seed", "4", "--start", "2026-04-01"]
    subprocess.run([*kenshin, "install", *common, *store_args], check=True, capture_output=True)
    ports = [_free_port() for _ in range(n_workers)]
    api_port = _free_port()
    commands = [
        [
            *kenshin,
            "hes",
            "--dev-key",  # a simulation: run_fleet below uses the public development key
            "--mqtt",
            broker,
            *store_args,
            "--worker-id",
            f"{root}-w{i}",
            "--topic-root",
            root,
            "--metrics-port",
            str(p),
        ]
        # the first worker keeps the duties (watching every envelope) and serves the API
        + (["--api-port", str(api_port)] if i == 0 else ["--no-duties"])
        for i, p in enumerate(ports)
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "hes.log").open("wb")  # a pipe nobody reads would stall the workers
    workers = [subprocess.Popen(c, env=env, stderr=log) for c in commands]

    def accepted() -> float:
        values = [_metric(p, "kenshin_hes_frames_accepted_total") for p in ports]
        return -1.0 if min(values) < 0 else sum(values)

    try:
        deadline = time.monotonic() + 90  # processes importing on a busy 2-core machine
        while accepted() < 0:
            assert time.monotonic() < deadline, "workers did not come up"
            time.sleep(0.2)
        result: dict[str, object] = {}
        config = FleetConfig(
            n_meters=300, start=dt.datetime.fromisoformat("2026-04-01T00:00:00+09:00"), seed=4
        )
        fleet = threading.Thread(
            target=lambda: result.setdefault(
                "run",
                run_fleet(
                    broker, config, 0.5, speed=4000.0, topic_root=root, client_id=f"{root}-fleet"
                ),
            )
        )
        fleet.start()
        while accepted() < 1500:
            assert fleet.is_alive(), "the fleet finished before the worker was killed"
            time.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)  # mid-stream, no goodbye
        workers[0].wait()
        workers[0] = subprocess.Popen(commands[0], env=env, stderr=log)
        fleet.join(timeout=180)
        assert not fleet.is_alive()
        # the restarted worker catches up: wait until the counts stop moving
        last, still = -2.0, 0
        deadline = time.monotonic() + 120
        while still < 6:
            assert time.monotonic() < deadline, "the restarted worker never settled"
            assert all(w.poll() is None for w in workers), "a worker died: see hes.log"
            now = accepted()
            still = still + 1 if now == last and now >= 0 else 0
            last = now
            time.sleep(0.5)
        # the duty worker judged deadlines over every worker's frames
        base = f"http://127.0.0.1:{api_port}"
        slo = live_api.get_json(base, "/api/v1/hes/slo", admin_dir)
        a1 = [d for d in slo["days"] if d["duty"] == "A1" and d["expected"] > 0]
        assert a1 and sum(d["on_time"] for d in a1) > 0
        # its /metrics carries the head-end's figures and its MDMS writer's
        text = live_api.get(base, "/metrics", admin_dir).decode()
        assert "kenshin_hes_frames_accepted_total" in text
        stored = re.search(r"^kenshin_mdms_values_stored_total (\S+)$", text, re.M)
        assert stored is not None and float(stored[1]) > 0
        # the worker with the API also runs the campaign desk over its store (issue 16)
        assert live_api.get_json(base, "/api/v1/campaigns", admin_dir)["total"] == 0
        assert 'kenshin_campaigns{state="running"} 0' in text
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
        log.close()
        try:
            rows, distinct = _rows_of_pushes(backend, db, dsn)
        finally:
            if dsn:  # the throwaway database goes, pass or fail
                import psycopg

                admin = dsn.rsplit("/", 1)[0] + "/postgres"
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {dsn.rsplit('/', 1)[1]} WITH (FORCE)")
    forwarded = result["run"].field.forwarded_by_type  # type: ignore[attr-defined]
    assert rows == distinct == forwarded[int(FrameType.PUSH_SCHEDULED)]
    assert (tmp_path / "hes.log").read_bytes().count(b"stopped:") == n_workers


def test_backlog_paces_the_publisher_by_what_workers_stored() -> None:
    from kenshin.aroute.backlog import Backlog
    from kenshin.errors import TransportError

    backlog = Backlog(limit=10)
    stop = threading.Event()
    backlog.published = 50  # (before any report it would wait: tests/aroute/test_mqtt_reconnect.py)
    backlog.on_progress("w1", 30)
    backlog.on_progress("w2", 15)
    assert backlog.pending == 5
    backlog.wait(stop)  # under the limit
    backlog.published = 70
    threading.Timer(0.05, backlog.on_progress, ("w2", 35)).start()
    t = time.monotonic()
    backlog.wait(stop)  # 25 unstored: waits until w2 has stored 20 more
    assert time.monotonic() - t >= 0.04 and backlog.pending == 5
    backlog.on_progress("w1", 3)  # w1 restarted and counts from 0
    assert backlog.stored == 30 + 35 + 3
    backlog.published = 200
    with pytest.raises(TransportError, match="head-end"):
        backlog.wait(stop, stall_s=0.05)


def test_the_duty_worker_judges_every_workers_frames(broker, tmp_path: Path) -> None:
    """Two workers share the stream; the one keeping the duties sees all of it, so nearly every
    30-min value is on time (seeing only its own share would give about half)."""
    import datetime as dt

    import psycopg

    from kenshin.app.services import run_fleet
    from kenshin.fleet.simulator import FleetConfig

    host, pg_port = require_service("postgresql")
    root = f"kt-{uuid.uuid4().hex[:8]}"
    name = f"kenshin_{root.replace('-', '_')}"
    admin = f"postgresql://postgres@{host}:{pg_port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = f"postgresql://postgres@{host}:{pg_port}/{name}"
    kenshin = [sys.executable, "-m", "kenshin"]
    subprocess.run(
        [
            *kenshin,
            "install",
            "--meters",
            "200",
            "--seed",
            "6",
            "--start",
            "2026-04-01",
            "--postgres",
            dsn,
        ],
        check=True,
        capture_output=True,
    )
    ports, api_port = [_free_port(), _free_port()], _free_port()
    log = (tmp_path / "hes.log").open("wb")
    workers = [
        subprocess.Popen(
            [
                *kenshin,
                "hes",
                "--dev-key",  # a simulation: run_fleet below uses the public development key
                "--mqtt",
                broker,
                "--postgres",
                dsn,
                "--worker-id",
                f"{root}-w{i}",
                "--topic-root",
                root,
                "--metrics-port",
                str(port),
            ]
            + (["--api-port", str(api_port)] if i == 0 else ["--no-duties"]),
            stderr=log,
        )
        for i, port in enumerate(ports)
    ]
    try:
        deadline = time.monotonic() + 90  # two processes importing on a busy 2-core machine
        while min(_metric(p, "kenshin_hes_frames_accepted_total") for p in ports) < 0:
            assert time.monotonic() < deadline, "workers did not come up"
            time.sleep(0.2)
        config = FleetConfig(
            n_meters=200, start=dt.datetime.fromisoformat("2026-04-01T00:00:00+09:00"), seed=6
        )
        run = run_fleet(
            broker, config, 0.25, speed=1500.0, topic_root=root, client_id=f"{root}-fleet"
        )
        forwarded = run.field.frames_forwarded
        deadline = time.monotonic() + 30
        while sum(_metric(p, "kenshin_hes_frames_accepted_total") for p in ports) < forwarded:
            assert time.monotonic() < deadline, "the workers did not store everything"
            time.sleep(0.2)
        shares = [_metric(p, "kenshin_hes_frames_accepted_total") for p in ports]
        assert min(shares) > 0.2 * forwarded  # both workers stored a share
        time.sleep(1.5)  # the observer's last batch
        slo = live_api.get_json(f"http://127.0.0.1:{api_port}", "/api/v1/hes/slo", DATA_DIR)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
        log.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    a1 = [d for d in slo["days"] if d["duty"] == "A1" and d["expected"] > 0]
    on_time = sum(d["on_time"] for d in a1)
    expected = sum(d["expected"] for d in a1)
    assert expected >= 200 * 8 and on_time >= 0.95 * expected


def _metric_total(port: int, name: str) -> float:
    """The sum of a metric over its labels (-1 when the worker does not answer)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return -1.0
    lines = [
        line for line in text.decode().splitlines() if line.startswith((name + " ", name + "{"))
    ]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_the_fleet_runs_again_and_again_against_one_install(broker, tmp_path: Path) -> None:
    """Issue 13: `kenshin fleet` three times in a row against one install. Each run goes on
    where the last one stopped (the meters' state file: their frame counters keep rising, as
    real meters' do), the head-end refuses no frame, and the store holds the three periods one
    after another (before, the second run's frames were all refused as replays)."""
    import datetime as dt

    from kenshin.app.services import run_fleet
    from kenshin.core.timeslots import JST
    from kenshin.fleet.simulator import FleetConfig

    root = f"kt-{uuid.uuid4().hex[:8]}"
    db = tmp_path / "k.duckdb"
    kenshin = [sys.executable, "-m", "kenshin"]
    install = ["install", "--meters", "50", "--seed", "4", "--start", "2026-04-01", "--db", str(db)]
    subprocess.run([*kenshin, *install], check=True, capture_output=True)
    port = _free_port()
    log = (tmp_path / "hes.log").open("wb")
    worker = subprocess.Popen(
        [*kenshin, "hes", "--dev-key", "--mqtt", broker, "--db", str(db), "--worker-id",
         f"{root}-w", "--topic-root", root, "--metrics-port", str(port)],
        stderr=log,
    )  # fmt: skip
    start = dt.datetime(2026, 4, 1, tzinfo=JST)
    config = FleetConfig(n_meters=50, start=start, seed=4)
    state = tmp_path / "fleet.npz"
    try:
        deadline = time.monotonic() + 90
        while _metric(port, "kenshin_hes_frames_accepted_total") < 0:
            assert time.monotonic() < deadline, "the worker did not come up"
            time.sleep(0.2)
        runs = [
            run_fleet(
                broker, config, 0.125, topic_root=root, client_id=f"{root}-f", state_path=state
            )
            for _ in range(3)
        ]
        forwarded = sum(r.field.frames_forwarded for r in runs)
        deadline = time.monotonic() + 30
        while _metric(port, "kenshin_hes_frames_accepted_total") < forwarded:
            assert time.monotonic() < deadline, "the worker did not take every frame"
            time.sleep(0.2)
        refused = _metric_total(port, "kenshin_hes_frames_rejected_total")
        # without its state the fleet starts over: the head-end refuses what it took before,
        # and the fleet hears so from the workers' reports
        over = run_fleet(broker, config, 0.125, topic_root=root, client_id=f"{root}-f")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        log.close()
    assert [r.resumed_from for r in runs] == [
        None,
        (start + dt.timedelta(hours=3)).isoformat(),
        (start + dt.timedelta(hours=6)).isoformat(),
    ]
    assert runs[2].simulated_until == (start + dt.timedelta(hours=9)).isoformat()
    assert all(r.accounted for r in runs)
    assert refused == 0, f"the head-end refused {refused:.0f} frames"
    assert [(r.refused, r.held) for r in runs] == [(0, 0)] * 3
    # refused by the replay windows, or (older than the windows) values the store held already
    assert over.refused + over.held > over.field.frames_forwarded
    con = duckdb.connect(str(db), read_only=True)
    try:
        slots = con.execute(
            "SELECT count(DISTINCT interval_end), max(interval_end) FROM readings "
            "WHERE channel = 1 AND resolution = 30 AND source = 1"
        ).fetchone()
    finally:
        con.close()
    assert slots is not None
    # three runs of 3 h: the slots ending 00:30 … 09:00, each stored
    assert slots[0] == 18 and slots[1] == start + dt.timedelta(hours=9)
