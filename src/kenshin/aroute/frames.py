"""The vocabulary of the A-route wire format: frame types, commands, events, rejection reasons,
and the decoded forms of the frames that are not interval pushes.

Interval pushes decode straight into columns (one Python object per batch, not per value); the
rarer frames (polls, commands, acknowledgements, events) decode into the small dataclasses here.
The byte layouts are in ``docs/protocols/aroute.md`` and :mod:`kenshin.aroute.codec.layout`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from kenshin.core.events import EventCode

WIRE_VERSION = 1


class Direction(IntEnum):
    """Each meter has one key per direction, so the two never share a (key, nonce) pair."""

    UP = 0  # meter → HES
    DOWN = 1  # HES → meter


class FrameType(IntEnum):
    # uplink, meter → HES
    PUSH_SCHEDULED = 0x01  # A1 30-min values every 30 min, and 15-min values under A5
    PUSH_5MIN_HISTORICAL = 0x02  # A2: a day of 5-min values, sent off-peak
    PUSH_5MIN_REALTIME = 0x03  # A3: the 5-min values just recorded
    RESEND_RESPONSE = 0x04  # values re-sent from meter memory on request (re-read)
    POLL_RESPONSE = 0x05  # A4: operating state and instantaneous values
    COMMAND_ACK = 0x06  # outcome of a command
    EVENT = 0x07  # something happened at the meter (power fail, restore, trip, ...)
    # downlink, HES → meter
    POLL_REQUEST = 0x81
    COMMAND = 0x82

    @property
    def direction(self) -> Direction:
        return Direction.DOWN if self & 0x80 else Direction.UP

    @property
    def carries_intervals(self) -> bool:
        return self in _INTERVAL_TYPES


_INTERVAL_TYPES = frozenset(
    {
        FrameType.PUSH_SCHEDULED,
        FrameType.PUSH_5MIN_HISTORICAL,
        FrameType.PUSH_5MIN_REALTIME,
        FrameType.RESEND_RESPONSE,
    }
)


class CommandKind(IntEnum):
    SET_AMPERE_LIMIT = 1  # arg: limit [A] (R3, M6; gen-1 single-phase ≤ 60 A, M3)
    SWITCH_OPEN = 2  # remote disconnect (M6)
    SWITCH_CLOSE = 3  # remote reconnect (M6)
    SET_SOFT_SWITCH = 4  # arg: 30 or 15 [min], what PUSH_SCHEDULED carries (A5)
    SET_REALTIME_5MIN = 5  # arg: 1 on, 0 off (A3)
    RESEND = 6  # args: resolution [min], first and last interval end: re-send from memory


class AckStatus(IntEnum):
    OK = 0
    REJECTED_UNSUPPORTED = 1  # the meter cannot do this (no switch, no 5-min values, ...)
    REJECTED_OUT_OF_RANGE = 2  # argument outside what the meter accepts
    REJECTED_NOT_HELD = 3  # RESEND of values the meter no longer keeps
    FAILED = 4  # accepted but could not be carried out
    REJECTED_UNAUTHORIZED = 5  # a switching command without a valid business signature


class RejectReason(IntEnum):
    """Why the head-end refused a frame. Refused frames are counted, logged and never stored."""

    MALFORMED = 1  # too short, bad length, unknown version or type: cannot be parsed
    UNKNOWN_METER = 2  # device id not in the registry
    AUTH_FAILED = 3  # GCM tag did not verify: forged, corrupted or the wrong key
    REPLAYED = 4  # frame counter already seen or too old
    BAD_PAYLOAD = 5  # authentic but the plaintext does not make sense
    WRONG_DIRECTION = 6  # a downlink frame on the uplink or the reverse

    @property
    def label(self) -> str:
        return self.name.lower()


class OperatingState(IntEnum):
    """Flags in a poll response (A4)."""

    SWITCH_CLOSED = 0x01
    POWER_ON = 0x02
    REALTIME_5MIN = 0x04
    SOFT_SWITCH_15 = 0x08
    LOCKED_OUT = 0x10


@dataclass(frozen=True, slots=True)
class PollRequest:
    request_id: int  # u32, echoed in the response


@dataclass(frozen=True, slots=True)
class PollResponse:
    request_id: int
    measured_at_us: int  # meter clock, epoch µs (minute resolution on the wire is not enough)
    state: int  # OperatingState flags
    ampere_limit_a: int  # 0 where the meter has no switch
    power_w: int  # instantaneous net active power [W], negative when exporting
    current_r_da: int  # R-phase current [0.1 A]
    current_t_da: int  # T-phase current [0.1 A]
    voltage_dv: int  # [0.1 V], 0 on HV meters
    forward_register: int
    reverse_register: int


@dataclass(frozen=True, slots=True)
class Authorization:
    """The business system's signature on a switching command (``aroute.authorization``)."""

    not_before_us: int  # the meter's clock, epoch µs
    not_after_us: int
    nonce: int  # u64, rising per signer
    signature: bytes  # Ed25519, 64 bytes


@dataclass(frozen=True, slots=True)
class Command:
    command_id: int  # u32, echoed in the acknowledgement
    kind: CommandKind
    arg1: int = 0  # u32 arguments; meaning by kind (see CommandKind)
    arg2: int = 0
    arg3: int = 0
    authorization: Authorization | None = None  # switching commands (issue 16)


@dataclass(frozen=True, slots=True)
class CommandAck:
    command_id: int
    status: AckStatus
    detail: int = 0  # e.g. the limit now in force, or the number of values re-sent


@dataclass(frozen=True, slots=True)
class MeterEvent:
    code: EventCode
    at_us: int  # meter clock, epoch µs
    detail: int = 0
