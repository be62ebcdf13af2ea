"""B-route credentials and access rules (SPEC B1, B2, B4, X5).

* :class:`CredentialRegistry` issues each supply point its B-route ID (32 hex characters) and
  password (12 characters), the pair the utility sends the customer (B4). Issuing again revokes
  the old pair; :meth:`CredentialRegistry.verify` compares in constant time.
* :class:`SessionTable` enforces who may talk to a meter at once: Wi-SUN is 1:1 — one device per
  meter until it leaves or its session lifetime runs out (B1, B2); Wi-Fi (LV) and Ethernet (HV)
  serve several registered devices up to a limit. Every start, end, expiry and refusal is logged
  to ``kenshin.broute.access`` and kept in :attr:`SessionTable.audit` (X5).
* :class:`LanAccess` is the allow-list of registered device addresses for Wi-Fi / Ethernet: the
  UDP adapter answers only registered devices and logs the others (B1, B2, X5).

Clocks are injectable callables returning seconds, so expiry is testable.
"""

from __future__ import annotations

import hmac
import ipaddress
import itertools
import json
import logging
import os
import secrets
import string
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from kenshin.core.ids import validate_supply_point_id
from kenshin.core.timeslots import JST
from kenshin.errors import InvalidInput, InvalidSetting
from kenshin.secrecy import make_private_dir

DEFAULT_CREDENTIALS_FILE = "kenshin-broute.json"  # next to the DuckDB store by default
ROUTE_ID_LENGTH = 32  # B4
PASSWORD_LENGTH = 12  # B4
ROUTE_ID_ALPHABET = "0123456789ABCDEF"
# letters and digits only: no space (SKSETPWD splits on it), no look-alikes O/0 I/1 confusion
PASSWORD_ALPHABET = "".join(c for c in string.ascii_uppercase + string.digits if c not in "O0I1")

Clock = Callable[[], float]
access_log = logging.getLogger("kenshin.broute.access")


