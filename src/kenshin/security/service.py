"""The security service (issue 14): the principals and their secrets, tokens, rate limits, the
audit trail and the kill switch, behind one object the API and the CLI call.

Principals are kept in the store (``PrincipalBook``: both backends) and in memory; every change is
written through. What a principal may do is read from memory on every request, so a disconnect or
a changed role takes effect on the next request (X6 ③).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from kenshin.errors import AlreadyExists, Forbidden, InvalidInput, NotFound, Unauthenticated
from kenshin.security.audit import AuditSink, AuditTrail
from kenshin.security.limits import RateLimiter
from kenshin.security.monitor import ConnectionMonitor
from kenshin.security.principals import Kind, Party, Principal, Role
from kenshin.security.secrets import hash_secret, new_secret, verify_secret
from kenshin.security.tokens import DEFAULT_TTL_S, Claims, TokenKeys

log = logging.getLogger("kenshin.security")

LOCAL_ADMIN = "local-admin"
ROTATE_EVERY_S = 86_400.0  # a new signing key each day
MIN_PASSWORD = 12  # characters of a password a person chooses


class PrincipalStore(Protocol):
    def save_principal(self, name: str, document: str) -> None: ...

    def read_principals(self) -> list[tuple[str, str]]: ...


class MemoryPrincipals:
    """Principals in memory (a store opened read-only keeps its own, tests)."""

    def __init__(self, documents: list[tuple[str, str]] | None = None) -> None:
        self.documents: dict[str, str] = dict(documents or [])

    def save_principal(self, name: str, document: str) -> None:
        self.documents[name] = document

    def read_principals(self) -> list[tuple[str, str]]:
        return sorted(self.documents.items())


class Security:
    def __init__(
        self,
        book: PrincipalStore,
        audit: AuditSink,
        *,
        now: Callable[[], float] = time.time,
        token_ttl_s: int = DEFAULT_TTL_S,
        rotate_every_s: float = ROTATE_EVERY_S,
    ) -> None:
        self.book = book
        self.now = now
        self.keys = TokenKeys(token_ttl_s, int(now()))
        self.rotate_every_s = rotate_every_s
        self.limiter = RateLimiter()
        self.trail = AuditTrail(audit)
        self.monitor = ConnectionMonitor()
        # what else cuts a principal off (the B-route credentials and sessions of a device):
        # the composition root adds them; each is called with the principal and the reason
        self.on_disconnect: list[Callable[[Principal, str], None]] = []
        self._lock = threading.Lock()
        self._principals = {
            name: Principal.from_document(name, doc) for name, doc in book.read_principals()
        }

    # ---- the registry

    def principals(self) -> list[Principal]:
        with self._lock:
            return sorted(self._principals.values(), key=lambda p: p.name)

    def get(self, name: str) -> Principal:
        with self._lock:
            found = self._principals.get(name)
        if found is None:
            raise NotFound(f"no principal {name!r}")
        return found

    def _save(self, principal: Principal) -> None:
        self.book.save_principal(principal.name, principal.document())
        with self._lock:
            self._principals[principal.name] = principal

    def add(
        self,
        name: str,
        kind: Kind,
        *,
        roles: Iterable[Role] = (),
        party: Party | None = None,
        supply_points: Iterable[str] = (),
        scopes: Iterable[str] | None = None,
        rate_per_s: float = 20.0,
        boundary: str = "",
        secret: str | None = None,
    ) -> tuple[Principal, str]:
        """Register a principal; returns it and its secret (shown this once, kept as a hash;
        made at random unless given)."""
        with self._lock:
            if name in self._principals:
                raise AlreadyExists(f"principal {name!r} exists")
        secret = secret or new_secret()
        default_scopes = {"meters:read", "readings:read", "events:read"}
        principal = Principal(
            name=name,
            kind=kind,
            roles=frozenset(roles),
            party=party,
            supply_points=frozenset(supply_points),
            scopes=frozenset(
                default_scopes if scopes is None and kind is not Kind.STAFF else scopes or ()
            ),
            rate_per_s=rate_per_s,
            boundary=boundary,
            secret_hash=hash_secret(secret),
        )
        self._save(principal)
        log.info("principal %s (%s) registered", name, kind.value)
        return principal, secret

    def new_secret(self, name: str) -> str:
        """A new secret for ``name``; the old one stops working, tokens already issued too."""
        secret = new_secret()
        self._save(
            self.get(name).replace(secret_hash=hash_secret(secret), tokens_after_us=self._now_us())
        )
        return secret

    def change_password(self, name: str, current: str, new: str) -> None:
        """A person chooses their own password (at least :data:`MIN_PASSWORD` characters, not
        the current one); the tokens issued before stop working."""
        principal = self.get(name)
        if principal.kind is not Kind.STAFF:
            raise Forbidden("machine clients get secrets from a security admin, not passwords")
        if not verify_secret(principal.secret_hash, current):
            raise Forbidden("the current password is wrong")
        if len(new) < MIN_PASSWORD or new == current:
            raise InvalidInput(
                f"a new password has at least {MIN_PASSWORD} characters and is not the current one"
            )
        self._save(principal.replace(secret_hash=hash_secret(new), tokens_after_us=self._now_us()))

    def disconnect(self, name: str, actor: str, reason: str) -> Principal:
        """The kill switch (X6 ③): ``name`` is refused from its next request on, and every token
        it holds is dead, also after a reconnect. Recorded in the audit trail."""
        if not reason.strip():
            raise InvalidInput("say why the connection is cut (reason)")
        principal = self.get(name).replace(active=False, tokens_after_us=self._now_us())
        self._save(principal)
        self.limiter.forget(name)
        for cut in self.on_disconnect:
            cut(principal, reason)
        self._incident(actor, name, "disconnect", reason)
        log.warning("principal %s disconnected by %s: %s", name, actor, reason)
        return principal

    def reconnect(self, name: str, actor: str, reason: str) -> Principal:
        principal = self.get(name).replace(active=True)
        self._save(principal)
        self._incident(actor, name, "reconnect", reason)
        log.warning("principal %s reconnected by %s: %s", name, actor, reason)
        return principal

    def _incident(self, actor: str, name: str, what: str, reason: str) -> None:
        self.trail.record(self._now_us(), actor, "KILL-SWITCH", what, name, "", 200, reason or what)
        self.trail.flush()

    def observe(self, principal: str, meter: str, status: int) -> None:
        """Count a request in the connection monitor; an alert it raises goes to the trail."""
        for alert in self.monitor.observe(principal, meter, status, self.now()):
            self.trail.record(
                self._now_us(), principal, "ALERT", alert.kind, "", "", status, alert.detail
            )

    def connections(self) -> list[dict[str, object]]:
        """Every principal with its traffic (X5 ⑤), for the security admin."""
        return [{**p.view(), "traffic": self.monitor.view(p.name)} for p in self.principals()]

    def ensure_local_admin(self, secret: str | None = None) -> str | None:
        """A security admin, operator and engineer for the local console when no staff principal
        exists yet (``make run``), with ``secret`` (or a new one); returns its secret, or None
        when staff exist."""
        with self._lock:
            if any(p.kind is Kind.STAFF for p in self._principals.values()):
                return None
        _, made = self.add(
            LOCAL_ADMIN,
            Kind.STAFF,
            roles=(Role.SECURITY_ADMIN, Role.OPERATOR, Role.ENGINEER, Role.VIEWER),
            boundary="the local console of this installation",
            secret=secret,
        )
        return made

    # ---- authentication

    def token(
        self, client_id: str, secret: str, scope: str | None = None
    ) -> tuple[str, int, frozenset[str]]:
        """OAuth 2.0 client credentials (RFC 6749 §4.4), also the people's login: (token,
        expires_in, granted scopes). A wrong id or secret gives the same answer."""
        with self._lock:
            principal = self._principals.get(client_id)
        ok = verify_secret(None if principal is None else principal.secret_hash, secret)
        if principal is None or not ok:
            raise Unauthenticated("unknown client or wrong secret")
        if not principal.active:
            raise Forbidden(f"{client_id} is disconnected")
        wanted = principal.scopes if scope is None else frozenset(scope.split())
        if not wanted <= principal.scopes:
            extra = ", ".join(sorted(wanted - principal.scopes))
            raise Forbidden(f"{client_id} may not ask for the scope(s) {extra}")
        now = self.now()
        if now - self.keys.newest_since_s >= self.rotate_every_s:  # keys age out on their own
            self.keys.rotate(int(now))
        token, expires_in = self.keys.issue(principal.name, wanted, now)
        return token, expires_in, wanted

    def authenticate(self, token: str) -> tuple[Principal, Claims]:
        """The principal a bearer token speaks for (``Unauthenticated`` or ``Forbidden``)."""
        claims = self.keys.verify(token, int(self.now()))
        with self._lock:
            principal = self._principals.get(claims.subject)
        if principal is None:
            raise Unauthenticated("the token's principal is not registered")
        if not principal.active:  # first: the caller learns why, not only that
            raise Forbidden(f"{principal.name} is disconnected")
        if claims.issued_at_us <= principal.tokens_after_us:
            raise Unauthenticated("the token was revoked")
        return principal, claims

    def _now_us(self) -> int:
        return int(self.now() * 1_000_000)
