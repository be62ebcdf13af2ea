"""What a head-end command is and may do: states, transitions, policy and the meters' rules.

A command is *requested*, checked against the meter's specification by :func:`refusal` (refused
at once, with the reason, when the meter cannot do it: SPEC M3, M6, R5, A5), *queued*, *sent*
and then *acknowledged* or *rejected* by the meter's ack, retried after an ack timeout with
exponential backoff (:class:`CommandPolicy`), *failed* after the last attempt, or *expired* when
its time ran out. Every state change goes through :data:`TRANSITIONS`; anything else is a bug.

Pure rules: no I/O, no clock. :class:`~kenshin.hes.commands.CommandBook` applies them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum

import numpy as np
import numpy.typing as npt

from kenshin.aroute.frames import CommandKind
from kenshin.core.customers import AMPERE_STEPS_A
from kenshin.core.meterspec import SPEC_TABLE, Generation, MeterClass, MeterSpec
from kenshin.core.timeslots import US_PER_MINUTE, Resolution
from kenshin.errors import IllegalTransition, InvalidInput, InvalidPeriod, InvalidSetting

U32_MAX = 0xFFFF_FFFF


class CommandState(IntEnum):
    REQUESTED = 1
    QUEUED = 2
    SENT = 3
    ACKNOWLEDGED = 4
    REJECTED = 5
    FAILED = 6
    EXPIRED = 7

    @property
    def is_terminal(self) -> bool:
        return self >= CommandState.ACKNOWLEDGED

    @property
    def label(self) -> str:
        return self.name.lower()


class CommandEvent(StrEnum):
    ACCEPT = "accept"  # capability checks passed
    REFUSE = "refuse"  # capability checks failed
    SEND = "send"  # put on the wire by due()
    ACK_OK = "ack_ok"
    ACK_REJECT = "ack_reject"  # the meter refused or could not carry it out
    RETRY = "retry"  # ack timeout, attempts left: back to the queue after a backoff
    GIVE_UP = "give_up"  # ack timeout after the last attempt
    EXPIRE = "expire"  # past its expiry while queued, or at an ack timeout


S, E = CommandState, CommandEvent  # for the table

TRANSITIONS: dict[tuple[CommandState, CommandEvent], CommandState] = {
    (S.REQUESTED, E.ACCEPT): S.QUEUED,
    (S.REQUESTED, E.REFUSE): S.REJECTED,
    (S.QUEUED, E.SEND): S.SENT,
    (S.QUEUED, E.EXPIRE): S.EXPIRED,
    (S.SENT, E.ACK_OK): S.ACKNOWLEDGED,
    (S.SENT, E.ACK_REJECT): S.REJECTED,
    (S.SENT, E.RETRY): S.QUEUED,
    (S.SENT, E.GIVE_UP): S.FAILED,
    (S.SENT, E.EXPIRE): S.EXPIRED,
}


def transition(state: CommandState, event: CommandEvent) -> CommandState:
    """The state ``event`` moves ``state`` to; anything not in :data:`TRANSITIONS` is a bug."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"no transition from {state.label} on {event.value}") from None


