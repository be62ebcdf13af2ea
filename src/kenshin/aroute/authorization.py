"""Switching commands signed by the business system, checked by the meter (issue 16 item 2;
SPEC X1, X2).

A remote disconnect, reconnect or ampere limit carries an authorization the head-end cannot
make: an Ed25519 signature by the utility's business system (its control key, kept apart from
the head-end) over the meter's device id, the command and its arguments, a validity window and
a nonce. The A-route's own protection (the head-end's frame key) still wraps the frame; the meter
needs both, so a compromised head-end key alone opens no switch (the GB smart meter rule: critical
commands signed by the supplier and verified by the meter).

The meter accepts a command when the signature verifies with the control public key it was
provisioned with, its clock is inside the window and the nonce is above the last it accepted
(the same nonce again is the same command retried: acknowledged, not done twice).

This module is pure: the bytes that are signed, the check. Signing is the business side's
(``kenshin.control.signing``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kenshin.aroute.frames import Authorization, CommandKind

# the commands that change what flows to a customer: they need the business system's signature
PROTECTED_KINDS = frozenset(
    {CommandKind.SET_AMPERE_LIMIT, CommandKind.SWITCH_OPEN, CommandKind.SWITCH_CLOSE}
)
DOMAIN = b"kenshin-control-v1"  # what the signature is for: never valid as anything else
_SIGNED = struct.Struct(">QBIIIqqQ")  # device id, kind, args, not before, not after, nonce


def signed_bytes(
    device_id: int,
    kind: CommandKind,
    args: tuple[int, int, int],
    not_before_us: int,
    not_after_us: int,
    nonce: int,
) -> bytes:
    """What the business system signs for one meter's command."""
    return DOMAIN + _SIGNED.pack(device_id, int(kind), *args, not_before_us, not_after_us, nonce)


def refusal(
    key: Ed25519PublicKey | None,
    device_id: int,
    kind: CommandKind,
    args: tuple[int, int, int],
    authorization: Authorization | None,
    now_us: int,
    last_nonce: int,
) -> str | None:
    """Why a meter refuses this command (None: carry it out). ``last_nonce``: the highest it
    accepted before; the same nonce is a retry and passes (the caller does not do it twice)."""
    if kind not in PROTECTED_KINDS:
        return None
    if key is None:
        return "no control key provisioned: switching commands are refused"
    if authorization is None:
        return "not signed by the business system"
    a = authorization
    message = signed_bytes(device_id, kind, args, a.not_before_us, a.not_after_us, a.nonce)
    try:
        key.verify(a.signature, message)
    except InvalidSignature:
        return "signature does not verify"
    if not a.not_before_us <= now_us <= a.not_after_us:
        return "outside its validity window"
    if a.nonce < last_nonce:
        return "replayed (an older nonce)"
    return None


EMERGENCY_DOMAIN = b"kenshin-emergency-v1"
_EMERGENCY = struct.Struct(">qq")  # start, end [µs]


@dataclass(frozen=True, slots=True)
class EmergencyDeclaration:
    """An emergency (R4) the business system declared with two approvers, signed with its
    control key: the head-end lifts its X1 ceiling for the period (``hes.x1``)."""

    start_us: int
    end_us: int
    approvers: tuple[str, str]
    signature: bytes

    def signed_bytes(self) -> bytes:
        names = "\x00".join(self.approvers).encode()
        return EMERGENCY_DOMAIN + _EMERGENCY.pack(self.start_us, self.end_us) + names


def emergency_refusal(
    key: Ed25519PublicKey | None, declaration: EmergencyDeclaration
) -> str | None:
    """Why a head-end refuses a declaration (None: it holds)."""
    if key is None:
        return "no control key to check it with"
    if len(set(declaration.approvers)) != 2:
        return "an emergency needs two different approvers"
    if declaration.end_us <= declaration.start_us:
        return "it ends before it starts"
    try:
        key.verify(declaration.signature, declaration.signed_bytes())
    except InvalidSignature:
        return "signature does not verify"
    return None
