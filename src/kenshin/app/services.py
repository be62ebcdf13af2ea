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
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kenshin.app.pacing import Pacer
from kenshin.app.system import fleet_policy, keep_command_log, simulated_field
from kenshin.aroute.backlog import Backlog
from kenshin.aroute.keys import KeyRing, load_master_key
from kenshin.aroute.link import Delivery
from kenshin.aroute.mqtt import (
    TOPIC_ROOT,
    MqttLink,
    down_subscription,
    down_topic,
    is_stored_topic,
    progress_subscription,
    shared_up_subscription,
    split_topic,
    stored_subscription,
    up_subscription,
    up_topic,
)
from kenshin.aroute.network import NetworkConfig
from kenshin.aroute.replay import ReplayGuard, StagedReplayGuard
from kenshin.control.desk import CampaignDesk, CampaignStore
from kenshin.control.gate import ControlGate
from kenshin.control.signing import ControlSigner
from kenshin.core.channels import Channel
from kenshin.core.clock import AcceleratedClock, FollowClock, WallClock
from kenshin.core.switch import SwitchState
from kenshin.core.timeslots import Resolution, from_epoch_us, to_epoch_us
from kenshin.errors import InvalidSetting
from kenshin.fleet.field import Field, FieldStats, UplinkEnvelope
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.fleet.state import FleetState
from kenshin.hes.policy import CollectionPolicy
from kenshin.hes.service import HeadEnd
from kenshin.hes.worker import HesWorker, WorkerReports
from kenshin.mdms.service import MeterDataService
from kenshin.mdms.store import Meta, ReadingStore

log = logging.getLogger("kenshin.app.services")

# seconds after a reconnect to the broker before what it may have lost is published again
RESEND_AFTER_S = 10.0


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
    """Run one head-end worker (:class:`kenshin.hes.worker.HesWorker`) over MQTT until ``stop``
    is set; returns the head-end for its figures."""
    meters = store.read_meters()
    if meters.num_rows == 0:
        raise InvalidSetting(
            "no meters are installed in this store; "
            "run `kenshin install` (or `kenshin simulate`) first"
        )
    stop = stop or threading.Event()
    mdms = MeterDataService(store, background=False)
    link_box: list[MqttLink] = []
    worker_box: list[HesWorker] = []

    def downlink(collector: str, envelope: bytes) -> None:
        area = worker_box[0].area_of(collector) if worker_box else None
        if area and link_box:
            link_box[0].publish(down_topic(area, collector, topic_root), envelope)

    hes = HeadEnd(
        mdms,
        FollowClock(_roster_start(store)),
        meters,
        KeyRing(load_master_key(master_key)),
        replay if replay is not None else committed_replay_guard(store, meters.num_rows),
        policy=policy or policy_from_store(store),
        downlink=downlink,
        track_duties=duties,
    )
    keep_command_log(hes, store)
    link = MqttLink(
        mqtt_url,
        worker_id,
        subscriptions=(shared_up_subscription(root=topic_root),),
        manual_ack=True,
        persistent=True,
    )
    link_box.append(link)
    # the worker keeping the duties also watches every envelope, whichever worker stores it
    observer = (
        MqttLink(
            mqtt_url,
            f"{worker_id}-observer",
            # every envelope, and the workers' stored reports (a value counts once a worker
            # stored it); persistent: what arrives while this worker is down waits for it (the
            # fleet paces itself by what the observer saw, and stalled when a restart lost that)
            subscriptions=(up_subscription(root=topic_root), stored_subscription(topic_root)),
            persistent=True,
        )
        if duties
        else None
    )
    worker = HesWorker(
        hes,
        link,
        mdms.flush,
        observer=observer,
        reports=WorkerReports(worker_id, topic_root),
        lock=lock or threading.Lock(),
        values_held=lambda: mdms.stats.late_dropped,
    )
    worker_box.append(worker)
    if on_ready is not None:
        on_ready(hes)
    try:
        while not stop.is_set():
            worker.tick(busy=worker.step(batch_wait_s) > 0)
    except BaseException:
        # nothing unacknowledged is stored: the broker gives it again, admitted afresh
        worker.abandon()
        link.close()
        if observer is not None:
            observer.close()
        raise
    link.close()
    if observer is not None:
        observer.close()
    mdms.close()
    return hes


# counters a meter may use after its state was written and before the next write (answers to
# the head-end's requests within one step): each state on file is this far ahead, so a run that
# follows a crash never reuses a counter (a run skips at most this many; 32 bits last ~10⁶ runs)
COUNTER_LEASE = 1024