def micros(delta: dt.timedelta) -> int:
    """A duration in whole microseconds, the unit of every ``*_us`` time here."""
    return delta // dt.timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """Timing of a fleet's commands: acks, retries, expiry, throttling and retention.

    ``keep_finished``: how long (simulated time) a command that reached a final state stays in
    the book, with its idempotency key and its in-memory audit trail, before
    :meth:`~kenshin.hes.commands.CommandBook.tick` forgets it (checked every ``prune_every``).
    Commands not yet final are never forgotten.
    """

    ack_timeout: dt.timedelta = dt.timedelta(minutes=2)
    max_attempts: int = 3
    retry_base: dt.timedelta = dt.timedelta(minutes=1)  # wait after the first timeout
    retry_factor: float = 2.0  # each further timeout multiplies the wait
    retry_cap: dt.timedelta = dt.timedelta(minutes=15)
    default_expiry: dt.timedelta = dt.timedelta(hours=1)  # after the request
    max_in_flight_per_collector: int = 4
    sends_per_minute_per_collector: int | None = None  # None: only the in-flight limit
    keep_finished: dt.timedelta = dt.timedelta(hours=24)  # after completion
    prune_every: dt.timedelta = dt.timedelta(minutes=1)

    def __post_init__(self) -> None:
        for name in ("ack_timeout", "retry_base", "retry_cap", "default_expiry", "prune_every"):
            if getattr(self, name) <= dt.timedelta(0):
                raise InvalidSetting(f"{name} must be positive")
        if self.keep_finished < dt.timedelta(0):
            raise InvalidSetting("keep_finished must not be negative")
        if self.max_attempts < 1:
            raise InvalidSetting("max_attempts must be at least 1")
        if self.retry_factor < 1.0:
            raise InvalidSetting("retry_factor must be at least 1")
        if self.max_in_flight_per_collector < 1:
            raise InvalidSetting("max_in_flight_per_collector must be at least 1")
        rate = self.sends_per_minute_per_collector
        if rate is not None and rate < 1:
            raise InvalidSetting("sends_per_minute_per_collector must be at least 1 or None")

    def backoff_us(self, attempts: int) -> int:
        """Wait before the next attempt after ``attempts`` attempts timed out (1, 2, ...)."""
        wait = micros(self.retry_base) * self.retry_factor ** max(attempts - 1, 0)
        return int(min(wait, micros(self.retry_cap)))


class MeterSpecs:
    """The spec of every meter, from two uint8 arrays (1 MB per million meters, one shared
    :class:`MeterSpec` per generation × class). ``table`` carries a utility's retention (M4)."""

    def __init__(
        self,
        generation: npt.ArrayLike,
        meter_class: npt.ArrayLike,
        table: Mapping[tuple[Generation, MeterClass], MeterSpec] = SPEC_TABLE,
    ) -> None:
        gen = np.asarray(generation, dtype=np.uint8)
        cls = np.asarray(meter_class, dtype=np.uint8)
        if gen.shape != cls.shape or gen.ndim != 1:
            raise InvalidInput("generation and meter_class must be 1-d arrays of one length")
        self._by_code: list[MeterSpec | None] = [None] * 64
        for (g, c), spec in table.items():
            self._by_code[_code(g, c)] = spec
        self.codes = (gen << 3) | cls  # generation × class code per meter
        missing = {int(c) for c in np.unique(self.codes)} - {
            i for i, s in enumerate(self._by_code) if s is not None
        }
        if missing:
            raise InvalidInput(f"no meter spec for codes {sorted(missing)} (generation × class)")

    def __len__(self) -> int:
        return len(self.codes)

    def spec(self, meter_key: int) -> MeterSpec:
        return self.spec_of_code(int(self.codes[meter_key]))

    def spec_of_code(self, code: int) -> MeterSpec:
        spec = self._by_code[code]
        assert spec is not None  # checked in __init__
        return spec


def _code(generation: Generation, meter_class: MeterClass) -> int:
    return (int(generation) << 3) | int(meter_class)


MAX_PROFILE_MINUTES = 24 * 60  # an emergency profile (a limit for a period) lasts a day at most

ARG_COUNT = {
    CommandKind.SET_AMPERE_LIMIT: 3,  # limit [A]; an emergency profile: minutes, start minute
    CommandKind.SWITCH_OPEN: 0,
    CommandKind.SWITCH_CLOSE: 0,
    CommandKind.SET_SOFT_SWITCH: 1,
    CommandKind.SET_REALTIME_5MIN: 1,
    CommandKind.RESEND: 3,
}


