"""Who may switch how much (issue 16 item 2; SPEC X1, X2): every switching request passes one
gate before anything is signed or queued.

- **At risk** is the load a request could interrupt: a disconnect the meter's whole contract
  (amperes × 100 V, or its kW contract), a limit what lies above it (contract − limit), a
  reconnect nothing. The contract is the most the meter can draw, so the bound is conservative:
  it never under-counts (the last-known load would allow more; a later step).
- **Per actor**, in a sliding window (an hour by default): up to ``meters_per_actor`` meters and
  ``kw_per_actor`` at risk pass at once; beyond that a request is **quarantined** until another
  person with the approver role releases it (two-person rule). The requester can never release
  their own.
- **X1** (no meter-caused disruption of 7 MW for an hour or 70 MW for ten minutes): across all
  actors, at most ``x1_hour_kw`` at risk in any hour without a release, and never more than
  ``x1_ten_minutes_kw`` in ten minutes, released or not, unless an **emergency declaration**
  (R4: two approvers, for a period) is in force. Over those a request is refused outright.

Every decision is kept with its reason (``ControlRequest``), and the API audits every call.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kenshin.aroute.frames import CommandKind
from kenshin.core.household_response import contract_kw_by_key
from kenshin.errors import Forbidden, InvalidInput, InvalidSetting, NotFound
from kenshin.hes.x1 import at_risk_kw
from kenshin.mdms.store import ControlBook

US_PER_S = 1_000_000
REQUEST_KIND = "request"  # its kind in the store's control records


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # within the limits: signed and queued at once
    QUARANTINED = "quarantined"  # held for a second person
    RELEASED = "released"  # a second person let it go: signed and queued
    REJECTED = "rejected"  # a second person stopped it
    REFUSED = "refused"  # over what no release may allow (X1)


@dataclass(frozen=True, slots=True)
class ControlLimits:
    meters_per_actor: int = 100
    kw_per_actor: float = 1_000.0
    window_s: int = 3_600
    x1_hour_kw: float = 7_000.0  # SPEC X1: 7 MW for an hour
    x1_ten_minutes_kw: float = 70_000.0  # SPEC X1: 70 MW for ten minutes

    def __post_init__(self) -> None:
        if self.meters_per_actor < 1 or self.kw_per_actor <= 0 or self.window_s < 60:
            raise InvalidSetting("control limits must be positive (window at least 60 s)")
        if not 0 < self.x1_hour_kw <= self.x1_ten_minutes_kw:
            raise InvalidSetting("the X1 hour budget must be positive and under the 10-min one")


@dataclass
class ControlRequest:
    request_id: int
    actor: str
    reason: str
    kind: CommandKind
    meter_keys: npt.NDArray[np.int64]
    args: tuple[int, ...]
    at_risk_kw: float
    requested_us: int
    verdict: Verdict
    why: str = ""
    decided_by: str | None = None
    decided_us: int | None = None
    timeline: list[tuple[int, str]] = field(default_factory=list)

    @property
    def passes(self) -> bool:
        """Whether its commands are to be signed and queued now."""
        return self.verdict in (Verdict.ACCEPTED, Verdict.RELEASED)


@dataclass(frozen=True, slots=True)
class Emergency:
    declared_by: tuple[str, str]
    reason: str
    start_us: int
    end_us: int


class ControlGate:
    def __init__(
        self,
        contract_kw: npt.NDArray[np.float64],
        limits: ControlLimits | None = None,
        book: ControlBook | None = None,
    ) -> None:
        """``contract_kw``: each meter key's contract (the most it can draw) [kW]; ``book``:
        where every request is kept as it is decided (its ids go on from the last one there;
        one an earlier run held for a second person is closed: its meters are not kept)."""
        self.contract_kw = np.asarray(contract_kw, np.float64)
        self.limits = limits or ControlLimits()
        self.requests: dict[int, ControlRequest] = {}
        self.book = book
        last = 0
        for request_id, document in [] if book is None else book.read_control_records(REQUEST_KIND):
            last = max(last, request_id)
            body = json.loads(document)
            if body["verdict"] == Verdict.QUARANTINED.value and book is not None:
                body["verdict"], body["why"] = Verdict.REJECTED.value, "the system restarted"
                book.save_control_record(REQUEST_KIND, request_id, json.dumps(body))
        self._ids = itertools.count(last + 1)
        self._passed: deque[tuple[int, str, int, float]] = deque()  # (at, actor, meters, kW)
        self.emergencies: list[Emergency] = []
        self._lock = threading.Lock()

    @classmethod
    def for_roster(
        cls, roster: pa.Table, limits: ControlLimits | None = None, book: ControlBook | None = None
    ) -> ControlGate:
        """From the meters the store holds (``METERS_SCHEMA``): each one's contract in kW (an
        ampere contract × 100 V, else its kW contract)."""
        return cls(contract_kw_by_key(roster), limits, book)

    # ---- at risk -------------------------------------------------------------------------

    def at_risk_kw(
        self, kind: CommandKind, meter_keys: npt.NDArray[np.int64], args: tuple[int, ...]
    ) -> float:
        return float(at_risk_kw(kind, self.contract_kw[meter_keys], args).sum())

    # ---- the gate ------------------------------------------------------------------------

    def submit(
        self,
        actor: str,
        reason: str,
        kind: CommandKind,
        meter_keys: npt.ArrayLike,
        args: tuple[int, ...],
        now_us: int,
    ) -> ControlRequest:
        """Judge a switching request: accepted, quarantined for a second person, or refused."""
        if not reason.strip():
            raise InvalidInput("a switching request needs a reason (it is kept with it)")
        keys = np.unique(np.asarray(meter_keys, np.int64).ravel())
        if not len(keys):
            raise InvalidInput("a switching request needs at least one meter")
        if keys.min() < 0 or keys.max() >= len(self.contract_kw):
            raise NotFound(
                f"no meter with key {int(keys[(keys < 0) | (keys >= len(self.contract_kw))][0])}"
            )
        with self._lock:
            risk = self.at_risk_kw(kind, keys, args)
            request = ControlRequest(
                next(self._ids),
                actor,
                reason.strip(),
                kind,
                keys,
                args,
                risk,
                now_us,
                Verdict.ACCEPTED,
            )
            self.requests[request.request_id] = request
            x1 = self._x1_breach(risk, now_us, released=False)
            over = self._over_actor(actor, len(keys), risk, now_us)
            ceiling = None if x1 is None else self._x1_breach(risk, now_us, released=True)
            if ceiling is not None:
                self._decide(request, Verdict.REFUSED, now_us, ceiling)
            elif x1 is not None or over is not None:
                why = x1 or over or ""
                self._decide(request, Verdict.QUARANTINED, now_us, why + ": needs a release")
            else:
                self._decide(request, Verdict.ACCEPTED, now_us, "within the limits")
                self._passed.append((now_us, actor, len(keys), risk))
            return request

    def release(self, request_id: int, approver: str, now_us: int) -> ControlRequest:
        """A second person lets a quarantined request go (never its requester); X1's
        ten-minute ceiling still holds unless an emergency is declared."""
        with self._lock:
            request = self._held(request_id)
            if approver == request.actor:
                raise Forbidden("a request cannot be released by the person who asked for it")
            ceiling = self._x1_breach(request.at_risk_kw, now_us, released=True)
            if ceiling is not None:
                self._decide(request, Verdict.REFUSED, now_us, ceiling, approver)
                return request
            self._decide(request, Verdict.RELEASED, now_us, f"released by {approver}", approver)
            self._passed.append(
                (now_us, request.actor, len(request.meter_keys), request.at_risk_kw)
            )
            return request

    def reject(self, request_id: int, approver: str, now_us: int, why: str = "") -> ControlRequest:
        with self._lock:
            request = self._held(request_id)
            note = f"rejected by {approver}" + (f": {why}" if why else "")
            self._decide(request, Verdict.REJECTED, now_us, note, approver)
            return request

    def declare_emergency(
        self, approvers: tuple[str, str], reason: str, start_us: int, end_us: int
    ) -> Emergency:
        """R4: an emergency declared by two different approvers lifts X1's ceilings for its
        period (area campaigns to avoid rotating blackouts)."""
        if len(set(approvers)) != 2:
            raise Forbidden("an emergency needs two different approvers")
        if end_us <= start_us:
            raise InvalidInput("an emergency ends after it starts")
        if not reason.strip():
            raise InvalidInput("an emergency needs a reason")
        emergency = Emergency(approvers, reason.strip(), start_us, end_us)
        with self._lock:
            self.emergencies.append(emergency)
        return emergency

    # ---- inside ----------------------------------------------------------------------------

    def _held(self, request_id: int) -> ControlRequest:
        request = self.requests.get(request_id)
        if request is None:
            raise NotFound(f"no control request {request_id}")
        if request.verdict is not Verdict.QUARANTINED:
            raise InvalidInput(f"control request {request_id} is {request.verdict}, not held")
        return request

    def _decide(
        self,
        request: ControlRequest,
        verdict: Verdict,
        now_us: int,
        why: str,
        by: str | None = None,
    ) -> None:
        request.verdict, request.why = verdict, why
        if by is not None:
            request.decided_by, request.decided_us = by, now_us
        request.timeline.append((now_us, f"{verdict}: {why}"))
        if self.book is not None:
            self.book.save_control_record(
                REQUEST_KIND, request.request_id, request_document(request)
            )

    def _in_emergency(self, now_us: int) -> bool:
        return any(e.start_us <= now_us < e.end_us for e in self.emergencies)

    def _sum_since(self, since_us: int, actor: str | None = None) -> tuple[int, float]:
        meters, kw = 0, 0.0
        for at, who, n, risk in self._passed:
            if at > since_us and (actor is None or who == actor):
                meters += n
                kw += risk
        return meters, kw

    def _over_actor(self, actor: str, meters: int, kw: float, now_us: int) -> str | None:
        lim = self.limits
        self._forget(now_us)
        had_meters, had_kw = self._sum_since(now_us - lim.window_s * US_PER_S, actor)
        span = f"in {lim.window_s // 60} min by {actor}"
        if had_meters + meters > lim.meters_per_actor:
            return f"{had_meters + meters} meters {span} (over {lim.meters_per_actor})"
        if had_kw + kw > lim.kw_per_actor:
            return f"{had_kw + kw:,.0f} kW at risk {span} (over {lim.kw_per_actor:,.0f})"
        return None

    def _x1_breach(self, kw: float, now_us: int, *, released: bool) -> str | None:
        """The X1 budget this request would break: the hour (without a release) or the ten
        minutes (released or not); none in a declared emergency."""
        if kw <= 0 or self._in_emergency(now_us):
            return None
        lim = self.limits
        if released:
            _, recent = self._sum_since(now_us - 600 * US_PER_S)
            if recent + kw > lim.x1_ten_minutes_kw:
                ceiling = f"{lim.x1_ten_minutes_kw:,.0f}"
                return (
                    f"X1: {recent + kw:,.0f} kW at risk in 10 min (over {ceiling} without a "
                    "declared emergency)"
                )
            return None
        _, hour = self._sum_since(now_us - 3600 * US_PER_S)
        if hour + kw > lim.x1_hour_kw:
            return f"X1: {hour + kw:,.0f} kW at risk in an hour (over {lim.x1_hour_kw:,.0f})"
        return None

    def _forget(self, now_us: int) -> None:
        keep_us = max(self.limits.window_s, 3600) * US_PER_S
        while self._passed and self._passed[0][0] <= now_us - keep_us:
            self._passed.popleft()


def request_document(request: ControlRequest) -> str:
    """A request as the store keeps it (its first 1,000 meters, and how many)."""
    return json.dumps(
        {
            "request_id": request.request_id,
            "verdict": request.verdict.value,
            "why": request.why,
            "actor": request.actor,
            "reason": request.reason,
            "kind": request.kind.name.lower(),
            "args": list(request.args),
            "meters": len(request.meter_keys),
            "meter_keys": request.meter_keys[:1000].tolist(),
            "at_risk_kw": request.at_risk_kw,
            "requested_us": request.requested_us,
            "decided_by": request.decided_by,
            "decided_us": request.decided_us,
            "timeline": request.timeline,
        },
        separators=(",", ":"),
    )


def gate_figures(
    gate: ControlGate, now_us: int
) -> list[tuple[str, str, str, tuple[str, ...], dict[tuple[str, ...], float]]]:
    """What ``/metrics`` shows of the gate, as (name, kind, help, label names, values):
    requests by verdict, the kW at risk that passed in the last hour and ten minutes (X1),
    and whether an emergency is in force."""
    by: dict[tuple[str, ...], float] = {(v.value,): 0.0 for v in Verdict}
    with gate._lock:
        for request in gate.requests.values():
            by[(request.verdict.value,)] += 1
        _, hour = gate._sum_since(now_us - 3600 * US_PER_S)
        _, ten = gate._sum_since(now_us - 600 * US_PER_S)
        emergency = float(gate._in_emergency(now_us))
    return [
        (
            "kenshin_control_requests",
            "counter",
            "Switching requests, by the gate's verdict",
            ("verdict",),
            by,
        ),
        (
            "kenshin_control_at_risk_kw",
            "gauge",
            "kW the switching requests passed could interrupt, in the last hour and 10 min (X1)",
            ("window",),
            {("1h",): hour, ("10m",): ten},
        ),
        (
            "kenshin_control_emergency",
            "gauge",
            "1 while an emergency declared by two approvers is in force",
            (),
            {(): emergency},
        ),
    ]