def save_fleet_state(field: Field, path: Path) -> None:
    meters, radio = field.fleet.meters, field.radio
    FleetState(
        field.fleet.config.describe(),
        field.now_us,
        radio.up_counter + COUNTER_LEASE,
        {
            "switch_state": meters.switch_state,
            "ampere_limit_a": meters.ampere_limit_a,
            "profile_limit_a": meters.profile_limit_a,
            "profile_start_us": meters.profile_start_us,
            "profile_end_us": meters.profile_end_us,
            "next_limit_a": meters.next_limit_a,
            "next_start_us": meters.next_start_us,
            "next_end_us": meters.next_end_us,
            "soft_switch_15": radio.soft_switch_15,
            "realtime": radio.realtime,
        },
    ).save(path)


def resume_fleet(field: Field, path: Path | None) -> str | None:
    """Bring the meters to where the state at ``path`` says the last run of this fleet stopped
    (simulated without sending: the same registers and recorders as one long run), with its
    counters; returns that instant (ISO), or None when there is no state to resume."""
    state = FleetState.load(path) if path is not None else None
    if state is None:
        return None
    config = field.fleet.config
    if state.fleet != config.describe() or len(state.up_counter) != config.n_meters:
        theirs = state.settings
        raise InvalidSetting(
            f"{path} holds the state of another fleet ({theirs.get('n_meters')} meters, seed "
            f"{theirs.get('seed')}, area {theirs.get('area')}, start {theirs.get('start')}): "
            "give the same settings to go on from where it stopped, or another --state to "
            "start over (the head-end refuses frames it has taken before)"
        )
    while field.now_us < state.until_us:
        field.fleet.step()
    field.radio.up_counter[:] = state.up_counter
    # the settings commands gave, from where the last run stopped on; the catch-up above
    # cannot know when each command came and simulates without them (a meter opened mid-run
    # shows the energy of the rest of that run in its register: a known limit, docs)
    kept = state.settings_of_meters or {}
    meters, radio = field.fleet.meters, field.radio
    if "switch_state" in kept:
        meters.switch_state[:] = kept["switch_state"]
    elif "switch_closed" in kept:  # a state written before the limiter (issue 16)
        meters.switch_state[:] = np.where(
            kept["switch_closed"], int(SwitchState.CONNECTED), int(SwitchState.DISCONNECTED)
        )
    limits = ("ampere_limit_a", "profile_limit_a", "profile_start_us", "profile_end_us")
    for name in (*limits, "next_limit_a", "next_start_us", "next_end_us"):
        if name in kept:
            getattr(meters, name)[:] = kept[name]
    if "soft_switch_15" in kept:
        radio.soft_switch_15[:] = kept["soft_switch_15"]
    if "realtime" in kept:
        radio.realtime[:] = kept["realtime"]
    return from_epoch_us(state.until_us).isoformat()


def fleet_client_id(topic_root: str, area: str, seed: int) -> str:
    """The fleet's MQTT client id: two fleets on one broker under different topic roots are two
    clients (with one id, the broker would disconnect the first when the second connects)."""
    return f"fleet-{topic_root}-{area}-{seed}"


def committed_replay_guard(store: ReadingStore, n_meters: int) -> StagedReplayGuard:
    """A worker's replay windows, loaded from what the store committed with the values."""
    staged = StagedReplayGuard(n_meters)
    keys, last, bitmap = store.load_counters()
    full_last, full_bitmap = staged.state()
    full_last[keys], full_bitmap[keys] = last, bitmap
    staged.load(full_last, full_bitmap)
    return staged


def fleet_settings(store: Meta) -> dict[str, Any]:
    """The settings of the fleet a store was made for (``FleetConfig.describe``), or {}."""
    meta = store.get_meta("fleet")
    return dict(json.loads(meta)) if meta else {}


def fleet_of_store(store: ReadingStore) -> Fleet:
    """The simulated fleet a store was made for (its ``fleet`` settings), brought to the newest
    30-min slot the store holds: the registers it shows are the ones the A-route stored there
    (the simulation is deterministic by seed; commands given since are not replayed)."""
    from kenshin.core.ids import Area

    settings = fleet_settings(store)
    if not settings:
        raise InvalidSetting(f"{store.target} says nothing of the fleet it was made for")
    config = FleetConfig(
        n_meters=int(settings["n_meters"]),
        start=dt.datetime.fromisoformat(str(settings["start"])),
        seed=int(settings["seed"]),
        area=Area.parse(str(settings["area"])),
        gen2_share=float(settings.get("gen2_share", 0.7)),
        sample_5min_share_lv=float(settings.get("sample_5min_share_lv", 0.1)),
        sample_5min_share_hv=float(settings.get("sample_5min_share_hv", 0.1)),
        realtime_5min_share=float(settings.get("realtime_5min_share", 0.03)),
        send_15min=bool(settings.get("send_15min", False)),
        **_optional_settings(settings),
    )
    fleet = Fleet(config)
    newest = store.latest_interval_end(0, Channel.ACTIVE_FORWARD, Resolution.MIN30)
    if newest is None:
        raise InvalidSetting(f"{store.target} holds no values yet: nothing to attach to")
    while fleet.meters.now_us < newest:
        fleet.step()
    return fleet


