"""Secrets of principals: made at random, kept only as argon2id hashes (argon2-cffi; SPEC X3).

A client secret or password is shown once, when it is made, and never stored: the store holds
the hash. ``verify`` takes about as long for an unknown name as for a wrong secret, so timing
does not tell which names exist.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

SECRET_BYTES = 32  # 256 random bits, 43 URL-safe characters

_HASHER = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters
_DUMMY = _HASHER.hash(secrets.token_urlsafe(SECRET_BYTES))


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    return _HASHER.hash(secret)


def verify_secret(secret_hash: str | None, secret: str) -> bool:
    """Whether ``secret`` matches ``secret_hash``; None or "" (no such principal, or one with no
    secret) checks against a dummy hash and is False."""
    try:
        return _HASHER.verify(secret_hash or _DUMMY, secret) and bool(secret_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
