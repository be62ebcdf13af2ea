"""The outage engine (issue 15 items 2 and 3, first part): what the head-end saw → per-meter
evidence → the inference → outage events with a lifecycle.

Each evaluation (every 5 minutes in a running system) classifies each meter (``Seen``):

- **gasped** when its latest power event is a last gasp and it has not spoken since (the head-end
  does not count event frames as hearing a meter);
- **alive** when it was heard within its interval and a grace (a real-time A3 meter every 5 min,
  the others with each 30-min push);
- **silent** when it was heard once but not since; **unknown** when never heard.

The inference names the devices; the engine keeps one event per device: **suspected** when first
inferred, **confirmed** when the confidence reaches ``confirm_at`` or the device stays out for
``confirm_after`` (silence that lasts is evidence too), **restoring** when some of its meters are
back, **restored** when all are. An event starts at the first evidence (the earliest last gasp,
else when the first meter became overdue) and ends when its last meter came back. A bigger event
absorbs the smaller ones it explains (a feeder after its transformers): they are marked
``merged_into`` and not counted again.

A ping that goes unanswered makes its meter **no answer** until it is heard again; the running
system (``kenshin.app.outages``) pings the meters :meth:`OutageEngine.ping_candidates` names.
When a fifth of the meters judged are silent (a storm, a collapse of the network) the engine is
in **storm mode**: silence alone accuses no device, only last gasps and failed pings do.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.core.events import EventCode
from kenshin.core.schema import OUTAGES_SCHEMA, TIMESTAMP
from kenshin.core.timeslots import US_PER_MINUTE
from kenshin.grid.topology import Topology
from kenshin.outage.inference import Seen, infer

log = logging.getLogger("kenshin.outage")

DOUBT_US = 10 * US_PER_MINUTE  # pushes measured before a neighbour's gasp arrive this late
# pings timed out in a row (a control answering) that prove a meter dark: with 2 % random loss,
# two lost answers in a row still happened to 1 in 600 meters a storm day (the drill)
PINGS_FOR_PROOF = 3
# the share of an event's meters back that says its device is re-energized (the rest: lost
# restores or a second failure, checked by pings)
REENERGIZED_SHARE = 0.5
A3_STEP_US = 5 * US_PER_MINUTE  # the real-time sample's cadence (SPEC A3)
A3_ARRIVAL_US = 3 * US_PER_MINUTE  # a 5-min value's send jitter (2 min) and its hops


class State(StrEnum):
    SUSPECTED = "suspected"
    CONFIRMED = "confirmed"
    RESTORING = "restoring"
    RESTORED = "restored"
    WITHDRAWN = "withdrawn"  # suspected, never confirmed, and the evidence went away


@dataclass
class OutageEvent:
    event_id: int
    level: str
    device: int
    meters: npt.NDArray[np.int64]
    state: State
    started_us: int
    confidence: float
    confirmed_us: int | None = None
    restored_us: int | None = None
    merged_into: int | None = None
    nested_in: int | None = None  # the event after whose restoration it was still dark
    restoring_us: int | None = None
    timeline: list[tuple[int, str]] = field(default_factory=list)

    def move(self, state: State, at_us: int, note: str = "") -> None:
        self.state = state
        self.timeline.append((at_us, state.value + (f": {note}" if note else "")))


class OutageEngine:
    def __init__(
        self,
        topology: Topology,
        collector_of: npt.NDArray[np.int64],
        realtime: npt.NDArray[np.bool_],
        *,
        grace_us: int = 15 * US_PER_MINUTE,
        confirm_at: float = 0.6,
        confirm_after_us: int = 30 * US_PER_MINUTE,
        first_id: int = 1,
        settle_us: int = 10 * US_PER_MINUTE,
        give_up_us: int = 45 * US_PER_MINUTE,
        storm_share: float = 0.2,
    ) -> None:
        """``first_id``: the next event id (after those a store already holds); a device is
        back when half its meters are, or ``settle_us`` after the first came back; its meters
        still dark then are pinged, and ``give_up_us`` after it they are confirmed nested events
        even if no ping could decide; when ``storm_share`` of the meters
        judged are silent the engine is in storm mode: only proof (last gasps, failed pings)
        accuses a device, and it says so in its log and status."""
        self.topology = topology
        self.collector_of = np.asarray(collector_of, np.int64)
        n = len(topology.feeder)
        self.realtime = np.asarray(realtime, dtype=bool)
        interval = np.where(realtime, 5 * US_PER_MINUTE, 30 * US_PER_MINUTE).astype(np.int64)
        self.interval_us = interval
        self.overdue_us = interval + np.where(realtime, 10 * US_PER_MINUTE, grace_us)
        self.confirm_at = confirm_at
        self.confirm_after_us = confirm_after_us
        self.settle_us = settle_us
        self.give_up_us = give_up_us
        self.storm_share = storm_share
        self.storm = False  # so many meters silent that silence accuses nothing
        self.gasp_us = np.full(n, -1, np.int64)
        self.restore_us = np.full(n, -1, np.int64)
        self.no_answer_us = np.full(n, -1, np.int64)  # the last ping that timed out
        self.no_answers = np.zeros(n, np.int32)  # pings timed out in a row since last heard
        self.to_ping = np.empty(0, np.int64)  # what the last pass could not decide alone
        self.last_seen = np.full(n, int(Seen.UNKNOWN), np.int8)
        self._doubtful = np.zeros(n, dtype=bool)
        self.events: list[OutageEvent] = []
        self._open: dict[tuple[str, int], OutageEvent] = {}
        # meters still dark after their device came back: nested events, pinged until decided
        self._stragglers: dict[tuple[str, int], OutageEvent] = {}
        self._ids = itertools.count(first_id)
        self.dead_collectors: set[int] = set()

    def power_events(self, events: Iterable[tuple[int, EventCode, int]]) -> None:
        """Take reported power events: (meter key, code, when by the meter's clock)."""
        for key, code, at_us in events:
            if code is EventCode.POWER_FAIL:
                self.gasp_us[key] = max(self.gasp_us[key], at_us)
            elif code is EventCode.POWER_RESTORE:
                self.restore_us[key] = max(self.restore_us[key], at_us)

    def no_answer(
        self, meter_keys: npt.NDArray[np.int64], at_us: int, heard_us: npt.NDArray[np.int64]
    ) -> None:
        """Pings of these meters went unanswered at ``at_us``. Several in a row, nothing heard
        in between, are evidence (``PINGS_FOR_PROOF``: one lost answer is the radio's
        everyday)."""
        fresh = self.no_answer_us[meter_keys] < heard_us[meter_keys]  # heard since: start over
        self.no_answers[meter_keys] = np.where(fresh, 1, self.no_answers[meter_keys] + 1)
        self.no_answer_us[meter_keys] = at_us

    def ping_candidates(self) -> npt.NDArray[np.int64]:
        """Meters whose answer would decide, the most telling first: those still dark after
        their device came back, those one failed ping from proof, a few meters of each
        suspected event, the meters of a device coming back not back yet, the silent ones no
        device claims, and the neighbours a last gasp made doubtful (not those of an event
        already confirmed: their answer would change nothing)."""
        retry = (self.no_answers >= 1) & (self.no_answers < PINGS_FOR_PROOF)
        picks = [m.meters for m in self._stragglers.values() if m.state is State.SUSPECTED]
        picks.append(np.flatnonzero(retry))
        confirmed = np.zeros(len(self.no_answers), dtype=bool)
        for event in self._open.values():
            if event.state is State.SUSPECTED:
                picks.append(event.meters[:3])
            elif event.state is State.RESTORING:  # who is still dark after the re-energizing
                picks.append(event.meters[self.last_seen[event.meters] != Seen.ALIVE])
            if event.state is not State.SUSPECTED:
                confirmed[event.meters] = True
        picks += [self.to_ping, np.flatnonzero(self._doubtful & ~confirmed)]
        every = np.concatenate([np.asarray(p, np.int64) for p in picks])
        _, first = np.unique(every, return_index=True)  # once each, in order of priority
        return every[np.sort(first)]

    def seen(self, now_us: int, heard_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int8]:
        """Each meter's evidence now (``Seen``)."""
        seen = np.full(len(heard_us), int(Seen.UNKNOWN), np.int8)
        # a restore is heard: the meter has power again (the head-end counts no event frame)
        restored = self.restore_us > self.gasp_us
        heard_us = np.maximum(heard_us, np.where(restored, self.restore_us, -1))
        ever = heard_us >= 0
        seen[ever] = int(Seen.SILENT)
        seen[ever & (now_us - heard_us <= self.overdue_us)] = int(Seen.ALIVE)
        # heard later than the push jitter after its gasp: it spoke again (else the push was
        # measured before the fault and only arrived after it)
        gasped = (self.gasp_us > self.restore_us) & (heard_us < self.gasp_us + DOUBT_US)
        seen[gasped] = int(Seen.GASPED)
        # a neighbour's last gasp makes "heard before it" no proof of power: those meters of
        # the same pole transformer are unknown until they speak again or become overdue
        tx = self.topology.transformer.astype(np.int64)
        first_gasp = np.full(self.topology.n_transformers, np.iinfo(np.int64).max, np.int64)
        on_tx = gasped & (tx >= 0)
        np.minimum.at(first_gasp, tx[on_tx], self.gasp_us[on_tx])
        # a customer fed from the feeder itself (HV: no pole transformer) doubts by its feeder
        feeder = self.topology.feeder.astype(np.int64)
        first_on_feeder = np.full(self.topology.n_feeders, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(first_on_feeder, feeder[gasped], self.gasp_us[gasped])
        since = np.where(tx >= 0, first_gasp[np.maximum(tx, 0)], first_on_feeder[feeder])
        # where the real-time sample (A3, every 5 min) covers a feeder, none of it has spoken
        # since the feeder's first last gasp although each had its next 5-min turn, and gasps
        # came from several of its transformers, the feeder is out: its customers heard only
        # before the first gasp are doubtful too (SPEC R1: within 10 minutes)
        n_feeders = self.topology.n_feeders
        gasp_on_feeder = first_on_feeder < np.iinfo(np.int64).max
        spoke_since = self.realtime & (heard_us > first_on_feeder[feeder])
        a3_spoke = np.bincount(feeder, spoke_since, minlength=n_feeders)
        a3_members = np.bincount(feeder, self.realtime, minlength=n_feeders)
        next_turn = (first_on_feeder // A3_STEP_US + 1) * A3_STEP_US + A3_ARRIVAL_US
        had_turn = gasp_on_feeder & (now_us >= np.where(gasp_on_feeder, next_turn, 0))
        gasped_tx = first_gasp < np.iinfo(np.int64).max
        tx_gasping = np.bincount(self.topology.transformer_feeder, gasped_tx, minlength=n_feeders)
        feeder_doubt = had_turn & (a3_members >= 2) & (a3_spoke == 0) & (tx_gasping >= 3)
        since = np.where(feeder_doubt[feeder], np.minimum(since, first_on_feeder[feeder]), since)
        doubtful = (seen == Seen.ALIVE) & (heard_us < since + DOUBT_US) & (since < now_us)
        doubtful &= self.restore_us < since  # a restore reported after the gasp is no doubt
        seen[doubtful] = int(Seen.UNKNOWN)
        self._doubtful = doubtful
        # pings unanswered twice since the meter was last heard (an answer would be heard)
        unanswered = (self.no_answer_us > heard_us) & (self.no_answers >= PINGS_FOR_PROOF)
        seen[unanswered] = int(Seen.NO_ANSWER)  # fresher than any gasp: asked after it
        return seen

    def evaluate(self, now_us: int, heard_us: npt.NDArray[np.int64]) -> list[OutageEvent]:
        """One pass; returns the events that changed."""
        seen = self.seen(now_us, heard_us)
        self.last_seen = seen
        judged = int((seen != Seen.UNKNOWN).sum())
        silent = int((seen == Seen.SILENT).sum())
        storm = judged > 0 and silent / judged >= self.storm_share
        if storm != self.storm:
            log.warning(
                "outage engine: %s storm mode (%d of %d meters silent)",
                "entering" if storm else "leaving",
                silent,
                judged,
            )
            self.storm = storm
        result = infer(seen, self.topology, self.collector_of, require_proof=storm)
        self.to_ping = result.to_ping
        changed: list[OutageEvent] = []
        self.dead_collectors = {s.device for s in result.suspects if s.level == "collector"}
        current: set[tuple[str, int]] = set()
        for suspect in result.suspects:
            if suspect.level == "collector":
                continue
            key = (suspect.level, suspect.device)
            event = self._open.get(key)
            parent = None if event is not None else self._covering(suspect.meters)
            if parent is not None:  # meters of an open event coming back one by one
                continue
            current.add(key)
            if event is None:
                event = self._new(suspect.level, suspect.device, suspect.meters, now_us, heard_us)
                event.confidence = suspect.confidence
                self._absorb(event, now_us, changed)
                changed.append(event)
            event.meters = suspect.meters
            event.confidence = max(event.confidence, suspect.confidence)
            # silence that lasts confirms too, counted from when it was first inferred (a dead
            # collector shows by then: its meters are all overdue)
            lasting = now_us - event.timeline[0][0] >= self.confirm_after_us
            if event.state is State.SUSPECTED and (event.confidence >= self.confirm_at or lasting):
                event.confirmed_us = now_us
                event.move(State.CONFIRMED, now_us, f"confidence {event.confidence:.2f}")
                if event not in changed:
                    changed.append(event)
        for key, event in list(self._open.items()):
            if key in current:
                continue
            back = seen[event.meters] == Seen.ALIVE
            dark_now = np.isin(
                seen[event.meters], [int(Seen.SILENT), int(Seen.GASPED), int(Seen.NO_ANSWER)]
            )
            if event.confirmed_us is None and not dark_now.any():
                # never confirmed, and its silence is gone or explained (a dead collector):
                # the suspicion is withdrawn, no outage was reported
                event.move(State.WITHDRAWN, now_us)
                del self._open[key]
                changed.append(event)
            elif back.all():
                when = np.maximum(self.restore_us[event.meters], 0)
                event.restored_us = int(when.max()) if when.max() > 0 else now_us
                event.move(State.RESTORED, now_us)
                del self._open[key]
                changed.append(event)
            elif back.any():
                if event.state is not State.RESTORING:
                    event.restoring_us = now_us
                    event.move(State.RESTORING, now_us, f"{int(back.sum())} of {len(back)} back")
                    changed.append(event)
                # re-energized: most of it back, or some of it for a while
                settled = now_us - event.restoring_us >= self.settle_us  # type: ignore[operator]
                if back.mean() >= REENERGIZED_SHARE or settled:
                    self._restore_with_stragglers(event, seen, now_us, changed)
        self._judge_stragglers(seen, now_us, changed)
        return changed

    def _restore_with_stragglers(
        self,
        event: OutageEvent,
        seen: npt.NDArray[np.int8],
        now_us: int,
        changed: list[OutageEvent],
    ) -> None:
        """The device is back: the event is restored now, with the time its meters reported.
        Its meters still dark (a lost restore, or a second failure below it: a service drop, a
        fuse) are pinged: each group becomes a nested event, dated back to the parent's start
        and suspected until pings decide (:meth:`_judge_stragglers`). The parent's customers
        are counted until its restoration, a nested one's until its own: never twice."""
        # not back, and no restore reported since the event began (a meter that reported its
        # restore has power, whether or not it has pushed since)
        came_back = (self.restore_us[event.meters] >= event.started_us) & (
            self.restore_us[event.meters] > self.gasp_us[event.meters]
        )
        still = event.meters[(seen[event.meters] != Seen.ALIVE) & ~came_back]
        back = event.meters[seen[event.meters] == Seen.ALIVE]
        when = np.maximum(self.restore_us[back], 0)
        event.restored_us = int(when.max()) if len(when) and when.max() > 0 else now_us
        del self._open[(event.level, event.device)]
        tx = self.topology.transformer[still]
        groups: dict[tuple[str, int], list[int]] = {}
        for meter, t in zip(still.tolist(), tx.tolist(), strict=True):
            whole = t >= 0 and (self.topology.transformer == t).sum() == (tx == t).sum() > 1
            key = ("transformer", int(t)) if whole else ("service_drop", int(meter))
            groups.setdefault(key, []).append(int(meter))
        for (level, device), meters in groups.items():
            nested = OutageEvent(
                next(self._ids),
                level,
                device,
                np.array(meters, np.int64),
                State.SUSPECTED,
                event.started_us,
                0.5,
                nested_in=event.event_id,
                restoring_us=now_us,  # when the pings after the re-energizing began
            )
            nested.timeline.append(
                (now_us, f"suspected: still dark as event {event.event_id} came back")
            )
            self.events.append(nested)
            self._stragglers[(level, device)] = nested
            changed.append(nested)
        note = f"{len(still)} still dark: {len(groups)} to check" if len(still) else ""
        event.move(State.RESTORED, now_us, note)
        changed.append(event)

    def _judge_stragglers(
        self, seen: npt.NDArray[np.int8], now_us: int, changed: list[OutageEvent]
    ) -> None:
        """A nested suspicion is withdrawn when its meters are heard (their restore was only
        lost), confirmed when pings went unanswered (a ping after the re-energizing decides: a
        last gasp from before says nothing of now), or after ``give_up_us`` whatever the pings
        could say."""
        for key, nested in list(self._stragglers.items()):
            looked = seen[nested.meters]
            if nested.state is State.SUSPECTED:
                if (looked == Seen.ALIVE).all():
                    nested.move(State.WITHDRAWN, now_us, "heard again: its restore was lost")
                    del self._stragglers[key]
                    changed.append(nested)
                    continue
                nested.meters = nested.meters[looked != Seen.ALIVE]
                decided = (seen[nested.meters] == Seen.NO_ANSWER).all()
                waited = now_us - nested.restoring_us >= self.give_up_us  # type: ignore[operator]
                if decided or waited:
                    nested.confirmed_us = now_us
                    nested.confidence = 0.9 if decided else 0.6
                    nested.restoring_us = None
                    why = "pings unanswered" if decided else "no answer to decide"
                    nested.move(State.CONFIRMED, now_us, f"{why} after event {nested.nested_in}")
                    changed.append(nested)
            elif (looked == Seen.ALIVE).all():
                when = np.maximum(self.restore_us[nested.meters], 0)
                nested.restored_us = int(when.max()) if when.max() > 0 else now_us
                nested.move(State.RESTORED, now_us)
                del self._stragglers[key]
                changed.append(nested)

    def _new(
        self,
        level: str,
        device: int,
        meters: npt.NDArray[np.int64],
        now_us: int,
        heard_us: npt.NDArray[np.int64],
    ) -> OutageEvent:
        gasps = self.gasp_us[meters]
        if (gasps >= 0).any():  # dated back to the first evidence
            started = int(gasps[gasps >= 0].min())
        else:
            heard = heard_us[meters]  # the first push it missed: the first evidence
            due = heard[heard >= 0] + self.interval_us[meters][heard >= 0]
            started = int(due.min()) if len(due) else now_us
        event = OutageEvent(next(self._ids), level, device, meters, State.SUSPECTED, started, 0.0)
        event.timeline.append((now_us, State.SUSPECTED.value))
        self.events.append(event)
        self._open[(level, device)] = event
        return event

    def _covering(self, meters: npt.NDArray[np.int64]) -> OutageEvent | None:
        """An open event that already holds all of ``meters`` (bigger, or restoring)."""
        wanted = set(meters.tolist())
        for event in itertools.chain(self._open.values(), self._stragglers.values()):
            if len(event.meters) >= len(meters) and wanted <= set(event.meters.tolist()):
                return event
        return None

    def _absorb(self, parent: OutageEvent, now_us: int, changed: list[OutageEvent]) -> None:
        """Open events whose meters the new event covers fold into it (never counted twice)."""
        covered = set(parent.meters.tolist())
        for key, child in list(self._open.items()):
            if child is parent or not set(child.meters.tolist()) <= covered:
                continue
            child.merged_into = parent.event_id
            child.timeline.append((now_us, f"merged into event {parent.event_id}"))
            parent.started_us = min(parent.started_us, child.started_us)
            if child.state is State.CONFIRMED and parent.state is State.SUSPECTED:
                parent.confirmed_us = now_us
                parent.move(State.CONFIRMED, now_us, f"event {child.event_id} was confirmed")
            del self._open[key]
            changed.append(child)

    @property
    def open_events(self) -> list[OutageEvent]:
        return [*self._open.values(), *self._stragglers.values()]

    def customers_out(self) -> int:
        return int(sum(len(e.meters) for e in self.open_events))


def outage_rows(events: Iterable[OutageEvent]) -> pa.Table:
    """The events as the store keeps them (``OUTAGES_SCHEMA``)."""
    events = list(events)

    def times(values: list[int | None]) -> pa.Array:
        return pa.array(values, pa.int64()).cast(TIMESTAMP)

    return pa.Table.from_arrays(
        [
            pa.array([e.event_id for e in events], pa.int64()),
            pa.array([e.level for e in events], pa.string()),
            pa.array([e.device for e in events], pa.int32()),
            pa.array([e.state.value for e in events], pa.string()),
            times([e.started_us for e in events]),
            times([e.confirmed_us for e in events]),
            times([e.restored_us for e in events]),
            pa.array([e.confidence for e in events], pa.float64()),
            pa.array([len(e.meters) for e in events], pa.int32()),
            pa.array([e.merged_into for e in events], pa.int64()),
            pa.array(
                [
                    json.dumps(
                        {
                            "meters": [int(m) for m in e.meters],
                            "nested_in": e.nested_in,
                            "timeline": [[at, what] for at, what in e.timeline],
                        }
                    )
                    for e in events
                ],
                pa.string(),
            ),
        ],
        schema=OUTAGES_SCHEMA,
    )
