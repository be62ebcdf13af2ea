"""Service mode: the head-end worker and the simulated field as separate processes over MQTT.

``kenshin hes`` runs :func:`run_hes_worker`: it takes collector envelopes from a shared MQTT 5
subscription, stores their values and only then acknowledges them, so a worker killed mid-stream
loses nothing (the broker redelivers to it when it is back). ``kenshin fleet`` runs
:func:`run_fleet`: simulated meters, network and collectors publishing envelopes, answering
downlink commands and polls; a real collector could take its place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from kenshin.aroute.keys import KeyRing, load_master_key
from kenshin.aroute.mqtt import (
    TOPIC_ROOT,
    Backlog,
    MqttLink,
    Received,
    down_subscription,
    down_topic,
    observed_topic,
    progress_subscription,
    progress_topic,
    shared_up_subscription,
    split_topic,
    up_subscription,
    up_topic,
)
from kenshin.aroute.network import Network, NetworkConfig
from kenshin.aroute.replay import ReplayGuard, StagedReplayGuard
from kenshin.aroute.replay_postgres import PostgresReplayGuard
from kenshin.core.clock import AcceleratedClock, FollowClock, WallClock
from kenshin.core.timeslots import from_epoch_us, to_epoch_us
from kenshin.errors import InvalidSetting
from kenshin.fleet.field import FieldStats, build_field
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.hes.policy import CollectionPolicy
from kenshin.hes.service import HeadEnd
from kenshin.mdms.service import MeterDataService
from kenshin.mdms.store import ReadingStore
from kenshin.system import policy_for

log = logging.getLogger("kenshin.services")


def run_hes_worker(
    mqtt_url: str,
    store: ReadingStore,
    *,
    worker_id: str,
    replay: ReplayGuard | None = None,
    master_key: str | None = None,
    policy: CollectionPolicy | None = None,
    duties: bool = True,
    stop: threading.Event | None = None,
    on_ready: Callable[[HeadEnd], None] | None = None,
    batch_wait_s: float = 0.05,
    topic_root: str = TOPIC_ROOT,
    lock: threading.Lock | None = None,
) -> HeadEnd:
    """Run one head-end worker until ``stop`` is set; returns the head-end for its figures."""
    meters = store.read_meters()
    if meters.num_rows == 0:
        raise InvalidSetting(
            "no meters are installed in this store; "
            "run `kenshin install` (or `kenshin simulate`) first"
        )
    stop = stop or threading.Event()
    inbox: queue.Queue[Received] = queue.Queue()
    areas: dict[str, str] = {}
    mdms = MeterDataService(store, background=False)
    clock = FollowClock(_roster_start(store))
    link_box: list[MqttLink] = []

    def downlink(collector: str, envelope: bytes) -> None:
        area = areas.get(collector)
        if area is not None and link_box:
            link_box[0].publish(down_topic(area, collector, topic_root), envelope)

    staged: StagedReplayGuard | None = None
    held = replay if isinstance(replay, PostgresReplayGuard) and replay.hold else None
    if replay is None:  # one worker: windows committed with the values they let in
        staged = StagedReplayGuard(meters.num_rows)
        keys, last, bitmap = store.load_counters()
        full_last, full_bitmap = staged.state()
        full_last[keys], full_bitmap[keys] = last, bitmap
        staged.load(full_last, full_bitmap)
        replay = staged
    hes = HeadEnd(
        mdms,
        clock,
        meters,
        KeyRing(load_master_key(master_key)),
        replay,
        policy=policy,
        downlink=downlink,
        track_duties=duties,
    )
    link = MqttLink(
        mqtt_url,
        worker_id,
        on_message=inbox.put,
        subscriptions=(shared_up_subscription(root=topic_root),),
        manual_ack=True,
        persistent=True,
    )
    link_box.append(link)
    # the worker keeping the duties also watches every envelope, whichever worker stores it
    watched: queue.Queue[Received] = queue.Queue()
    observer = (
        MqttLink(
            mqtt_url,
            f"{worker_id}-observer",
            on_message=watched.put,
            subscriptions=(up_subscription(root=topic_root),),
        )
        if duties
        else None
    )
    if on_ready is not None:
        on_ready(hes)
    last_tick = time.monotonic()
    stored = observed = 0
    guard = lock or threading.Lock()
    try:
        while not stop.is_set():
            batch = _take(inbox, batch_wait_s)
            seen = _take(watched, 0.0, limit=4096) if observer is not None else []
            hes.stats.largest_batch = max(hes.stats.largest_batch, len(batch))
            with guard:
                stored += _process(batch, hes, mdms, staged, held, link, areas)
                if seen:
                    for message in seen:
                        area, collector = split_topic(message.topic)
                        areas[collector] = area
                    hes.observe_envelopes([m.payload for m in seen])
            if seen:
                observed += len(seen)
                link.publish_status(observed_topic(worker_id, topic_root), str(observed).encode())
            if batch:
                link.publish_status(progress_topic(worker_id, topic_root), str(stored).encode())
            if batch or time.monotonic() - last_tick > 1.0:
                with guard:
                    hes.tick()
                last_tick = time.monotonic()
    except BaseException:
        # nothing unacknowledged is stored: the broker gives it again, admitted afresh
        link.close()
        if observer is not None:
            observer.close()
        if held is not None:
            held.rollback()
        raise
    link.close()
    if observer is not None:
        observer.close()
    mdms.close()
    return hes


def _process(
    batch: list[Received],
    hes: HeadEnd,
    mdms: MeterDataService,
    staged: StagedReplayGuard | None,
    held: PostgresReplayGuard | None,
    link: MqttLink,
    areas: dict[str, str],
) -> int:
    """Store one batch and acknowledge it; returns how many envelopes it held."""
    if not batch:
        return 0
    for message in batch:
        area, collector = split_topic(message.topic)
        areas[collector] = area
    # one authentication and replay pass for what arrived together; in a batch holding a
    # redelivered message, replays count as redeliveries
    hes.receive_envelopes(
        [m.payload for m in batch],
        redelivered=any(m.redelivered for m in batch),
        duties=False,  # the observer (below) keeps them, for every worker's messages
    )
    # stored (with the replay windows) before acknowledged: a crash before the commit means
    # redelivery and fresh admission, after it, recognised repeats
    mdms.flush(staged.take_changes() if staged is not None else None)
    if held is not None:
        held.commit()  # admissions final only once their values are stored
    for message in batch:
        link.ack(message)
    return len(batch)


def _take(inbox: queue.Queue[Received], wait_s: float, limit: int = 256) -> list[Received]:
    """What arrived together: the first message within ``wait_s``, then whatever is queued."""
    try:
        batch = [inbox.get(timeout=wait_s)]
    except queue.Empty:
        return []
    while len(batch) < limit:
        try:
            batch.append(inbox.get_nowait())
        except queue.Empty:
            break
    return batch


def _roster_start(store: ReadingStore) -> dt.datetime:
    """Where a head-end's clock starts before the first envelope: the installed fleet's start."""
    meta = store.get_meta("fleet")
    if meta:
        return dt.datetime.fromisoformat(json.loads(meta)["start"])
    return WallClock().now()


def install_fleet(store: ReadingStore, config: FleetConfig) -> pa.Table:
    """Write the roster of a simulated fleet into a store, as a utility installs meters."""
    fleet = Fleet(config)
    meters = fleet.meters_table()
    store.write_meters(meters)
    store.set_meta("fleet", config.describe(aroute="mqtt"))
    return meters


@dataclass
class FleetRun:
    field: FieldStats
    published: int
    downlink_envelopes: int
    seconds: float
    simulated_until: str


def run_fleet(
    mqtt_url: str,
    config: FleetConfig,
    days: float,
    *,
    speed: float | None = None,
    network: NetworkConfig | None = None,
    policy: CollectionPolicy | None = None,
    master_key: str | None = None,
    client_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    topic_root: str = TOPIC_ROOT,
    max_backlog: int = 800,
) -> FleetRun:
    """Simulate ``days`` of the fleet and publish its envelopes; ``speed=None`` is as fast as
    possible, otherwise simulated time runs ``speed`` × the wall clock."""
    policy = policy or policy_for(config)
    fleet = Fleet(config)
    net = Network(fleet.population, network or NetworkConfig(), config.seed)
    field = build_field(
        fleet,
        KeyRing(load_master_key(master_key)),
        net,
        send_15min=policy.send_15min,
        offpeak=(policy.offpeak_start, policy.offpeak_end),
    )
    area = config.area.code
    downs: queue.Queue[Received] = queue.Queue()
    backlog = Backlog(max_backlog)

    def on_message(message: Received) -> None:
        if "/hes/" in message.topic:
            backlog.on_report(message.topic, message.payload)
        else:
            downs.put(message)

    link = MqttLink(
        mqtt_url,
        client_id or f"fleet-{area}-{config.seed}",
        on_message=on_message,
        subscriptions=(down_subscription(area, topic_root), progress_subscription(topic_root)),
    )
    stop = stop or threading.Event()
    clock = AcceleratedClock(config.start, speed) if speed else None
    end_us = to_epoch_us(config.start) + int(days * 86400e6)
    total = (end_us - field.now_us) // (5 * 60_000_000)
    started = time.perf_counter()
    downlinks = 0
    done = 0
    try:
        while field.now_us < end_us and not stop.is_set():
            if clock is not None:
                wait = clock.wall_seconds_until(from_epoch_us(field.now_us + 5 * 60_000_000))
                if wait > 0:
                    stop.wait(wait)
            field.step()
            for envelope in field.due(field.now_us):
                backlog.wait(stop)
                link.publish(up_topic(area, envelope.collector, topic_root), envelope.payload)
                backlog.published += 1
            while True:
                try:
                    message = downs.get_nowait()
                except queue.Empty:
                    break
                field.receive_downlink(split_topic(message.topic)[1], message.payload, field.now_us)
                downlinks += 1
            done += 1
            if progress:
                progress(done, total)
        # answers to the last downlink frames, then everything still on its way
        for envelope in field.due(2**62):
            backlog.wait(stop)
            link.publish(up_topic(area, envelope.collector, topic_root), envelope.payload)
            backlog.published += 1
        link.drain()
    finally:
        link.close()
    return FleetRun(
        field=dataclasses.replace(field.stats),
        published=link.published,
        downlink_envelopes=downlinks,
        seconds=time.perf_counter() - started,
        simulated_until=from_epoch_us(field.now_us).isoformat(),
    )
