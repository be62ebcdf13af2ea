"""Every error kenshin raises on purpose. One base class, so callers can catch them all.

::

    KenshinError
    ├── InvalidInput            bad data from a caller (maps to HTTP 400/422, CLI exit 2)
    │   ├── InvalidSupplyPointId
    │   ├── InvalidPeriod
    │   │   └── PeriodTooLong
    │   ├── InvalidSetting      out-of-range configuration value
    │   ├── OutOfRange          a request parameter outside the range served (HTTP 422)
    │   ├── InvalidStore        a store option names no usable store (missing, in the way, two)
    │   ├── FrameError          malformed A-route wire data (envelope, frame) or unencodable input
    │   │   └── DownlinkRejected  a meter refuses a downlink frame (kenshin.aroute.codec.decode)
    │   ├── EchonetError        malformed B-route ECHONET Lite data
    │   └── IdempotencyConflict an idempotency key reused with other parameters
    ├── NotFound                (maps to HTTP 404)
    │   ├── UnknownMeter
    │   └── UnknownCommand
    ├── CapabilityError         the meter's specification does not offer this (SPEC M1–M7)
    ├── StoreError              the storage backend failed; library errors are wrapped here
    │   └── StoreUnavailable    the server cannot be reached now (connection lost, restarting)
    ├── TransportError          the MQTT broker cannot be reached or refused us
    │   └── LinkClosed          an envelope link was closed (or its client killed) while in use
    ├── IllegalTransition       a command left its state machine: a bug, never user input
    ├── DrillError              the fault drill itself could not run (kenshin drill faults)
    ├── PortInUse               a port a command would listen on is taken (CLI exit 1)
    ├── AlreadyExists           what a request creates exists and replacing it was not asked (409)
    ├── ReadOnly                a write asked of what is opened read-only (HTTP 405)
    ├── Unauthenticated         no, or no valid, credentials (HTTP 401)
    │   └── InvalidToken        a token malformed, forged, expired or of a dropped key
    ├── Forbidden               valid credentials, not allowed this (HTTP 403)
    └── RateLimited             too many requests of one client (HTTP 429, Retry-After)

``tests/test_errors.py`` checks that this tree names every subclass of :class:`KenshinError`.
"""

from __future__ import annotations


class KenshinError(Exception):
    """Base class of all kenshin errors."""


class InvalidInput(KenshinError):
    """A caller passed something kenshin cannot accept."""


class InvalidSupplyPointId(InvalidInput):
    """A supply point id (供給地点特定番号) is malformed; the message says what is wrong."""


class InvalidPeriod(InvalidInput):
    """A time period is malformed (end before start, not on a slot boundary, no time zone...)."""


class PeriodTooLong(InvalidPeriod):
    """A query period exceeds what the endpoint serves in one call."""


class InvalidSetting(InvalidInput):
    """A configuration value is out of range."""


class OutOfRange(InvalidInput):
    """A request parameter is well-formed but outside the range kenshin serves (a date before
    1970, an offset past 2**31 − 1...): HTTP 422, like a parameter failing its declared range."""


class InvalidStore(InvalidInput):
    """A store option names no usable store: two stores at once, a store that does not exist
    where one is expected, or one in the way of a new store (``kenshin.app.stores``)."""


class FrameError(InvalidInput):
    """A-route wire data cannot be parsed, or a value cannot be put on the wire."""


class NotFound(KenshinError):
    """Something named by the caller does not exist."""


class UnknownMeter(NotFound):
    """No meter with this supply point id or key."""


class CapabilityError(KenshinError):
    """The meter's specification does not provide this channel, resolution or function."""


class StoreError(KenshinError):
    """The storage backend failed."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached now (a lost connection, a restart): the same unit
    of work may succeed later, so a head-end worker waits and retries it (issue 12)."""


class IllegalTransition(KenshinError):
    """A command moved outside its state machine's transition table: a bug, never user input."""


class IdempotencyConflict(InvalidInput):
    """An idempotency key was reused with different parameters (HTTP 409 would fit best)."""


class UnknownCommand(NotFound):
    """No command with this id."""


class EchonetError(InvalidInput):
    """B-route ECHONET Lite data cannot be parsed, or a value cannot be put on the wire."""


class TransportError(KenshinError):
    """The broker could not be reached or refused us."""


class LinkClosed(TransportError):
    """An envelope link was closed (or its client killed) while in use."""


class DrillError(KenshinError):
    """The fault drill itself could not run (a server would not start, a run never settled)."""


class PortInUse(KenshinError):
    """A port the command would listen on is taken (a runtime condition, exit code 1)."""


class AlreadyExists(KenshinError):
    """What a request would create exists already and replacing it was not asked for (409)."""


class ReadOnly(KenshinError):
    """A write asked of something opened read-only (``kenshin serve``)."""


class Unauthenticated(KenshinError):
    """No credentials, or credentials that prove nothing (HTTP 401)."""


class Forbidden(KenshinError):
    """The caller is known and may not do this (HTTP 403)."""


class RateLimited(KenshinError):
    """A client asked more often than its rate allows (HTTP 429)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