def resend_args(
    resolution: Resolution, first_end_us: int, last_end_us: int
) -> tuple[int, int, int]:
    """RESEND arguments: resolution [min], first and last interval end in epoch *minutes* (u32)."""
    if first_end_us % US_PER_MINUTE or last_end_us % US_PER_MINUTE:
        raise InvalidPeriod("RESEND interval ends must be whole minutes")
    return (int(resolution), first_end_us // US_PER_MINUTE, last_end_us // US_PER_MINUTE)


def _no_switch(spec: MeterSpec) -> str:
    if not spec.meter_class.is_low_voltage:
        return (
            f"{spec.meter_class.label} meters have no switch: "
            "no remote ampere limit or open/close (R5)"
        )
    return "low-voltage three-phase meters have no built-in switch (M6)"


def refusal(spec: MeterSpec, kind: CommandKind, args: tuple[int, ...], now_us: int) -> str | None:
    """Why a meter with ``spec`` cannot take this command, or None when it can."""
    if any(not 0 <= a <= U32_MAX for a in args):
        return "arguments must be u32"
    if any(args[ARG_COUNT[kind] :]):
        return f"{kind.name} takes {ARG_COUNT[kind]} argument(s)"
    gen1 = spec.generation is Generation.GEN1
    if kind is CommandKind.SET_AMPERE_LIMIT:
        limit = args[0]
        if not spec.has_switch or spec.max_ampere_limit_a is None:
            return _no_switch(spec)
        if limit > spec.max_ampere_limit_a:
            if gen1:
                return f"gen-1 meters take remote ampere limits up to 60 A (M3), not {limit} A"
            return f"remote ampere limits go up to {spec.max_ampere_limit_a} A (M6), not {limit} A"
        if limit not in AMPERE_STEPS_A:
            return f"{limit} A is not an ampere step {AMPERE_STEPS_A}"
        minutes, start = args[1], args[2]
        if minutes > MAX_PROFILE_MINUTES:
            return (
                f"an emergency profile lasts at most {MAX_PROFILE_MINUTES} minutes, not {minutes}"
            )
        if start and not minutes:
            return "an emergency profile with a start needs a duration (minutes)"
        now_min = now_us // US_PER_MINUTE
        if start and not now_min - 60 <= start <= now_min + MAX_PROFILE_MINUTES:
            return "an emergency profile starts within a day of now"
    elif kind in (CommandKind.SWITCH_OPEN, CommandKind.SWITCH_CLOSE):
        if not spec.has_switch:
            return _no_switch(spec)
    elif kind is CommandKind.SET_SOFT_SWITCH:
        if args[0] not in (15, 30):
            return f"the soft switch is 15 or 30 min (A5), not {args[0]}"
        if Resolution.MIN15 not in spec.channels:
            return "gen-1 meters record no 15-min values and have no soft switch (M3, A5)"
    elif kind is CommandKind.SET_REALTIME_5MIN:
        if args[0] not in (0, 1):
            return f"real-time 5-min push is 1 (on) or 0 (off), not {args[0]}"
        if Resolution.MIN5 not in spec.channels:
            return "gen-1 meters record no 5-min values (M3)"
    elif kind is CommandKind.RESEND:
        return _resend_refusal(spec, args, now_us)
    return None


def _resend_refusal(spec: MeterSpec, args: tuple[int, ...], now_us: int) -> str | None:
    minutes, first_min, last_min = args
    try:
        resolution = Resolution(minutes)
    except ValueError:
        return f"no {minutes}-min resolution"
    if resolution not in spec.channels:
        return f"this meter records no {minutes}-min values (M3)"
    if first_min % minutes or last_min % minutes:
        return f"RESEND interval ends must be {minutes}-min slot boundaries"
    if first_min > last_min:
        return "RESEND range is empty: first interval end after the last"
    if last_min * US_PER_MINUTE > now_us:
        return "RESEND range ends in the future"
    oldest_us = now_us - micros(spec.retention[resolution])
    if first_min * US_PER_MINUTE < oldest_us:
        days = spec.retention[resolution] / dt.timedelta(days=1)
        return f"RESEND range starts before the meter's memory ({minutes}-min values: {days:g} d)"
    return None
