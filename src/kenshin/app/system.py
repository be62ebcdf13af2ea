"""Composition root: wires fleet → A-route → head-end → MDMS → store.

The embedded system (DuckDB file, in-process transport) runs in one process with no servers to
install (ARCHITECTURE principle 4a). It has two A-route paths, two small classes over
:class:`EmbeddedSystem` (:func:`build_system` picks one):

- ``wire`` (``kenshin up``): every meter sends authenticated binary frames through the network
  model and its collector; the head-end authenticates them, keeps the duties' deadlines, re-reads
  what was lost and runs commands and polls (SPEC A1–A6, X2–X4). Costs about 10 µs per frame.
- ``direct`` (``kenshin simulate`` by default): the fleet hands columnar slot messages straight to
  the head-end, every value on time, so utility-size fleets simulate in seconds.

The service mode (``kenshin hes`` / ``kenshin fleet``) runs the same parts over MQTT.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kenshin.app.outages import OutageMonitor
from kenshin.app.stores import remember_archive
from kenshin.aroute.frames import Authorization, CommandKind
from kenshin.aroute.keys import KeyRing, load_master_key
from kenshin.aroute.link import MemoryBroker
from kenshin.aroute.mqtt import shared_up_subscription, up_topic
from kenshin.aroute.network import Network, NetworkConfig
from kenshin.aroute.replay import MemoryReplayGuard
from kenshin.aroute.transport import InProcessTransport
from kenshin.control.desk import CampaignDesk
from kenshin.control.gate import ControlGate, ControlLimits
from kenshin.control.signing import ControlSigner
from kenshin.core.batches import ReadingSink
from kenshin.core.clock import Clock, SteppedClock
from kenshin.core.timeslots import US_PER_MINUTE, Resolution, from_epoch_us, to_epoch_us
from kenshin.errors import InvalidSetting
from kenshin.fleet.field import Field, build_field
from kenshin.fleet.simulator import Fleet, FleetConfig
from kenshin.hes.command_audit import MemoryAudit, StoredAudit
from kenshin.hes.duties import jst_day_of_slot
from kenshin.hes.headend import DirectHeadEnd
from kenshin.hes.policy import CollectionPolicy
from kenshin.hes.service import HeadEnd
from kenshin.hes.worker import HesWorker
from kenshin.mdms.archive import ParquetArchive
from kenshin.mdms.duckdb_store import DuckDBStore
from kenshin.mdms.housekeeping import RetentionPolicy
from kenshin.mdms.loss import LossyLink
from kenshin.mdms.scheduler import MdmsSchedule
from kenshin.mdms.service import MeterDataService
from kenshin.mdms.store import CommandLog, ReadingStore
from kenshin.mdms.vee import VeeConfig


@dataclass
class SimulationSummary:
    meters: int
    start: dt.datetime
    end: dt.datetime
    values_by_resolution: dict[int, int]
    registers: int
    forward_kwh: float
    reverse_kwh: float
    seconds: float
    frames_sent: int = 0  # wire mode: by meters
    frames_lost: int = 0  # wire mode: lost in the network (re-read later where possible)
    frames_accepted: int = 0  # wire mode: by the head-end
    frames_rejected: int = 0
    frames_in_flight: int = 0  # wire mode: sent and not yet at the head-end when the run ended
    on_time: dict[str, float] | None = None  # wire mode: share per duty over judged days

    @property
    def values(self) -> int:
        return sum(self.values_by_resolution.values())


AROUTE_MODES = ("direct", "wire")


def policy_for(config: FleetConfig) -> CollectionPolicy:
    """The head-end's duties for a simulated fleet: the same A2/A3 shares, soft switch and
    recording periods."""
    return CollectionPolicy(
        sample_5min_share_lv=config.sample_5min_share_lv,
        sample_5min_share_hv=config.sample_5min_share_hv,
        realtime_5min_share=config.realtime_5min_share,
        send_15min=config.send_15min,
        recording_period_30_15=config.recording_period_30_15,  # M4: re-read what meters keep
        recording_period_5=config.recording_period_5,
    )


def fleet_policy(config: FleetConfig, policy: CollectionPolicy | None = None) -> CollectionPolicy:
    """``policy``, or the one :func:`policy_for` the fleet; a given policy must have the fleet's
    utility-wide soft switch (SPEC A5): the meters send what the fleet says, and the MDMS must
    not expect values nobody sends."""
    if policy is None:
        return policy_for(config)
    if policy.send_15min != config.send_15min:
        raise InvalidSetting(
            "the head-end's soft switch (policy.send_15min) must match the fleet's "
            f"(send_15min={config.send_15min})"
        )
    return policy


def simulated_field(
    fleet: Fleet,
    policy: CollectionPolicy,
    keys: KeyRing,
    network: NetworkConfig | None = None,
    *,
    control_key: Ed25519PublicKey | None = None,
) -> Field:
    """The fleet's radios on the network model, sending what ``policy`` (the head-end's duties,
    agreeing with the fleet: :func:`fleet_policy`) asks: one build for the embedded wire path,
    ``kenshin fleet`` and the tests."""
    config = fleet.config
    net = Network(fleet.population, network or NetworkConfig(), config.seed)
    return build_field(
        fleet,
        keys,
        net,
        send_15min=config.send_15min,
        offpeak=(policy.offpeak_start, policy.offpeak_end),
        control_key=control_key,
    )


class EmbeddedSystem:
    """The whole system in one process: fleet, A-route, head-end, MDMS and store.

    Two small subclasses say how values travel: :class:`DirectSystem` (columnar messages, every
    value on time) and :class:`WireSystem` (frames, network, collectors, the link and the
    head-end worker); :func:`build_system` picks one by name.
    """

    aroute = ""  # "direct" or "wire"
    step = Resolution.MIN30  # simulated time per run_step

    def __init__(
        self,
        config: FleetConfig,
        db: str | Path = ":memory:",
        *,
        store: ReadingStore | None = None,
        clock: Clock | None = None,
        flush_rows: int = 2_000_000,
        background_writer: bool = True,
        loss: float = 0.0,
        loss_burst: float = 1.0,
        vee: VeeConfig | None = None,
        sweep: bool = True,
        archive: ParquetArchive | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        if not 0.0 <= loss < 1.0:
            raise InvalidSetting(f"loss must be in [0, 1), got {loss}")
        self.config = config
        self.store: ReadingStore = store if store is not None else DuckDBStore(db)
        self.fleet = Fleet(config)
        self.clock: Clock = clock or SteppedClock(config.start)
        self.mdms = MeterDataService(
            self.store, flush_rows=flush_rows, background=background_writer
        )
        self.meters = self.fleet.meters_table()
        self.store.write_meters(self.meters)
        self.direct: DirectHeadEnd | None = None
        self.hes: HeadEnd | None = None
        self.worker: HesWorker | None = None
        self.field: Field | None = None
        self.outages: OutageMonitor | None = None  # the wire system's outage engine, if asked
        self.campaigns: CampaignDesk | None = None  # the wire system's campaign desk
        self.link = LossyLink(self.mdms, loss, config.seed, loss_burst) if loss else None
        self.sink: ReadingSink = self.link if self.link is not None else self.mdms
        self.schedule: MdmsSchedule | None = None
        if archive is not None:
            remember_archive(self.store, archive.root)
        if sweep:
            self.schedule = MdmsSchedule(
                self.store,
                self.mdms.flush,
                vee=vee,
                archive=archive,
                retention=retention or RetentionPolicy(),
                resolutions=self._swept_resolutions(),
                send_15min=config.send_15min,
            )
            self.schedule.start(config.start)

    def _swept_resolutions(self) -> tuple[Resolution, ...]:
        """What the day-end sweep covers: 30-min values, 15-min ones when sent (SPEC A5)."""
        resolutions = [Resolution.MIN30]
        if self.config.send_15min:
            resolutions.append(Resolution.MIN15)
        return tuple(resolutions)

    @property
    def now(self) -> dt.datetime:
        return self.fleet.now

    def _set_clock(self, when_us: int) -> None:
        if isinstance(self.clock, SteppedClock):
            when = from_epoch_us(when_us)
            if when > self.clock.now():
                self.clock.set(when)

    def next_step_end(self) -> dt.datetime:
        return from_epoch_us(self.fleet.meters.now_us + self.step.microseconds)

    def run_step(self) -> None:
        """Simulate the next :attr:`step` of the fleet and deliver what it sent."""
        raise NotImplementedError

    def commit(self) -> None:
        """Store everything delivered so far."""
        self.mdms.flush()

    def run(
        self,
        end: dt.datetime,
        progress: Callable[[int, int], None] | None = None,
        *,
        last: bool = False,
    ) -> SimulationSummary:
        """Simulate up to ``end`` as fast as possible; ``progress(done, total)`` after each step.
        ``last``: the simulation ends here (``kenshin simulate``): what is still on its way
        arrives before the final sweep (:meth:`drain`); the system is not run on after that."""
        started = time.perf_counter()
        first = self.fleet.now
        total = (to_epoch_us(end) - self.fleet.meters.now_us) // self.step.microseconds
        done = 0
        while done < total:
            self.run_step()
            done += 1
            if self.schedule is not None:
                self.schedule.tick(self.fleet.meters.now_us)
            if progress:
                progress(done, total)
        if last:
            self.drain()
        self.commit()
        if self.schedule is not None:  # every day that has closed gets its sweep
            self.schedule.tick(self.fleet.meters.now_us, final=True)
        return self.summary(first, time.perf_counter() - started)

    def drain(self) -> None:
        """What is still on its way at the end of a run arrives before the last sweep (the
        wire path: the last slot's frames and their re-reads)."""

    def _delivered(self) -> tuple[dict[int, int], int, dict[str, object]]:
        """(values by resolution, register reads, figures of the A-route) for the summary."""
        raise NotImplementedError

    def summary(self, first: dt.datetime, seconds: float) -> SimulationSummary:
        values, registers, extra = self._delivered()
        return SimulationSummary(
            meters=self.config.n_meters,
            start=first,
            end=self.fleet.now,
            values_by_resolution=values,
            registers=registers,
            forward_kwh=float(self.fleet.energy_kwh[0]),
            reverse_kwh=float(self.fleet.energy_kwh[1]),
            seconds=seconds,
            **extra,  # type: ignore[arg-type]
        )

    def close(self) -> None:
        self.commit()
        self.mdms.close()
        self.store.checkpoint()
        self.store.close()


class DirectSystem(EmbeddedSystem):
    """Columnar slot messages straight to the head-end: every value on time, no network and no
    security modelled; fast enough for utility-size fleets (``kenshin simulate``)."""

    aroute = "direct"
    step = Resolution.MIN30

    def __init__(self, config: FleetConfig, db: str | Path = ":memory:", **common: Any) -> None:
        super().__init__(config, db, **common)
        self.transport = InProcessTransport()
        self.direct = DirectHeadEnd(self.sink, self.clock)
        self.transport.subscribe(self.direct.receive)
        self.transport.publish(self.fleet.start_message())
        # SPEC S3: the specified sub-meters' values come only on the direct path for now
        # (their IoT route is a later issue), so only this mode registers them
        self.store.write_specified(self.fleet.specified_table())
        self.store.set_meta("fleet", config.describe(aroute=self.aroute))

    def _swept_resolutions(self) -> tuple[Resolution, ...]:
        # the 5-min history arrives with its slot here (on the wire, days later, off-peak)
        extra = (Resolution.MIN5,) if bool(self.fleet.sampled.any()) else ()
        return super()._swept_resolutions() + extra

    def run_step(self) -> None:
        """The next 30-min slot of every meter, delivered at the slot's end."""
        message = self.fleet.run_slot()
        self._set_clock(to_epoch_us(message.sent_at))
        self.transport.publish(message)
        specified = self.fleet.specified_message()
        if specified is not None:
            self.transport.publish(specified)

    def _delivered(self) -> tuple[dict[int, int], int, dict[str, object]]:
        assert self.direct is not None
        stats = self.direct.stats
        return dict(sorted(stats.values_by_resolution.items())), stats.registers, {}


class WireSystem(EmbeddedSystem):
    """Every meter's authenticated frames through the network model and its collector, over the
    in-memory twin of the MQTT link, to the head-end worker step the service mode runs
    (``kenshin up``, ``kenshin simulate --aroute wire``)."""

    aroute = "wire"
    step = Resolution.MIN5

    def __init__(
        self,
        config: FleetConfig,
        db: str | Path = ":memory:",
        *,
        network: NetworkConfig | None = None,
        policy: CollectionPolicy | None = None,
        master_key: str | None = None,
        outages: bool = False,
        control: ControlSigner | None = None,
        control_limits: ControlLimits | None = None,
        direct_until: dt.datetime | None = None,
        **common: Any,
    ) -> None:
        """``outages``: run the outage engine after every step (issue 15; ``kenshin up``);
        ``control``: the business system's control key, which signs switching commands and
        whose public half the meters are provisioned with (issue 16; default: a new one);
        ``control_limits``: the switching gate's thresholds, for the API and the campaigns;
        ``direct_until``: the fleet's values take the direct path from the start until then
        (days of history at its speed: the control drill's like days), and the radios,
        network and head-end come up there."""
        checked = fleet_policy(config, policy)  # a contradiction is refused before anything opens
        super().__init__(config, db, **common)
        self.policy = checked
        if direct_until is not None:
            self._direct_history(direct_until)
        keys = KeyRing(load_master_key(master_key))
        self.control = control or ControlSigner.generate()
        self.field = simulated_field(
            self.fleet, self.policy, keys, network, control_key=self.control.public_key
        )
        self.network = self.field.network
        self.hes = HeadEnd(
            self.sink,
            self.clock,
            self.meters,
            keys,
            MemoryReplayGuard(config.n_meters),
            policy=self.policy,
            downlink=self._downlink,
        )
        assert self.hes.commands.x1 is not None  # emergencies it can check, signed by this key
        self.hes.commands.x1.control_key = self.control.public_key
        keep_command_log(self.hes, self.store)
        # the business system's side (issue 16): one switching gate for the API's commands and
        # the campaigns, and the desk that runs the campaigns at every step
        self.gate = ControlGate.for_roster(self.meters, control_limits, self.store)
        self.campaigns = CampaignDesk(
            self.store, self.hes, self.gate, self.control, flush=self.mdms.flush
        )
        # the service mode's worker step over the in-memory twin of the MQTT link: values
        # are acknowledged once stored (committed every simulated hour, or when live)
        self.broker = MemoryBroker()
        self.uplink = self.broker.connect("collectors")
        self.worker = HesWorker(
            self.hes,
            self.broker.connect(
                "hes-1", (shared_up_subscription(),), persistent=True, receive_maximum=1 << 30
            ),
            self.mdms.flush,
            inline_duties=True,
        )
        self._uncommitted_steps = 0
        self.store.set_meta("fleet", config.describe(aroute=self.aroute))
        if outages:
            self.outages = OutageMonitor(
                self.fleet.population.topology,
                self.network.collector_of,
                self.fleet.realtime,
                self.hes,
                self.store,
            )

    def _direct_history(self, until: dt.datetime) -> None:
        """Run the fleet to ``until`` on the direct path (every value on time), swept as days
        close, before anything of the wire path exists: its head-end expects slots from then."""
        end_us = to_epoch_us(until)
        if end_us < self.fleet.meters.now_us or end_us % Resolution.MIN30.microseconds:
            raise InvalidSetting("direct_until is a half hour at or after the fleet's start")
        head = DirectHeadEnd(self.sink, self.clock)
        head.receive(self.fleet.start_message())
        while self.fleet.meters.now_us < end_us:
            message = self.fleet.run_slot()
            self._set_clock(to_epoch_us(message.sent_at))
            head.receive(message)
            if self.schedule is not None:
                self.schedule.tick(self.fleet.meters.now_us)
        self.mdms.flush()

    def authorize(
        self, meter_key: int, kind: CommandKind, args: tuple[int, ...] = ()
    ) -> Authorization:
        """The business system's signature on a switching command for one meter, valid for an
        hour from now (what the API does for an operator; tests and drills call it directly)."""
        device = int(self.fleet.population.device_id[meter_key])
        return self.control.authorize(device, kind, args, to_epoch_us(self.clock.now()))

    def _downlink(self, collector: str, envelope: bytes) -> None:
        assert self.field is not None
        self.field.receive_downlink(collector, envelope, to_epoch_us(self.clock.now()))

    def run_step(self) -> None:
        """The next 5 minutes of meters, network, head-end and re-reads, minute by minute."""
        assert self.hes is not None and self.field is not None and self.worker is not None
        # what happens before the next boundary happens first: answers to commands must not
        # queue behind the next burst of scheduled frames
        boundary = self.field.now_us + Resolution.MIN5.microseconds
        area = self.config.area.code
        for minute in range(1, 6):
            until = self.field.now_us + minute * US_PER_MINUTE
            for envelope in self.field.due(until - 1):
                self._set_clock(envelope.at_us)
                self.uplink.publish(up_topic(area, envelope.collector), envelope.payload)
                self.worker.step(0.0, commit=False)
                self.hes.send_freed()  # answers within seconds: the next commands go now
            if minute < 5:
                self._set_clock(until)
                self.hes.tick()  # commands and polls go out within the minute, not per step
        self.field.step()
        assert self.field.now_us == boundary
        self._set_clock(boundary)
        self.hes.tick()
        if self.outages is not None:
            self.outages.tick(boundary)
        if self.campaigns is not None:
            self.campaigns.tick(boundary)
        self._uncommitted_steps += 1
        if self._uncommitted_steps >= 12:
            self.commit()

    def _last_day(self) -> dt.date:
        """The JST day of the run's last slot (ending at the run's end)."""
        return jst_day_of_slot(self.fleet.meters.now_us)

    def drain(self) -> None:
        """After the last step the meters stop, but what they sent is still in the network
        and the head-end still re-reads what was lost: minute by minute until the LV A1
        deadline after the end (SPEC A1: 60 min), frames arrive and duties run, so a clean run
        ends with no gap and the frame counts add up (sent = accepted + refused + lost + in
        flight)."""
        assert self.hes is not None and self.field is not None and self.worker is not None
        area = self.config.area.code
        end = self.field.now_us
        self.hes.expect_until(end)
        minutes = int(self.policy.a1_deadline_lv.total_seconds() // 60)
        for minute in range(1, minutes + 1):
            until = end + minute * US_PER_MINUTE
            for envelope in self.field.due(until - 1):
                self._set_clock(envelope.at_us)
                self.uplink.publish(up_topic(area, envelope.collector), envelope.payload)
                self.worker.step(0.0, commit=False)
                self.hes.send_freed()  # answers within seconds: the next commands go now
            self._set_clock(until)
            self.hes.tick()

    def commit(self) -> None:
        """Store everything delivered so far and acknowledge it on the link."""
        assert self.worker is not None
        self.worker.commit()
        self._uncommitted_steps = 0
        super().commit()

    def _delivered(self) -> tuple[dict[int, int], int, dict[str, object]]:
        assert self.hes is not None and self.field is not None
        extra: dict[str, object] = {
            "frames_sent": self.field.stats.frames_sent,
            "frames_lost": self.field.stats.frames_lost,
            "frames_in_flight": self.field.frames_in_flight,
            "frames_accepted": self.hes.stats.frames_accepted,
            "frames_rejected": self.hes.stats.frames_rejected_total,
            "on_time": {
                duty.label: on / exp
                # the days of the run: a drain past its end expects slots nobody will send
                for duty, (on, exp) in sorted(self.hes.slo_totals(self._last_day()).items())
                if exp
            },
        }
        values = dict(sorted(self.store.reading_counts().items()))
        return values, self.mdms.stats.registers_stored, extra


def keep_command_log(hes: HeadEnd, store: CommandLog) -> None:
    """Every transition of the head-end's commands also goes to the store's command log, so a
    command's status outlives the book, which forgets finished ones (issue 16; X2)."""
    audit = hes.commands.audit
    if isinstance(audit, MemoryAudit):  # the book prunes it; the store keeps everything
        hes.commands.audit = StoredAudit(store, audit)


def build_system(
    config: FleetConfig, db: str | Path = ":memory:", *, aroute: str = "direct", **kwargs: Any
) -> EmbeddedSystem:
    """The embedded system with the A-route path named ``aroute`` (``AROUTE_MODES``), in the
    DuckDB file ``db`` unless a ``store`` is given."""
    if aroute not in AROUTE_MODES:
        raise InvalidSetting(f"A-route mode must be one of {AROUTE_MODES}, got {aroute!r}")
    if aroute == "wire":
        return WireSystem(config, db, **kwargs)
    if config.faults:  # outages silence radios: the direct path has none (issue 15)
        raise InvalidSetting(
            "faults (outages, breaker trips, collector failures) need the wire A-route"
        )
    wire_only = sorted(
        k for k in ("network", "policy", "master_key", "control") if kwargs.get(k) is not None
    )
    if wire_only:
        raise InvalidSetting(f"{', '.join(wire_only)}: only for the wire A-route")
    for key in ("network", "policy", "master_key", "control"):
        kwargs.pop(key, None)
    return DirectSystem(config, db, **kwargs)