def _optional_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings newer stores keep (older ones use the defaults)."""
    out: dict[str, Any] = {}
    for name in ("specified_share", "specified_pv_share"):
        if name in settings:
            out[name] = float(settings[name])
    for name in ("recording_period_30_15", "recording_period_5"):
        if f"{name}_days" in settings:
            out[name] = dt.timedelta(days=float(settings[f"{name}_days"]))
    return out


def _roster_start(store: Meta) -> dt.datetime:
    """Where a head-end's clock starts before the first envelope: the installed fleet's start."""
    start = fleet_settings(store).get("start")
    return dt.datetime.fromisoformat(start) if start else WallClock().now()


def policy_from_store(store: Meta) -> CollectionPolicy:
    """The collection duties for the fleet a store was installed for: its A2/A3 samples, soft
    switch (SPEC A5) and recording periods (M4); the defaults where the store says nothing."""
    settings = fleet_settings(store)
    policy = CollectionPolicy()
    changes: dict[str, Any] = {
        name: settings[name]
        for name in (
            "sample_5min_share_lv",
            "sample_5min_share_hv",
            "realtime_5min_share",
            "send_15min",
        )
        if name in settings
    }
    for name in ("recording_period_30_15", "recording_period_5"):
        if f"{name}_days" in settings:
            changes[name] = dt.timedelta(days=float(settings[f"{name}_days"]))
    return dataclasses.replace(policy, **changes)


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
    stored: int = 0  # envelopes the head-end workers reported stored
    unaccounted: int = 0  # published, and no worker reported them stored in time
    resumed_from: str | None = None  # where a state file said the last run stopped
    refused: int = 0  # frames the head-end workers refused during the run (replays, forgeries)
    held: int = 0  # values of late frames the store already held (old frames sent again)
    resent_frames: int = 0  # frames published again after a broker restart (see Backlog.resend)

    @property
    def accounted(self) -> bool:
        return self.unaccounted == 0


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
    worker_timeout_s: float = 120.0,
    on_wait: Callable[[str], None] | None = None,
    state_path: Path | None = None,
    control_key: Ed25519PublicKey | None = None,
) -> FleetRun:
    """Simulate ``days`` of the fleet and publish its envelopes; ``speed=None`` is as fast as
    possible, otherwise simulated time runs ``speed`` × the wall clock.

    Flow control (:class:`~kenshin.aroute.backlog.Backlog`): at most ``max_backlog`` envelopes
    are published and not reported stored by a head-end worker (also before any worker has
    reported), because the broker keeps only so many for an absent worker (Mosquitto: 1000 per
    session); when no report moves for ``worker_timeout_s``, :class:`TransportError`. At the
    end it waits (the same timeout, without progress) until the workers report every envelope
    stored; ``FleetRun.unaccounted`` says how many they did not. ``on_wait`` gets a line about
    once a second while the fleet waits for the workers.

    ``state_path``: the meters' state between runs (:mod:`kenshin.fleet.state`): when the file
    holds this fleet's state, the run resumes where the last one stopped (frame counters go on
    rising, so the head-end takes the frames), and it is written before each step's frames
    leave. ``control_key``: the business system's public key the meters check switching
    commands with (none: they refuse them).
    """
    policy = fleet_policy(config, policy)
    field = simulated_field(
        Fleet(config),
        policy,
        KeyRing(load_master_key(master_key)),
        network,
        control_key=control_key,
    )
    resumed = resume_fleet(field, state_path)
    area = config.area.code
    downs: queue.Queue[Delivery] = queue.Queue()
    backlog = Backlog(max_backlog)

    def on_message(message: Delivery) -> None:
        if is_stored_topic(message.topic):
            backlog.on_stored(message.payload)
        elif "/hes/" in message.topic:
            backlog.on_report(message.topic, message.payload)
        else:
            downs.put(message)

    def on_retained(message: Delivery) -> None:
        # a worker's last count, given at subscription (or again after a reconnect)
        if "/hes/" in message.topic:
            backlog.on_report(message.topic, message.payload, retained=True)

    def waiting(pending: int, waited_s: float) -> None:
        if on_wait is not None:
            on_wait(
                f"waiting for the head-end workers: {pending:,} envelopes not reported stored "
                f"({waited_s:.0f} s)"
            )

    link = MqttLink(
        mqtt_url,
        client_id or fleet_client_id(topic_root, area, config.seed),
        on_message=on_message,
        on_retained=on_retained,
        subscriptions=(
            down_subscription(area, topic_root),
            progress_subscription(topic_root),
            # the workers name each envelope they stored: exact accounting across restarts
            stored_subscription(topic_root),
        ),
        # rides out a broker restart of up to this long without an error
        publish_timeout_s=worker_timeout_s,
    )

    def publish(envelope: UplinkEnvelope) -> None:
        topic = up_topic(area, envelope.collector, topic_root)
        backlog.sent(envelope.payload, topic, link.reconnects, envelope.frames)
        link.publish(topic, envelope.payload)

    checked = [0.0]

    def resend_lost() -> None:
        # a broker killed between acknowledging a message and its next snapshot lost it: what
        # was published before a reconnect and is still not named stored RESEND_AFTER_S later
        # (the workers are back and have taken what the broker kept) goes out again; and a
        # broker back before the workers dropped what came for them in between: what is
        # unnamed RESEND_AFTER_S after it was published while newer envelopes were named
        now = time.monotonic()
        if now - checked[0] < 1.0:
            return
        checked[0] = now
        epoch = link.reconnects
        again = []
        if epoch and now - link.connected_at >= RESEND_AFTER_S:
            again = backlog.resend(epoch)
        passed = backlog.resend_passed(RESEND_AFTER_S)
        if again or passed:
            log.warning(
                "publishing %d envelopes again: %d not reported stored since the broker came "
                "back, %d passed by newer ones stored (the broker may have lost them)",
                len(again) + len(passed),
                len(again),
                len(passed),
            )
        for topic, payload in again + passed:
            link.publish(topic, payload, again=True)  # the workers compare it with the store

    stop = stop or threading.Event()
    pacer = Pacer(AcceleratedClock(from_epoch_us(field.now_us), speed) if speed else None)
    end_us = field.now_us + int(days * 86400e6)
    total = (end_us - field.now_us) // (5 * 60_000_000)
    started = time.perf_counter()
    downlinks = 0
    done = 0
    try:
        while field.now_us < end_us:
            if not pacer.wait_for(from_epoch_us(field.now_us + 5 * 60_000_000), stop):
                break
            field.step()
            if state_path is not None:  # before the step's frames leave (write-ahead)
                save_fleet_state(field, state_path)
            resend_lost()  # also while the backlog has room (its waits do it when full)
            for envelope in field.due(field.now_us):
                backlog.wait(stop, worker_timeout_s, waiting, resend_lost)
                publish(envelope)
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
            backlog.wait(stop, worker_timeout_s, waiting, resend_lost)
            publish(envelope)
        link.drain()
        # the broker has everything; success only once the workers say they stored it
        backlog.settle(stop, worker_timeout_s, waiting, resend_lost)
    finally:
        link.close()
    return FleetRun(
        field=dataclasses.replace(field.stats),
        published=link.published,
        downlink_envelopes=downlinks,
        seconds=time.perf_counter() - started,
        simulated_until=from_epoch_us(field.now_us).isoformat(),
        stored=backlog.stored,
        unaccounted=backlog.unaccounted,
        resumed_from=resumed,
        refused=backlog.refused,
        held=backlog.held,
        resent_frames=backlog.resent_frames,
    )


CAMPAIGN_TICK_S = 10.0  # how often a head-end worker's campaign desk looks at its campaigns


def start_campaign_desk(
    store: CampaignStore,
    head_end: HeadEnd,
    control: ControlSigner,
    lock: threading.Lock,
    stop: threading.Event,
) -> CampaignDesk:
    """The campaign desk of a head-end worker with an API (``kenshin hes --api-port``): its
    campaigns move on every ``CAMPAIGN_TICK_S`` of the head-end's clock, under the lock the
    worker loop and the API share (issue 16)."""
    gate = ControlGate.for_roster(store.read_meters(), book=store)
    desk = CampaignDesk(store, head_end, gate, control)

    def tick() -> None:
        while not stop.wait(CAMPAIGN_TICK_S):
            with lock:
                try:
                    desk.tick(to_epoch_us(head_end.clock.now()))
                except Exception:  # a campaign's failure must not stop the worker
                    logging.getLogger("kenshin.control").exception("campaign tick failed")

    threading.Thread(target=tick, name="kenshin-campaigns", daemon=True).start()
    return desk
