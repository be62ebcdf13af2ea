"""Access tokens: short-lived JWTs signed with Ed25519 (PyJWT; RFC 7519, RFC 8037), their keys
and the published key set (JWKS, RFC 7517) for anyone who checks a token.

A token names its principal (``sub``), the scopes granted and when it dies; what the principal
may do is looked up on every request, so a changed role or a disconnect takes effect at once.
Keys rotate (:meth:`TokenKeys.rotate`): a new key signs, the old ones stay published and valid
until the tokens they signed have expired. Keys live in the process: tokens do not survive a
restart, and a client asks for a new one (client credentials).
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from kenshin.errors import Unauthenticated

ALGORITHM = "EdDSA"
AUDIENCE = "kenshin-api"
ISSUER = "kenshin"
DEFAULT_TTL_S = 600  # 10 minutes: a stolen token is worth little for long
CACHE_SIZE = 4096  # verified tokens remembered (a verification costs ~0.1 ms)


class InvalidToken(Unauthenticated):
    """A token that is malformed, forged, expired, or signed by a key no longer kept."""


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    scopes: frozenset[str]
    issued_at_us: int  # to the microsecond: a revocation in the same second is exact
    expires_at_s: int
    token_id: str


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    private: Ed25519PrivateKey
    retired_s: int | None = None  # when a newer key took over signing


class TokenKeys:
    """The signing keys, newest first; thread-safe."""

    def __init__(self, ttl_s: int = DEFAULT_TTL_S, now_s: int = 0) -> None:
        if not 60 <= ttl_s <= 86_400:
            raise ValueError(f"token lifetime must be 60 s … 1 day, got {ttl_s} s")
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._keys: list[_Key] = []
        self._cache: OrderedDict[str, Claims] = OrderedDict()
        self.newest_since_s = now_s
        self.rotate(now_s)

    def rotate(self, now_s: int) -> str:
        """A new signing key; a key retired more than a token's life ago is dropped (nothing it
        signed is still valid). Returns the new key id."""
        key = _Key(secrets.token_hex(8), Ed25519PrivateKey.generate())
        self.newest_since_s = now_s
        with self._lock:
            older = [
                k if k.retired_s is not None else _Key(k.kid, k.private, now_s) for k in self._keys
            ]
            kept = [
                k for k in older if k.retired_s is not None and now_s - k.retired_s < self.ttl_s
            ]
            self._keys = [key, *kept]
            self._cache.clear()
        return key.kid

    def issue(self, subject: str, scopes: frozenset[str], now: float) -> tuple[str, int]:
        """(token, expires_in [s]) for ``subject``."""
        with self._lock:
            key = self._keys[0]
        now_s = int(now)
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now_s,
            "nbf": now_s,
            "exp": now_s + self.ttl_s,
            "jti": secrets.token_urlsafe(12),
            "scope": " ".join(sorted(scopes)),
            "iat_us": int(now * 1_000_000),
        }
        token = jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})
        return token, self.ttl_s

    def verify(self, token: str, now_s: int) -> Claims:
        """The token's claims; :class:`InvalidToken` (one line, no token in it) otherwise."""
        with self._lock:
            cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at_s <= now_s:
                raise InvalidToken("the token has expired")
            return cached
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise InvalidToken("the token is not a JWT") from None
        with self._lock:
            key = next((k for k in self._keys if k.kid == kid), None)
        if key is None:
            raise InvalidToken("the token's signing key is not (or no longer) known")
        try:
            body: dict[str, Any] = jwt.decode(
                token,
                key.private.public_key(),
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "jti", "iat_us"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is not valid ({type(exc).__name__})") from None
        claims = Claims(
            subject=str(body["sub"]),
            scopes=frozenset(str(body.get("scope", "")).split()),
            issued_at_us=int(body["iat_us"]),
            expires_at_s=int(body["exp"]),
            token_id=str(body["jti"]),
        )
        if claims.expires_at_s <= now_s:  # against the system's clock, not the host's
            raise InvalidToken("the token has expired")
        if claims.issued_at_us > (now_s + 5) * 1_000_000:
            raise InvalidToken("the token was issued in the future")
        with self._lock:
            self._cache[token] = claims
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return claims

    def jwks(self) -> dict[str, Any]:
        """The public keys, for ``/.well-known/jwks.json``."""
        with self._lock:
            keys = list(self._keys)
        published = []
        for key in keys:
            jwk = OKPAlgorithm.to_jwk(key.private.public_key(), as_dict=True)
            published.append({**jwk, "kid": key.kid, "use": "sig", "alg": ALGORITHM})
        return {"keys": published}