@dataclass(frozen=True, slots=True)
class BrouteCredentials:
    """One supply point's B-route ID and password (SPEC B4)."""

    supply_point_id: str
    route_id: str
    password: str
    issued_at: datetime

    def __post_init__(self) -> None:
        if len(self.route_id) != ROUTE_ID_LENGTH or any(
            c not in ROUTE_ID_ALPHABET for c in self.route_id
        ):
            raise InvalidInput(f"a B-route ID is {ROUTE_ID_LENGTH} hex characters (0-9, A-F)")
        if len(self.password) != PASSWORD_LENGTH or not all(
            c.isascii() and c.isalnum() for c in self.password
        ):
            raise InvalidInput(f"a B-route password is {PASSWORD_LENGTH} ASCII letters or digits")

    @property
    def pairing_id(self) -> str:
        """The last 8 characters of the route ID: what a Wi-SUN module puts in its scan."""
        return self.route_id[-8:]

    def __repr__(self) -> str:  # never print the password (X3)
        return (
            f"BrouteCredentials(supply_point_id={self.supply_point_id!r}, "
            f"route_id={self.route_id!r}, password='***', issued_at={self.issued_at!r})"
        )

    def to_json(self) -> dict[str, str]:
        return {
            "supply_point_id": self.supply_point_id,
            "route_id": self.route_id,
            "password": self.password,
            "issued_at": self.issued_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> BrouteCredentials:
        return cls(
            data["supply_point_id"],
            data["route_id"],
            data["password"],
            datetime.fromisoformat(data["issued_at"]),
        )


def _same(a: str, b: str) -> bool:
    """Constant-time string equality; any text (even lone surrogates) is compared, never raised."""
    enc = "utf-8"
    return hmac.compare_digest(a.encode(enc, "surrogatepass"), b.encode(enc, "surrogatepass"))


class CredentialRegistry:
    """The current B-route credentials of each supply point (SPEC B4).

    With ``path`` the registry is loaded from and saved to that JSON file (mode 0600) after every
    change.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, clock: Clock = time.time):
        self._path = Path(path) if path is not None else None
        self._clock = clock
        self._lock = threading.Lock()
        self._current: dict[str, BrouteCredentials] = {}
        if self._path is not None and self._path.exists():
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            for item in raw.get("credentials", []):
                creds = BrouteCredentials.from_json(item)
                self._current[creds.supply_point_id] = creds

    def issue(self, supply_point_id: str) -> BrouteCredentials:
        """New random credentials for ``supply_point_id``; any earlier ones stop working."""
        validate_supply_point_id(supply_point_id)
        creds = BrouteCredentials(
            supply_point_id,
            "".join(secrets.choice(ROUTE_ID_ALPHABET) for _ in range(ROUTE_ID_LENGTH)),
            "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH)),
            datetime.fromtimestamp(self._clock(), JST),  # JST, as every time kenshin shows
        )
        with self._lock:
            reissue = supply_point_id in self._current
            self._current[supply_point_id] = creds
            self._save()
        access_log.info(
            "B-route credentials %s for %s", "reissued" if reissue else "issued", supply_point_id
        )
        return creds

    def revoke(self, supply_point_id: str) -> bool:
        """Withdraw the credentials; True if there were any."""
        with self._lock:
            found = self._current.pop(supply_point_id, None) is not None
            if found:
                self._save()
        if found:
            access_log.info("B-route credentials revoked for %s", supply_point_id)
        return found

    def current(self, supply_point_id: str) -> BrouteCredentials | None:
        with self._lock:
            return self._current.get(supply_point_id)

    def verify(self, supply_point_id: str, route_id: str, password: str) -> bool:
        """True if both match the current credentials exactly (constant-time compare)."""
        creds = self.current(supply_point_id)
        if creds is None:
            # compare anyway so a missing meter takes as long as a wrong password
            _same(route_id, "0" * ROUTE_ID_LENGTH)
            _same(password, "0" * PASSWORD_LENGTH)
            return False
        id_ok = _same(route_id, creds.route_id)
        password_ok = _same(password, creds.password)
        return id_ok and password_ok

    def matches_pairing_id(self, supply_point_id: str, pairing_id: str) -> bool:
        """True if ``pairing_id`` is the last 8 characters of the current route ID."""
        creds = self.current(supply_point_id)
        return creds is not None and _same(pairing_id, creds.pairing_id)

    def _save(self) -> None:
        if self._path is None:
            return
        body = json.dumps({"credentials": [c.to_json() for c in self._current.values()]}, indent=2)
        make_private_dir(self._path.parent)  # X3: a directory made for secrets is 0700
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".broute-", suffix=".json")
        try:
            os.fchmod(fd, 0o600)  # X3: the passwords are secrets
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body)
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# ---------------------------------------------------------------------------------------------
# access rules


class Medium(StrEnum):
    """The physical route a B-route device uses (SPEC B1, B2)."""

    WISUN = "wisun"
    WIFI = "wifi"
    ETHERNET = "ethernet"


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """How many devices may hold a session on one meter over one medium, and for how long.

    ``session_lifetime`` is in seconds (``None``: sessions never expire).
    """

    medium: Medium
    max_devices: int
    session_lifetime: float | None = None

    def __post_init__(self) -> None:
        if self.max_devices < 1:
            raise InvalidSetting("max_devices must be at least 1")
        if self.medium is Medium.WISUN and self.max_devices != 1:
            raise InvalidSetting("Wi-SUN B-route is 1:1: max_devices must be 1 (SPEC B1, B2)")
        if self.session_lifetime is not None and self.session_lifetime <= 0:
            raise InvalidSetting("session_lifetime must be positive")

    @classmethod
    def wisun(cls, session_lifetime: float | None = 86_400.0) -> AccessPolicy:
        return cls(Medium.WISUN, 1, session_lifetime)

    @classmethod
    def wifi(cls, max_devices: int = 4, session_lifetime: float | None = None) -> AccessPolicy:
        return cls(Medium.WIFI, max_devices, session_lifetime)

    @classmethod
    def ethernet(cls, max_devices: int = 8, session_lifetime: float | None = None) -> AccessPolicy:
        return cls(Medium.ETHERNET, max_devices, session_lifetime)


# which media each meter kind offers (B1: LV Wi-SUN + Wi-Fi; B2: HV Ethernet + Wi-SUN)
MEDIA_BY_KIND: dict[str, frozenset[Medium]] = {
    "lv": frozenset({Medium.WISUN, Medium.WIFI}),
    "hv": frozenset({Medium.ETHERNET, Medium.WISUN}),
}


def check_medium(kind: str, medium: Medium) -> None:
    """Raise unless a meter of ``kind`` ("lv"/"hv") offers ``medium`` (SPEC B1, B2)."""
    if kind not in MEDIA_BY_KIND:
        raise InvalidSetting(f"meter kind must be 'lv' or 'hv', got {kind!r}")
    if medium not in MEDIA_BY_KIND[kind]:
        raise InvalidSetting(f"a {kind.upper()} meter has no {medium} B-route")


@dataclass(frozen=True, slots=True)
class Session:
    supply_point_id: str
    medium: Medium
    device: str  # MAC or IPv6 address of the customer's device
    started_at: float
    expires_at: float | None
    serial: int = 0  # unique per table: a renewed or restarted session is a new one


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One line of the access audit (SPEC X5)."""

    at: float
    action: str  # "start", "end", "expire", "refuse"
    supply_point_id: str
    medium: Medium
    device: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AccessDecision:
    granted: bool
    reason: str
    session: Session | None = None


def default_policies() -> dict[Medium, AccessPolicy]:
    return {
        Medium.WISUN: AccessPolicy.wisun(),
        Medium.WIFI: AccessPolicy.wifi(),
        Medium.ETHERNET: AccessPolicy.ethernet(),
    }


class SessionTable:
    """Live B-route sessions per meter and medium, enforcing the :class:`AccessPolicy`.

    Thread-safe: virtual modules on several threads may share one table. ``audit`` keeps the
    last ``audit_limit`` :class:`AuditEvent` (X5).
    """

    def __init__(
        self,
        policies: Mapping[Medium, AccessPolicy] | None = None,
        clock: Clock = time.monotonic,
        audit_limit: int = 10_000,
    ):
        self.policies = dict(default_policies() if policies is None else policies)
        self.clock = clock
        self.audit_limit = audit_limit
        self.audit: list[AuditEvent] = []
        self._sessions: dict[tuple[str, Medium], dict[str, Session]] = {}
        self._lock = threading.RLock()
        self._serials = itertools.count(1)

    def policy(self, medium: Medium) -> AccessPolicy:
        try:
            return self.policies[medium]
        except KeyError:
            raise InvalidSetting(f"no access policy for {medium}") from None

    def authenticate(
        self,
        registry: CredentialRegistry,
        supply_point_id: str,
        medium: Medium,
        device: str,
        route_id: str,
        password: str,
    ) -> AccessDecision:
        """Check the credentials (B4), then :meth:`start` a session."""
        if not registry.verify(supply_point_id, route_id, password):
            with self._lock:
                self._record("refuse", supply_point_id, medium, device, "bad credentials")
            return AccessDecision(False, "bad credentials")
        return self.start(supply_point_id, medium, device)

    def start(self, supply_point_id: str, medium: Medium, device: str) -> AccessDecision:
        """Open (or renew) ``device``'s session, or refuse it if the meter is full."""
        policy = self.policy(medium)
        with self._lock:
            self._expire_locked()
            now = self.clock()
            held = self._sessions.setdefault((supply_point_id, medium), {})
            if device not in held and len(held) >= policy.max_devices:
                others = ", ".join(sorted(held))
                reason = f"{medium} allows {policy.max_devices} device(s); held by {others}"
                self._record("refuse", supply_point_id, medium, device, reason)
                return AccessDecision(False, reason)
            lifetime = policy.session_lifetime
            session = Session(
                supply_point_id,
                medium,
                device,
                now,
                None if lifetime is None else now + lifetime,
                next(self._serials),
            )
            renew = device in held
            held[device] = session
            self._record("start", supply_point_id, medium, device, "renewed" if renew else "")
            return AccessDecision(True, "renewed" if renew else "granted", session)

    def refuse(self, supply_point_id: str, medium: Medium, device: str, reason: str) -> None:
        """Record a refusal decided elsewhere (e.g. an unregistered device, SPEC X5)."""
        with self._lock:
            self._record("refuse", supply_point_id, medium, device, reason)

    def end(self, session: Session, reason: str = "terminated") -> bool:
        """Close ``session``; False if it was no longer live (ended or expired)."""
        with self._lock:
            held = self._sessions.get((session.supply_point_id, session.medium), {})
            if held.get(session.device) != session:
                return False
            del held[session.device]
            self._record("end", session.supply_point_id, session.medium, session.device, reason)
            return True

    def is_live(self, session: Session) -> bool:
        """True while ``session`` is the device's current session and has not expired."""
        with self._lock:
            self._expire_locked()
            held = self._sessions.get((session.supply_point_id, session.medium), {})
            return held.get(session.device) == session

    def active(self, supply_point_id: str, medium: Medium) -> list[Session]:
        with self._lock:
            self._expire_locked()
            return list(self._sessions.get((supply_point_id, medium), {}).values())

    def expire(self) -> list[Session]:
        """Drop every session past its lifetime; returns them."""
        with self._lock:
            return self._expire_locked()

    def _expire_locked(self) -> list[Session]:
        now = self.clock()
        gone: list[Session] = []
        for held in self._sessions.values():
            for device, session in list(held.items()):
                if session.expires_at is not None and now >= session.expires_at:
                    del held[device]
                    gone.append(session)
                    self._record(
                        "expire", session.supply_point_id, session.medium, device, "lifetime"
                    )
        return gone

    def _record(
        self, action: str, supply_point_id: str, medium: Medium, device: str, reason: str
    ) -> None:
        event = AuditEvent(self.clock(), action, supply_point_id, medium, device, reason)
        self.audit.append(event)
        if len(self.audit) > self.audit_limit:
            del self.audit[: len(self.audit) - self.audit_limit]
        level = logging.WARNING if action == "refuse" else logging.INFO
        access_log.log(
            level,
            "B-route session %s: meter %s via %s, device %s%s",
            action,
            supply_point_id,
            medium,
            device,
            f" ({reason})" if reason else "",
        )


class LanAccess:
    """Which devices may use a meter's Wi-Fi (LV) or Ethernet (HV) B-route (SPEC B1, B2, X5).

    Devices are registered by IP address per supply point. A registered device gets a session in
    ``sessions`` (several devices, up to the medium's :class:`AccessPolicy` limit); any other
    address is refused. Refusals go to the table's audit and the ``kenshin.broute.access`` log.
    """

    def __init__(
        self,
        sessions: SessionTable | None = None,
        devices: Mapping[str, Iterable[str]] | None = None,
    ):
        self.sessions = sessions if sessions is not None else SessionTable()
        self._devices: dict[str, set[str]] = {}
        self._live: dict[tuple[str, str], Session] = {}
        self._lock = threading.Lock()
        for supply_point_id, addresses in (devices or {}).items():
            for address in addresses:
                self.register(supply_point_id, address)

    def register(self, supply_point_id: str, device: str) -> None:
        """Allow the device at IP address ``device`` to talk to the meter."""
        validate_supply_point_id(supply_point_id)
        address = _ip(device)
        with self._lock:
            self._devices.setdefault(supply_point_id, set()).add(address)

    def unregister(self, supply_point_id: str, device: str) -> bool:
        """Withdraw a device (ending its session); True if it was registered."""
        address = _ip(device)
        with self._lock:
            registered = self._devices.get(supply_point_id, set())
            found = address in registered
            registered.discard(address)
            session = self._live.pop((supply_point_id, address), None)
        if session is not None:
            self.sessions.end(session, "unregistered")
        return found

    def devices(self, supply_point_id: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._devices.get(supply_point_id, ()))

    def admit(self, supply_point_id: str, medium: Medium, device: str) -> bool:
        """True if ``device`` may send to the meter now (starting its session if needed)."""
        with self._lock:
            if device not in self._devices.get(supply_point_id, ()):
                self.sessions.refuse(supply_point_id, medium, device, "not a registered device")
                return False
            held = self._live.get((supply_point_id, device))
            if held is not None and held.medium is medium and self.sessions.is_live(held):
                return True
            decision = self.sessions.start(supply_point_id, medium, device)
            if decision.session is None:
                return False
            self._live[(supply_point_id, device)] = decision.session
            return True


def _ip(device: str) -> str:
    """The canonical form of an IP address (what a socket reports as the source)."""
    try:
        return str(ipaddress.ip_address(device))
    except ValueError:
        raise InvalidSetting(f"a device is registered by IP address, got {device!r}") from None
