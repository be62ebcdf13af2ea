"""The security package's parts on their own: principals refuse nonsense, secrets are argon2id
hashes, tokens die on time and with their key, the rate limiter refills at its rate."""

from __future__ import annotations

import jwt
import pytest

from kenshin.errors import AlreadyExists, Forbidden, InvalidInput, Unauthenticated
from kenshin.security.audit import MemoryAuditSink
from kenshin.security.limits import RateLimiter
from kenshin.security.principals import Kind, Party, Principal, Role
from kenshin.security.secrets import hash_secret, new_secret, verify_secret
from kenshin.security.service import MemoryPrincipals, Security
from kenshin.security.tokens import InvalidToken, TokenKeys

T0 = 1_780_000_000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Bad Name", "kind": Kind.STAFF, "roles": frozenset({Role.VIEWER})}, "2–63"),
        ({"name": "x1", "kind": Kind.STAFF}, "at least one role"),
        ({"name": "x1", "kind": Kind.ORGANISATION}, "party must be one of"),
        (
            {"name": "x1", "kind": Kind.DEVICE, "party": Party.RETAILER},
            "party must be one of broute_device, iot_device, partner_server",
        ),
        (
            {
                "name": "x1",
                "kind": Kind.ORGANISATION,
                "party": Party.RETAILER,
                "roles": frozenset({Role.OPERATOR}),
            },
            "roles are for staff",
        ),
        (
            {
                "name": "x1",
                "kind": Kind.ORGANISATION,
                "party": Party.RETAILER,
                "scopes": frozenset({"meters:write"}),
            },
            "unknown scope",
        ),
        (
            {
                "name": "x1",
                "kind": Kind.ORGANISATION,
                "party": Party.RETAILER,
                "supply_points": frozenset({"123"}),
            },
            "not 22 digits",
        ),
    ],
)
def test_principals_refuse_what_makes_no_sense(fields, message):
    with pytest.raises(InvalidInput, match=message):
        Principal(**fields)


def test_secrets_are_argon2id_hashes_and_verify_only_themselves():
    secret = new_secret()
    stored = hash_secret(secret)
    assert stored.startswith("$argon2id$") and secret not in stored
    assert verify_secret(stored, secret)
    assert not verify_secret(stored, secret + "x")
    assert not verify_secret(None, secret) and not verify_secret("", secret)
    assert not verify_secret("not-a-hash", secret)
    assert len(secret) >= 43 and new_secret() != secret


def test_tokens_expire_and_die_with_their_key():
    keys = TokenKeys(ttl_s=600, now_s=T0)
    token, ttl = keys.issue("alice", frozenset({"meters:read"}), T0)
    assert ttl == 600
    claims = keys.verify(token, T0 + 599)
    assert claims.subject == "alice" and claims.scopes == {"meters:read"}
    with pytest.raises(InvalidToken, match="expired"):
        keys.verify(token, T0 + 600)
    keys.rotate(T0 + 100)  # the old key stays: its tokens may still live
    assert keys.verify(token, T0 + 200).subject == "alice"
    assert len(keys.jwks()["keys"]) == 2
    keys.rotate(T0 + 650)  # the first key signed until T0 + 100: its tokens live to T0 + 700
    assert len(keys.jwks()["keys"]) == 3
    keys.rotate(T0 + 750)  # now nothing it signed is valid: dropped, the other three kept
    assert len(keys.jwks()["keys"]) == 3
    with pytest.raises(InvalidToken, match="no longer"):
        keys.verify(token, T0 + 500)
    with pytest.raises(InvalidToken, match="no longer"):
        TokenKeys(ttl_s=600, now_s=T0).verify(token, T0 + 1)  # another process's key
    # a token an attacker signs with a key of their own, naming a kept kid, fails
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    kid = jwt.get_unverified_header(token)["kid"]
    forged = jwt.encode(
        {
            "sub": "root",
            "iat": T0,
            "exp": T0 + 60,
            "jti": "x",
            "iat_us": T0 * 10**6,
            "aud": "kenshin-api",
            "iss": "kenshin",
        },
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": kid},
    )
    fresh = TokenKeys(ttl_s=600, now_s=T0)
    with pytest.raises(InvalidToken):
        fresh.verify(forged, T0 + 1)


def test_the_service_refuses_wrong_secrets_alike_and_scopes_beyond_the_principal():
    now = [float(T0)]
    security = Security(MemoryPrincipals(), MemoryAuditSink(), now=lambda: now[0])
    _, secret = security.add("agg-1", Kind.ORGANISATION, party=Party.AGGREGATOR)
    with pytest.raises(AlreadyExists):
        security.add("agg-1", Kind.ORGANISATION, party=Party.AGGREGATOR)
    wrong_secret = pytest.raises(Unauthenticated, match="unknown client or wrong secret")
    with wrong_secret:
        security.token("agg-1", "guess")
    with pytest.raises(Unauthenticated, match="unknown client or wrong secret"):
        security.token("nobody", secret)
    with pytest.raises(Forbidden, match="metrics:read"):
        security.token("agg-1", secret, "meters:read metrics:read")
    token, _, granted = security.token("agg-1", secret, "meters:read")
    assert granted == {"meters:read"}
    new = security.new_secret("agg-1")
    with pytest.raises(Unauthenticated, match="revoked"):
        security.authenticate(token)  # a new secret kills the tokens of the old one
    with pytest.raises(Unauthenticated):
        security.token("agg-1", secret)
    assert security.token("agg-1", new)[0]


def test_the_rate_limiter_allows_bursts_of_twice_the_rate_then_refills():
    limiter = RateLimiter()
    assert [limiter.take("a", 2.0, 0.0) for _ in range(4)] == [None] * 4  # burst of 4
    assert limiter.take("a", 2.0, 0.0) == 1  # wait a second
    assert limiter.take("a", 2.0, 0.5) is None  # half a second refills one request
    assert limiter.take("b", 2.0, 0.5) is None  # each client its own bucket


def test_signing_keys_rotate_by_themselves_each_day():
    now = [float(T0)]
    security = Security(MemoryPrincipals(), MemoryAuditSink(), now=lambda: now[0])
    _, secret = security.add("svc", Kind.STAFF, roles=[Role.VIEWER])
    first = jwt.get_unverified_header(security.token("svc", secret)[0])["kid"]
    now[0] += 3600
    assert jwt.get_unverified_header(security.token("svc", secret)[0])["kid"] == first
    now[0] = T0 + 86_400
    token = security.token("svc", secret)[0]
    assert jwt.get_unverified_header(token)["kid"] != first
    assert security.authenticate(token)[0].name == "svc"
